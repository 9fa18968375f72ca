"""SAM 3's tracker (Carion et al. 2025) through `transformers`: promptable image segmentation and a streaming
tracker, behind the same `Segmenter` interface and `start_stream` as SAM2.

transformers' `Sam3TrackerModel` / `Sam3TrackerVideoModel` are SAM2's prompt encoder, mask decoder and memory
modules (line for line: the same forward, session and memory selection) over SAM 3's ViT + FPN neck, which
yields the same three feature levels. So the SAM2 runner's prompt encoding, decoding and bounded-memory stream
are reused as they are; what differs is the checkpoint classes, the inference session class, the input
normalisation (mean = std = 0.5) and the input side (1008 for facebook/sam3, a multiple of the ViT's patch 14).
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from reasonseg.core.prompt import MaskPrediction, Prompt
from reasonseg.core.torch_device import resolve_device
from reasonseg.models.weights import check_model_dir
from reasonseg.segmenters.sam2.torch_runner import Sam2Embedding, Sam2Segmenter, Sam2Stream
from reasonseg.segmenters.sam3.graphs import IMAGE_TYPES, MEAN, STD, VIDEO_TYPES, sam3_image_size

_MEAN, _STD = np.array(MEAN, np.float32), np.array(STD, np.float32)


def sam3_pixels(image_rgb: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> (3, S, S) float32, Sam3ImageProcessor's input: square resize (no padding), [-1, 1]."""
    x = cv2.resize(np.ascontiguousarray(image_rgb), (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return np.ascontiguousarray(((x / 255.0 - _MEAN) / _STD).transpose(2, 0, 1))


class Sam3Segmenter(Sam2Segmenter):
    """`reasonseg.core.prompt.Segmenter` over a transformers SAM 3 tracker checkpoint (torch backend)."""

    name = "sam3"

    def __init__(self, model: str, *, device: str = "auto", num_threads: int | None = None) -> None:
        """`model`: an HF id (local cache) or dir of a sam3_tracker (image only), sam3_tracker_video or
        sam3_video (facebook/sam3: its tracker part) checkpoint. Not `super().__init__`: that one builds SAM2."""
        import torch
        from transformers import AutoConfig, Sam3TrackerModel, Sam3TrackerVideoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = resolve_device(device, "segmenter.device")
        self.antialias = False
        check_model_dir(model, "segmenter.model")  # layer counts vs the weights, before transformers builds it
        config = AutoConfig.from_pretrained(model, local_files_only=True)
        if config.model_type not in IMAGE_TYPES + VIDEO_TYPES:
            raise ValueError(f"{model} is a {config.model_type!r} checkpoint, not SAM 3's tracker "
                             f"({' / '.join(IMAGE_TYPES + VIDEO_TYPES)})")
        cls = Sam3TrackerVideoModel if config.model_type in VIDEO_TYPES else Sam3TrackerModel
        loaded: Any = cls.from_pretrained(model, local_files_only=True, dtype=torch.float32)
        self.source = model
        self.can_track = isinstance(loaded, Sam3TrackerVideoModel)
        self.model = loaded.to(self.device).eval()
        self.input_size = sam3_image_size(self.model.config)
        self.prompt_dim = int(self.model.prompt_encoder.no_mask_embed.weight.shape[-1])
        self.mask_input_size = tuple(self.model.prompt_encoder.mask_input_size)

    def pixels(self, image_rgb: np.ndarray):
        """HxWx3 uint8 RGB -> (3, S, S) float tensor on the model's device."""
        import torch

        return torch.from_numpy(sam3_pixels(image_rgb, self.input_size)).to(self.device)

    def predict(self, embedding: Sam2Embedding, prompt: Prompt) -> MaskPrediction:
        raw = prompt.sparse_embeddings
        if raw is not None and raw.shape[1] != self.prompt_dim:  # before SAM2's check, which says "SAM2"
            raise ValueError(f"sparse_embeddings have {raw.shape[1]} channels; this SAM 3 takes {self.prompt_dim}")
        return super().predict(embedding, prompt)

    def start_stream(self, image_rgb: np.ndarray, prompts: Sequence[Prompt], memory_frames: int) -> Sam3Stream:
        if not self.can_track:
            raise ValueError(f"{self.source} is an image-only SAM 3 checkpoint (sam3_tracker): it has no memory to "
                             "track with (use a sam3_tracker_video or sam3_video checkpoint)")
        return Sam3Stream(self, image_rgb, prompts, memory_frames)


class Sam3Stream(Sam2Stream):
    """SAM 3 memory tracking on a live stream, frames one at a time (`Sam2Stream`: step, the bounded memory).

    transformers' `Sam3TrackerVideoInferenceSession` streams as SAM2's does (`model(inference_session,
    frame=...)` appends the frame) and keeps every frame and output; `Sam2Stream._forget` drops what is older
    than `memory_frames` after each step. The model reads at most `num_maskmem - 1` (6) past masks and
    `max_object_pointers_in_encoder - 1` (15) past object pointers, plus the conditioning frame, so
    memory_frames >= 15 gives the unbounded session's masks."""

    @staticmethod
    def session_class():
        from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
            Sam3TrackerVideoInferenceSession)

        return Sam3TrackerVideoInferenceSession
