"""SAM2 on onnxruntime: the graphs `reasonseg export sam2` writes, with the PyTorch path's prompt handling.

Same preprocessing (`sam2_pixels`), the same prompt encoding (`sam2_points`, SAM's padding point appended
as `Sam2PromptEncoder` does for points without a box tensor) and the same mask choice, so masks agree
with `Sam2Segmenter` within the export's tolerance (tests/test_export.py). Image path only: tracking stays
on the PyTorch backend.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import CheckpointError
from .export.manifest import read_manifest
from .export.sam2 import DECODER, DECODER_INPUTS, ENCODER, ENCODER_INPUTS
from .onnx_session import open_session
from .prompt import MaskPrediction, Prompt, check_prompt_kinds
from .sam2 import NO_OBJECT, Sam2Embedding, _logits_to_mask, sam2_pixels, sam2_points


class OnnxSam2Segmenter:
    name = "sam2"
    PROMPT_KINDS = frozenset({"box", "points", "mask", "sparse_embeddings"})
    can_track = False

    def __init__(self, folder: Path | str, *, device: str = "cpu", num_threads: int | None = None,
                 antialias: bool = False) -> None:
        folder = Path(folder)
        for name in (ENCODER, DECODER):
            if (folder / name).is_file() and read_manifest(folder / name) is None:
                raise CheckpointError(f"{folder / name} has no manifest or changed after export (stale); export it "
                                      f"again: reasonseg export sam2 --checkpoint CKPT --out {folder}")
        self.encoder = open_session(folder / ENCODER, "SAM2 encoder", threads=num_threads or 0, device=device)
        self.decoder = open_session(folder / DECODER, "SAM2 decoder", threads=num_threads or 0, device=device)
        for path, session, names in ((ENCODER, self.encoder, ENCODER_INPUTS), (DECODER, self.decoder, DECODER_INPUTS)):
            if [i.name for i in session.get_inputs()] != names:
                raise CheckpointError(f"{folder / path}: not a graph from `reasonseg export sam2`")
        self.source, self.antialias = str(folder), antialias
        self.input_size = int(self.encoder.get_inputs()[0].shape[-1])
        specs = {i.name: i.shape for i in self.decoder.get_inputs()}
        self.prompt_dim = int(specs["sparse_embeddings"][-1])
        self.mask_input_size = tuple(int(v) for v in specs["mask_input"][-2:])

    def encode(self, image_rgb: np.ndarray) -> Sam2Embedding:
        pixels = sam2_pixels(image_rgb, self.input_size, self.antialias)[None]
        return Sam2Embedding(self.encoder.run(None, {"pixel_values": pixels}),
                             (int(image_rgb.shape[0]), int(image_rgb.shape[1])))

    def predict(self, embedding: Sam2Embedding, prompt: Prompt) -> MaskPrediction:
        check_prompt_kinds(self.name, self.PROMPT_KINDS, prompt)
        coords, labels = sam2_points(prompt, embedding.original_size, self.input_size)
        multimask = coords is not None and prompt.box is None and len(coords) == 1
        if coords is None and prompt.sparse_embeddings is None:  # mask only: SAM's "not a point" token
            coords, labels = np.zeros((1, 2), np.float32), np.array([-1], np.int32)
        if coords is not None:  # SAM's padding point, as the PyTorch prompt encoder appends it
            coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
            labels = np.concatenate([labels, [-1]])
        else:
            coords, labels = np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
        raw = np.zeros((0, self.prompt_dim), np.float32)
        if prompt.sparse_embeddings is not None:
            raw = np.ascontiguousarray(prompt.sparse_embeddings, np.float32)
            if raw.ndim != 2 or raw.shape[1] != self.prompt_dim:
                raise ValueError(f"sparse_embeddings have shape {raw.shape}; this SAM2 takes (K, {self.prompt_dim})")
        mask = np.zeros((1, 1, *self.mask_input_size), np.float32)
        if prompt.mask_logits is not None:
            mask[0, 0] = cv2.resize(np.ascontiguousarray(prompt.mask_logits, np.float32), self.mask_input_size[::-1],
                                    interpolation=cv2.INTER_LINEAR)
        feats = embedding.features
        low, iou, obj = self.decoder.run(None, dict(zip(DECODER_INPUTS, (
            feats[0], feats[1], feats[-1], coords[None].astype(np.float32), labels[None].astype(np.int64), raw[None],
            mask, np.array([float(prompt.mask_logits is not None)], np.float32),
            np.array([float(multimask)], np.float32)))))
        logits = low.reshape(low.shape[-2:])
        if float(obj.reshape(-1)[0]) <= 0:  # SAM2's object-score head says the prompted thing is not there
            return MaskPrediction(np.zeros(embedding.original_size, bool), 0.0, np.full_like(logits, NO_OBJECT))
        return MaskPrediction(_logits_to_mask(logits, embedding.original_size), float(iou.reshape(-1)[0]), logits)
