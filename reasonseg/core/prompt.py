"""What a grounding hands a SAM-family segmenter, in source-frame pixels, and what the segmenter answers.

One `Prompt` per target. Pipelines fill what they have: `refine` a detector box (+ top-n points), `mllm` the
VLM's box and points, `lens`/`cora` raw sparse prompt embeddings (the connector / `<SEG>` token output), a
tracker the previous low-res mask logits. Each segmenter says which kinds it takes (`PROMPT_KINDS`) and
rejects the others with a clear error rather than ignoring them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in source-frame pixels
Point = tuple[float, float]


def mask_box(mask: np.ndarray) -> Box | None:
    """The tight box of a mask's nonzero pixels (x1, y1 exclusive); None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@dataclass(frozen=True, eq=False)
class Prompt:
    box: Box | None = None
    points: tuple[Point, ...] = ()
    point_labels: tuple[int, ...] = ()          # per point: 1 positive, 0 negative; () = all positive
    mask_logits: np.ndarray | None = None       # (h, w) logits of a previous mask over the whole frame
    sparse_embeddings: np.ndarray | None = None  # (K, C) prompt tokens in the segmenter's prompt space
    kinds_used: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if self.box is not None:
            b = np.asarray(self.box, np.float64).reshape(-1)
            if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
                raise ValueError(f"box must be 4 finite numbers x0 < x1, y0 < y1, got {self.box!r}")
        pts = np.asarray(self.points, np.float64).reshape(-1, 2) if self.points else np.zeros((0, 2))
        if not np.isfinite(pts).all():
            raise ValueError("points must be finite")
        if self.point_labels and (len(self.point_labels) != len(self.points)
                                  or any(v not in (0, 1) for v in self.point_labels)):
            raise ValueError("point_labels must give 0 (negative) or 1 (positive) for each point")
        for name in ("mask_logits", "sparse_embeddings"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, np.ndarray) or v.ndim != 2 or v.size == 0
                                  or not np.isfinite(v).all()):
                raise ValueError(f"{name} must be a finite non-empty 2-D array")
        kinds = [k for k, present in (("box", self.box is not None), ("points", bool(self.points)),
                                      ("mask", self.mask_logits is not None),
                                      ("sparse_embeddings", self.sparse_embeddings is not None)) if present]
        if not kinds:
            raise ValueError("an empty prompt: give a box, points, a mask or sparse embeddings")
        object.__setattr__(self, "kinds_used", tuple(kinds))

    def labels_array(self) -> np.ndarray:
        return np.asarray(self.point_labels or (1,) * len(self.points), np.int64)

    def points_array(self) -> np.ndarray:
        return np.asarray(self.points, np.float32).reshape(-1, 2)


@dataclass(frozen=True, eq=False)
class MaskPrediction:
    mask: np.ndarray                 # bool (H, W), source pixels
    score: float                     # predicted IoU (x object presence where the model predicts it)
    logits: np.ndarray | None = None  # low-res logits, reusable as `Prompt.mask_logits`


@runtime_checkable
class Segmenter(Protocol):
    """A promptable segmenter (DESIGN §5): encode a frame once, then decode any number of prompts."""

    name: str
    PROMPT_KINDS: frozenset[str]

    def encode(self, image_rgb: np.ndarray) -> object: ...

    def predict(self, embedding: object, prompt: Prompt) -> MaskPrediction: ...


def check_prompt_kinds(segmenter_name: str, supported: frozenset[str], prompt: Prompt) -> None:
    unsupported = [k for k in prompt.kinds_used if k not in supported]
    if unsupported:
        raise ValueError(f"segmenter {segmenter_name} does not take {', '.join(unsupported)} prompts "
                         f"(it takes {', '.join(sorted(supported))}); use segmenter.kind: sam2 or sam3")

