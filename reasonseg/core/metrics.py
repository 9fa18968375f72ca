"""Referring-segmentation metrics, accumulated over a dataset (binary masks, one target per sample).

cIoU (cumulative IoU): total intersection / total union over the whole set, as RefCOCO papers report.
gIoU: mean of per-sample IoUs; a sample whose prediction and target are both empty scores 1 (ReasonSeg).
mIoU: for semantic labels (Cityscapes, PanNuke), per-class IoU from a confusion matrix, averaged over the
classes present in the target or the prediction; `ignore_index` pixels count for nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReferringIoU:
    intersection: float = 0.0
    union: float = 0.0
    per_sample: list[float] = field(default_factory=list)

    def update(self, pred: np.ndarray, target: np.ndarray) -> float:
        p, t = np.asarray(pred, bool), np.asarray(target, bool)
        if p.shape != t.shape:
            raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
        inter, union = float(np.logical_and(p, t).sum()), float(np.logical_or(p, t).sum())
        self.intersection += inter
        self.union += union
        iou = inter / union if union else 1.0
        self.per_sample.append(iou)
        return iou

    @property
    def ciou(self) -> float:
        return self.intersection / self.union if self.union else 1.0

    @property
    def giou(self) -> float:
        return float(np.mean(self.per_sample)) if self.per_sample else 0.0


@dataclass
class SemanticIoU:
    num_classes: int
    ignore_index: int = 255
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        p, t = np.asarray(pred, np.int64).ravel(), np.asarray(target, np.int64).ravel()
        if p.shape != t.shape:
            raise ValueError("prediction and target differ in size")
        keep = t != self.ignore_index
        p, t = p[keep], t[keep]
        if ((p < 0) | (p >= self.num_classes) | (t < 0) | (t >= self.num_classes)).any():
            raise ValueError(f"labels outside 0..{self.num_classes - 1} (ignore_index {self.ignore_index})")
        self.confusion += np.bincount(t * self.num_classes + p, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def per_class(self) -> np.ndarray:
        """IoU per class; NaN for a class absent from both target and prediction."""
        inter = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / union, np.nan)

    @property
    def miou(self) -> float:
        values = self.per_class()
        return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
