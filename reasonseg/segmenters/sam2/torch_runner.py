"""SAM2 (Ravi et al. 2024) through `transformers`: promptable image segmentation and a streaming tracker.

Why transformers' `Sam2VideoModel` and not Meta's `sam2` package: checkpoints load by HF id or local dir
through the same `from_pretrained(local_files_only=True)` path as Qwen-VL (safetensors, nothing downloads
at run time), there is no hydra config tree or CUDA extension to build, and the LENS release's SAM2
weights map onto this module tree (`lens_official.md`), so `lens` reuses it. `facebook/sam2.1-hiera-*`
are `sam2_video` checkpoints: the image path (prompt encoder + mask decoder) plus the memory modules.
A plain `sam2` checkpoint loads as `Sam2Model` and segments without memory tracking.

Frames are resized to the model's square input without padding (SAM2's processor does the same), so a
source point (x, y) is (x * S / W, y * S / H) in model pixels and the low-res logits cover the frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from reasonseg.core.prompt import MaskPrediction, Prompt, check_prompt_kinds
from reasonseg.core.torch_device import resolve_device
from reasonseg.models.weights import check_model_dir
from reasonseg.segmenters.sam2.graphs import sam2_image_size

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # SAM2's processor: ImageNet statistics on [0, 1]
STD = np.array([0.229, 0.224, 0.225], np.float32)
NO_OBJECT = -1024.0  # SAM2's logit for "not present" (NO_OBJ_SCORE)


@dataclass(frozen=True, eq=False)
class Sam2Embedding:
    # high-res levels, then the last level (+ no-memory token): torch tensors; on onnxruntime arrays, or
    # OrtValues on the device of an IO-bound (GPU) encoder
    features: list[Any]
    original_size: tuple[int, int]  # (H, W) of the frame


def _logits_to_mask(low_res: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return cv2.resize(np.ascontiguousarray(low_res, np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0


def check_stream_frame(size: tuple[int, int], image_rgb: np.ndarray) -> None:
    """A stream's frames keep the grounding frame's (H, W) `size`: its memory bank holds masks of that size."""
    if (int(image_rgb.shape[0]), int(image_rgb.shape[1])) != size:
        raise ValueError(f"frame size changed from {size[1]}x{size[0]} to "
                         f"{image_rgb.shape[1]}x{image_rgb.shape[0]}: the stream must be grounded again")


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0))))


def sam2_pixels(image_rgb: np.ndarray, size: int, antialias: bool = False) -> np.ndarray:
    """HxWx3 uint8 RGB -> (3, S, S) float32, SAM2's processor: square resize (no padding), ImageNet norm.
    `antialias`: PIL's bilinear filter (LENS's preprocessing) instead of OpenCV's."""
    if antialias:
        from PIL import Image

        x = np.asarray(Image.fromarray(np.ascontiguousarray(image_rgb)).resize((size, size), Image.BILINEAR),
                       np.float32)
    else:
        x = cv2.resize(np.ascontiguousarray(image_rgb), (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (x / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def sam2_points(prompt: Prompt, size: tuple[int, int], input_size: int):
    """Box corners (labels 2, 3) then points (1 / 0), in model pixels: SAM2's own box encoding."""
    h, w = size
    scale = np.array([input_size / w, input_size / h], np.float32)
    coords, labels = [], []
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float32).reshape(2, 2) * scale)
        labels += [2, 3]
    if prompt.points:
        coords.append(prompt.points_array() * scale)
        labels += [int(v) for v in prompt.labels_array()]
    return (np.concatenate(coords), np.asarray(labels, np.int32)) if coords else (None, None)


class Sam2Segmenter:
    """`reasonseg.core.prompt.Segmenter` over a transformers SAM2 checkpoint (torch backend)."""

    name = "sam2"
    PROMPT_KINDS = frozenset({"box", "points", "mask", "sparse_embeddings"})

    def __init__(self, model: str | Any, *, device: str = "auto", num_threads: int | None = None,
                 antialias: bool = False) -> None:
        """`model`: an HF id (local cache) or dir of a sam2 / sam2_video checkpoint, or an already built
        transformers Sam2Model / Sam2VideoModel (LENS's `sam` part). `antialias`: resize frames as PIL's
        bilinear filter does (LENS's preprocessing, torchvision's resize on a PIL image) instead of OpenCV's."""
        import torch
        from transformers import AutoConfig, Sam2Model, Sam2VideoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = resolve_device(device, "segmenter.device")
        self.antialias = antialias
        if isinstance(model, str):
            check_model_dir(model, "segmenter.model")  # layer counts vs the weights, before transformers builds it
            config = AutoConfig.from_pretrained(model, local_files_only=True)
            if config.model_type not in ("sam2", "sam2_video"):
                raise ValueError(f"{model} is a {config.model_type!r} checkpoint, not SAM2 (sam2 / sam2_video)")
            cls = Sam2VideoModel if config.model_type == "sam2_video" else Sam2Model
            model, self.source = cls.from_pretrained(model, local_files_only=True, dtype=torch.float32), model
        else:
            self.source = getattr(model, "name_or_path", "") or type(model).__name__
        self.can_track = isinstance(model, Sam2VideoModel)
        self.model = model.to(self.device).eval()
        self.input_size = sam2_image_size(model.config)
        self.prompt_dim = int(self.model.prompt_encoder.hidden_size if hasattr(self.model.prompt_encoder, "hidden_size")
                              else self.model.prompt_encoder.no_mask_embed.weight.shape[-1])
        self.mask_input_size = tuple(self.model.prompt_encoder.mask_input_size)

    # -- image path --------------------------------------------------------------------------------
    def pixels(self, image_rgb: np.ndarray):
        """HxWx3 uint8 RGB -> (3, S, S) float tensor on the model's device."""
        import torch

        return torch.from_numpy(sam2_pixels(image_rgb, self.input_size, self.antialias)).to(self.device)

    def encode(self, image_rgb: np.ndarray) -> Sam2Embedding:
        import torch

        with torch.inference_mode():
            feats = self.model.get_image_embeddings(self.pixels(image_rgb)[None])
        return Sam2Embedding(list(feats), (int(image_rgb.shape[0]), int(image_rgb.shape[1])))

    def _model_points(self, prompt: Prompt, size: tuple[int, int]):
        return sam2_points(prompt, size, self.input_size)

    def predict(self, embedding: Sam2Embedding, prompt: Prompt) -> MaskPrediction:
        import torch

        check_prompt_kinds(self.name, self.PROMPT_KINDS, prompt)
        m = self.model
        dev = self.device
        coords, labels = self._model_points(prompt, embedding.original_size)
        with torch.inference_mode():
            pts = lab = masks = None
            if coords is not None:
                pts = torch.from_numpy(coords)[None, None].to(dev)
                lab = torch.from_numpy(labels)[None, None].to(dev)
            elif prompt.sparse_embeddings is None:  # mask only: SAM's "not a point" pad token
                pts = torch.zeros(1, 1, 1, 2, device=dev)
                lab = -torch.ones(1, 1, 1, dtype=torch.int32, device=dev)
            if prompt.mask_logits is not None:
                lr = cv2.resize(np.ascontiguousarray(prompt.mask_logits, np.float32),
                                self.mask_input_size[::-1], interpolation=cv2.INTER_LINEAR)
                masks = torch.from_numpy(lr)[None, None].to(dev)
            # Points are encoded without SAM's trailing pad token when raw embeddings follow them.
            sparse, dense = m.prompt_encoder(input_points=pts, input_labels=lab, input_boxes=None, input_masks=masks)
            if prompt.sparse_embeddings is not None:
                raw = prompt.sparse_embeddings
                if raw.shape[1] != self.prompt_dim:
                    raise ValueError(f"sparse_embeddings have {raw.shape[1]} channels; this SAM2 takes {self.prompt_dim}")
                raw_t = torch.from_numpy(np.ascontiguousarray(raw, np.float32))[None, None].to(dev)
                sparse = raw_t if sparse is None else torch.cat([sparse, raw_t], dim=2)
            # SAM convention: several masks only for one ambiguous click; LENS decodes single-mask.
            multimask = coords is not None and prompt.box is None and len(coords) == 1
            feats = embedding.features
            low, iou, _, obj = m.mask_decoder(
                image_embeddings=feats[-1], image_positional_embeddings=m.get_image_wide_positional_embeddings(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
                high_resolution_features=feats[:-1])
            best = int(torch.argmax(iou[0, 0]))
            logits = low[0, 0, best].float().cpu().numpy()
            present = float(obj.reshape(-1)[0]) > 0
        if not present:  # SAM2's object-score head says the prompted thing is not there
            return MaskPrediction(np.zeros(embedding.original_size, bool), 0.0, np.full_like(logits, NO_OBJECT))
        return MaskPrediction(_logits_to_mask(logits, embedding.original_size), float(iou[0, 0, best]), logits)

    # -- video path --------------------------------------------------------------------------------
    def start_stream(self, image_rgb: np.ndarray, prompts: Sequence[Prompt], memory_frames: int) -> Sam2Stream:
        if not self.can_track:
            raise ValueError(f"{self.source} is an image-only SAM2 checkpoint (sam2): it has no memory to track with")
        return Sam2Stream(self, image_rgb, prompts, memory_frames)


class Sam2Stream:
    """SAM2 memory tracking on a live stream: frames arrive one at a time, never revisited.

    Conditioned on the grounding frame (box / points as SAM2 clicks; a mask or raw-embedding prompt is
    first decoded to a mask and given as SAM2's mask input). transformers' inference session keeps every
    frame and every output forever; after each step everything older than `memory_frames` is dropped, so
    memory is constant over hours: SAM2 reads at most `num_maskmem - 1` past masks and
    `max_object_pointers_in_encoder - 1` past object pointers, plus the conditioning frame.
    """

    @staticmethod
    def session_class():
        """transformers' inference session for this model family (SAM 3's tracker has its own)."""
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        return Sam2VideoInferenceSession

    def __init__(self, segmenter: Sam2Segmenter, image_rgb: np.ndarray, prompts: Sequence[Prompt],
                 memory_frames: int) -> None:
        import torch

        if not prompts:
            raise ValueError("a stream needs at least one prompt")
        self.seg = segmenter
        self.size = (int(image_rgb.shape[0]), int(image_rgb.shape[1]))
        self.memory_frames = max(1, int(memory_frames))
        dev = segmenter.device
        self.session = self.session_class()(video_height=self.size[0], video_width=self.size[1],
                                            inference_device=dev, inference_state_device=dev,
                                            video_storage_device=dev, dtype=torch.float32)
        self.frame_idx = 0
        embedding = None
        for obj_id, prompt in enumerate(prompts):
            check_prompt_kinds(segmenter.name, segmenter.PROMPT_KINDS, prompt)
            obj = self.session.obj_id_to_idx(obj_id)
            if prompt.mask_logits is not None or prompt.sparse_embeddings is not None:
                embedding = embedding or segmenter.encode(image_rgb)
                logits = segmenter.predict(embedding, prompt).logits
                s = segmenter.input_size
                mask = cv2.resize(logits, (s, s), interpolation=cv2.INTER_LINEAR) > 0
                self.session.add_mask_inputs(obj, 0, torch.from_numpy(mask.astype(np.float32))[None, None])
            else:
                coords, labels = segmenter._model_points(prompt, self.size)
                self.session.add_point_inputs(obj, 0, {"point_coords": torch.from_numpy(coords)[None, None],
                                                       "point_labels": torch.from_numpy(labels)[None, None]})
        self.session.obj_with_new_inputs = list(range(len(prompts)))
        self.last = self._run(image_rgb)

    def step(self, image_rgb: np.ndarray) -> list[MaskPrediction]:
        """Masks of every object in this frame; score = SAM2's object-presence probability."""
        check_stream_frame(self.size, image_rgb)
        self.frame_idx += 1
        self.last = self._run(image_rgb)
        self._forget()
        return self.last

    def _run(self, image_rgb: np.ndarray) -> list[MaskPrediction]:
        import torch

        with torch.inference_mode():
            out = self.seg.model(inference_session=self.session, frame=self.seg.pixels(image_rgb),
                                 frame_idx=self.frame_idx)
        low = out.pred_masks.float().cpu().numpy()                 # (objects, 1, h, w)
        scores = out.object_score_logits.float().cpu().numpy().reshape(-1)
        return [MaskPrediction(_logits_to_mask(low[i, 0], self.size), _sigmoid(scores[i]), low[i, 0])
                for i in range(len(scores))]

    def _forget(self) -> None:
        oldest = self.frame_idx - self.memory_frames
        s = self.session
        for per_obj in s.output_dict_per_obj.values():
            non_cond = per_obj["non_cond_frame_outputs"]
            for k in [k for k in non_cond if k < oldest]:
                del non_cond[k]
        for tracked in s.frames_tracked_per_obj.values():
            for k in [k for k in tracked if k < oldest]:
                del tracked[k]
        for k in [k for k in s.processed_frames if k != self.frame_idx]:
            del s.processed_frames[k]

    def stored_frames(self) -> int:
        """Frame images plus per-object outputs the session holds (bounded: tests and benchmarks read it)."""
        s = self.session
        outputs = sum(len(o["cond_frame_outputs"]) + len(o["non_cond_frame_outputs"])
                      for o in s.output_dict_per_obj.values())
        return len(s.processed_frames or ()) + outputs + sum(len(t) for t in s.frames_tracked_per_obj.values())

    def close(self) -> None:
        self.session.reset_inference_session()
        self.session.processed_frames = None
