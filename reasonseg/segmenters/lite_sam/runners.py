"""Box / point prompted segmentation with LiteSAM (LiteMedSAM weights), torch or onnxruntime backend.

Both backends share the MedSAM-Lite pre/post-processing implemented here:

* image: HxWx3 RGB (or HxW grey) -> longest side resized to ``S`` (=256) with ``cv2.INTER_AREA``
  (new side = ``int(side * S / max(H, W) + 0.5)``), min-max normalised to [0, 1] over the resized image,
  zero-padded bottom/right to SxS, NCHW float32.  No mean/std normalisation.
* prompts (source pixels) are scaled by ``S / max(H, W)``; a box becomes two corner points with labels 2 / 3,
  user points keep labels 1 (positive) / 0 (negative); with no box a padding point (0, 0, label -1) is
  appended (SAM convention).
* output: single-mask low-res logits (SxS) cropped to the resized (unpadded) region, bilinearly resized to
  the source size (half-pixel centres, like ``F.interpolate(align_corners=False)``), mask = logits > 0;
  the score is the predicted IoU of that mask.

The image embedding is a plain numpy array, so it can be cached and shared between backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from reasonseg.backends.onnxruntime_graph import check_feeds, is_device_value, run_graph
from reasonseg.core.prompt import Box, MaskPrediction, Prompt, check_prompt_kinds
from reasonseg.segmenters.lite_sam.graphs import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
)

if TYPE_CHECKING:
    from reasonseg.models.lite_sam.configuration import LiteSamConfig
    from reasonseg.models.lite_sam.modeling import LiteSam

__all__ = [
    "ImageEmbedding",
    "TorchLiteSam",
    "OnnxLiteSam",
    "preprocess_image",
    "build_prompt",
    "postprocess_logits",
]


@dataclass(frozen=True)
class ImageEmbedding:
    embedding: np.ndarray  # (1, C, E, E) float32 (an OrtValue on the device of an IO-bound encoder)
    original_size: tuple[int, int]  # (H, W) of the source image
    resized_size: tuple[int, int]  # (h, w) after longest-side resize, before padding
    input_size: int  # square model input side S


IN_BOX = 0.95     # largest_in_box: share of a candidate's pixels inside the (padded) box
BOX_PAD = 0.05


class _LiteSamPrompts:
    """`reasonseg.core.prompt.Segmenter` for both LiteSAM backends: boxes and points (it has no mask input and
    its prompt space is MedSAM-Lite's, so mask logits and raw embeddings are refused, not ignored).

    `mask_choice`: the decoder has SAM's four mask tokens. "single" keeps token 0, the one MedSAM-Lite was
    trained on. "largest_in_box" takes the largest of the four masks that stays inside the box prompt:
    on natural images token 0 under-segments (a bus covers 55 % of its box, the same prompt's whole-object
    token 82 %), measured on the tuning half of bench/eval/unseen_photos.yaml."""

    name = "lite_sam"
    PROMPT_KINDS = frozenset({"box", "points"})
    mask_choice = "single"

    def decode(self, emb: ImageEmbedding, box: Box | None, points: np.ndarray | None = None,
               point_labels: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Token 0, the single-mask output MedSAM-Lite was trained on, as (bool mask, predicted IoU)."""
        return self.decode_all(emb, box, points, point_labels)[0]  # type: ignore[attr-defined]

    def predict(self, emb: ImageEmbedding, prompt: Prompt) -> MaskPrediction:
        check_prompt_kinds(self.name, self.PROMPT_KINDS, prompt)
        points = prompt.points_array() if prompt.points else None
        labels = prompt.labels_array() if prompt.points else None
        candidates = self.decode_all(emb, prompt.box, points, labels)  # type: ignore[attr-defined]
        if self.mask_choice == "largest_in_box" and prompt.box is not None:
            mask, iou = _largest_in_box(candidates, prompt.box)
        else:
            mask, iou = candidates[0]
        return MaskPrediction(mask, iou)


def _largest_in_box(candidates: list[tuple[np.ndarray, float]], box: Box) -> tuple[np.ndarray, float]:
    x0, y0, x1, y1 = box
    px, py = (x1 - x0) * BOX_PAD, (y1 - y0) * BOX_PAD
    bx0, by0, bx1, by1 = int(max(0, x0 - px)), int(max(0, y0 - py)), int(np.ceil(x1 + px)), int(np.ceil(y1 + py))
    best, best_area = candidates[0], -1
    for mask, iou in candidates:
        area = int(mask.sum())
        if area and mask[by0:by1, bx0:bx1].sum() >= IN_BOX * area and area > best_area:
            best, best_area = (mask, iou), area
    return best


# --------------------------------------------------------------------------------------------------
# shared pre/post-processing


def preprocess_image(image_rgb: np.ndarray, input_size: int = 256) -> tuple[np.ndarray, tuple[int, int]]:
    """-> ((1, 3, S, S) float32 in [0, 1], (h, w) of the resized image inside the padded square)."""
    if not isinstance(image_rgb, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image_rgb).__name__}")
    img = image_rgb
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"image must be HxWx3 RGB or HxW grey, got shape {image_rgb.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image_rgb.shape}")
    if img.dtype == np.bool_ or not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise ValueError(f"image dtype {img.dtype} is not a real numeric type")
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        if not np.isfinite(img).all():
            raise ValueError("image contains NaN or infinite values")
    h0, w0 = img.shape[:2]
    scale = input_size / max(h0, w0)
    h, w = max(1, int(h0 * scale + 0.5)), max(1, int(w0 * scale + 0.5))
    resized = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    lo, hi = float(resized.min()), float(resized.max())
    resized = (resized - lo) / max(hi - lo, 1e-8)
    out = np.zeros((1, 3, input_size, input_size), np.float32)
    out[0, :, :h, :w] = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    return out, (h, w)


def build_prompt(emb: ImageEmbedding, box: Box | None, points: np.ndarray | None = None,
                 point_labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Source-pixel box / points -> SAM ONNX prompt: coords (1, N, 2) float32 in model input pixels,
    labels (1, N) float32 (1 pos, 0 neg, 2/3 box corners, -1 padding).  ``point_labels`` defaults to all 1."""
    H, W = emb.original_size
    scale = emb.input_size / max(H, W)
    coords: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    if points is not None:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
            raise ValueError(f"points must be a finite (N, 2) array of x, y, got shape {pts.shape}")
        lab = np.ones(len(pts)) if point_labels is None else np.asarray(point_labels, dtype=np.float64)
        if lab.shape != (len(pts),) or not np.isin(lab, (0, 1)).all():
            raise ValueError("point_labels must be an (N,) array of 0 (negative) / 1 (positive)")
        coords.append(pts * scale)
        labels.append(lab)
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise ValueError(f"box must be 4 finite numbers x0, y0, x1, y1, got {box!r}")
        b = np.clip(b, 0, [W, H, W, H])
        if b[2] <= b[0] or b[3] <= b[1]:
            raise ValueError(f"box {box!r} is empty inside the {W}x{H} image")
        coords.append(b.reshape(2, 2) * scale)
        labels.append(np.array([2.0, 3.0]))
    if not any(len(c) for c in coords):
        raise ValueError("need a box or at least one point")
    if box is None:
        coords.append(np.zeros((1, 2)))
        labels.append(np.array([-1.0]))
    return (np.concatenate(coords)[None].astype(np.float32), np.concatenate(labels)[None].astype(np.float32))


def postprocess_logits(low_res: np.ndarray, emb: ImageEmbedding) -> np.ndarray:
    """(M, M) low-res logits over the padded input -> bool mask (H, W) in source pixels."""
    m = low_res.shape[-1]
    h, w = emb.resized_size
    if m != emb.input_size:  # mask grid differs from input grid: crop proportionally
        h, w = max(1, round(h * m / emb.input_size)), max(1, round(w * m / emb.input_size))
    H, W = emb.original_size
    crop = np.ascontiguousarray(low_res[:h, :w], dtype=np.float32)
    return cv2.resize(crop, (W, H), interpolation=cv2.INTER_LINEAR) > 0


def _check_embedding(emb: ImageEmbedding, input_size: int) -> None:
    if emb.input_size != input_size:
        raise ValueError(f"embedding was made for input size {emb.input_size}, model expects {input_size}")


# --------------------------------------------------------------------------------------------------
# torch backend


class TorchLiteSam(_LiteSamPrompts):
    """LiteSAM in torch (``torch.inference_mode``).  ``num_threads`` sets torch's *process-wide* intra-op
    thread count."""

    def __init__(self, weights: Path | str | LiteSam, cfg: LiteSamConfig | None = None, *,
                 num_threads: int | None = None, device: str = "cpu", mask_choice: str = "single") -> None:
        import torch

        from reasonseg.models.lite_sam.configuration import LiteSamConfig
        from reasonseg.models.lite_sam.convert import load_lite_sam
        from reasonseg.models.lite_sam.modeling import LiteSam

        if num_threads:
            torch.set_num_threads(num_threads)
        model = weights if isinstance(weights, LiteSam) else load_lite_sam(Path(weights), cfg or LiteSamConfig())
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.input_size = self.model.cfg.img_size
        self.mask_choice = mask_choice

    def encode(self, image_rgb: np.ndarray) -> ImageEmbedding:
        import torch

        x, resized = preprocess_image(image_rgb, self.input_size)
        with torch.inference_mode():
            e = self.model.encode(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
        return ImageEmbedding(e, (image_rgb.shape[0], image_rgb.shape[1]), resized, self.input_size)

    def decode_all(self, emb: ImageEmbedding, box: Box | None, points: np.ndarray | None = None,
                   point_labels: np.ndarray | None = None) -> list[tuple[np.ndarray, float]]:
        """All four mask tokens (token 0 first) as (bool mask, predicted IoU)."""
        import torch

        _check_embedding(emb, self.input_size)
        coords, labels = build_prompt(emb, box, points, point_labels)
        with torch.inference_mode():
            logits, iou = self.model.decode(
                torch.from_numpy(emb.embedding).to(self.device),
                torch.from_numpy(coords).to(self.device),
                torch.from_numpy(labels).to(self.device),
                multimask_output=None,
            )
        return [(postprocess_logits(logits[0, k].float().cpu().numpy(), emb), float(iou[0, k]))
                for k in range(logits.shape[1])]


# --------------------------------------------------------------------------------------------------
# onnxruntime backend


class OnnxLiteSam(_LiteSamPrompts):
    """LiteSAM via onnxruntime sessions of an encoder (fp32 / fp16 / int8) and ``DECODER_FILE``, as
    `reasonseg export lite-sam` writes them (:mod:`reasonseg_export.lite_sam`)."""

    def __init__(self, encoder: Path | str, decoder: Path | str, *, num_threads: int | None = None,
                 device: str = "cpu", mask_choice: str = "single", io_binding: bool | None = None) -> None:
        from reasonseg.backends.onnxruntime_graph import open_session

        self.mask_choice = mask_choice
        # a path, or a graph with the session interface (a TensorRT engine: reasonseg.backends.tensorrt_graph.TrtGraph);
        # IO-bound sessions (GPU) keep the embedding on the device between encoder and decoder
        self.encoder = encoder if hasattr(encoder, "run") else open_session(
            encoder, "LiteSAM encoder", threads=num_threads or 0, device=device, io_binding=io_binding)
        self.decoder = decoder if hasattr(decoder, "run") else open_session(
            decoder, "LiteSAM decoder", threads=num_threads or 0, device=device, io_binding=io_binding)
        for path, session, names in ((encoder, self.encoder, ENCODER_INPUTS), (decoder, self.decoder, DECODER_INPUTS)):
            got = [i.name for i in session.get_inputs()]
            if got != names:
                raise ValueError(f"{path}: not a LiteSAM graph from `reasonseg export lite-sam` (inputs {got}, "
                                 f"expected {names})")
        shape = self.encoder.get_inputs()[0].shape
        if len(shape) != 4 or not isinstance(shape[-1], int):
            raise ValueError(f"{encoder}: expected a static [1, 3, S, S] image input, got {shape}")
        self.input_size = int(shape[-1])

    @classmethod
    def from_dir(cls, directory: Path | str, **kwargs: object) -> OnnxLiteSam:
        d = Path(directory)
        return cls(d / "encoder.onnx", d / DECODER_FILE, **kwargs)  # type: ignore[arg-type]

    def encode(self, image_rgb: np.ndarray) -> ImageEmbedding:
        x, resized = preprocess_image(image_rgb, self.input_size)
        (e,) = run_graph(self.encoder, ENCODER_OUTPUTS, {ENCODER_INPUTS[0]: x}, keep=ENCODER_OUTPUTS)
        return ImageEmbedding(e, (image_rgb.shape[0], image_rgb.shape[1]), resized, self.input_size)

    def decode_all(self, emb: ImageEmbedding, box: Box | None, points: np.ndarray | None = None,
                   point_labels: np.ndarray | None = None) -> list[tuple[np.ndarray, float]]:
        """All four mask tokens (token 0 first) as (bool mask, predicted IoU)."""
        _check_embedding(emb, self.input_size)
        coords, labels = build_prompt(emb, box, points, point_labels)
        e = emb.embedding if is_device_value(emb.embedding) else np.ascontiguousarray(emb.embedding, np.float32)
        feeds = dict(zip(DECODER_INPUTS, (e, coords, labels)))
        check_feeds(self.decoder, feeds, "LiteSAM decoder")  # an embedding from another model: one line
        logits, iou = run_graph(self.decoder, DECODER_OUTPUTS, feeds)
        return [(postprocess_logits(logits[0, k], emb), float(iou[0, k])) for k in range(logits.shape[1])]
