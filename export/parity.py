"""Parity of an exported graph with its PyTorch (or fp32) reference: errors on logits, IoU on masks."""
from __future__ import annotations

import numpy as np

from reasonseg.core.errors import ReasonSegError

FP32_MAX_REL = 1e-4  # an fp32 graph against PyTorch: relative to the reference's largest magnitude


class ParityError(ReasonSegError):
    """An exported graph disagrees with its reference beyond the stated tolerance."""


def errors(reference: np.ndarray, exported: np.ndarray, floor: float = 1e-12) -> dict[str, float]:
    """max |a - b| and the same relative to the reference's largest magnitude (logits cross zero, so an
    element-wise relative error is meaningless near their decision boundary), or to `floor` where that is
    larger (a probability map that is all ~0 for an input is judged on its [0, 1] scale)."""
    ref, got = np.asarray(reference, np.float64), np.asarray(exported, np.float64)
    if ref.shape != got.shape:
        raise ParityError(f"shape {got.shape} differs from the reference's {ref.shape}")
    abs_err = float(np.abs(ref - got).max()) if ref.size else 0.0
    return {"max_abs": abs_err, "max_rel": abs_err / max(float(np.abs(ref).max()) if ref.size else 0.0, floor)}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def require_close(name: str, reference: np.ndarray, exported: np.ndarray, max_rel: float, *,
                  floor: float = 1e-12, against: str = "PyTorch") -> dict[str, float]:
    err = errors(reference, exported, floor)
    if not err["max_rel"] <= max_rel:
        raise ParityError(f"{name}: exported output differs from {against} by {err['max_rel']:.2e} relative "
                          f"(max abs {err['max_abs']:.2e}), over the {max_rel:.0e} tolerance")
    return err
