"""Pictures people look at: mask overlays and contact sheets."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .pipelines.base import FrameResult

_TINT = np.array([255, 40, 200], np.float32)  # magenta reads on roads, sky and foliage alike


def render_overlay(image_rgb: np.ndarray, result: FrameResult, instruction: str = "") -> np.ndarray:
    """RGB image with the mask tinted, its outline, the box and a caption."""
    out = image_rgb.astype(np.float32)
    m = result.mask
    out[m] = out[m] * 0.45 + _TINT * 0.55
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, image_rgb.shape[1] // 400))
    for box in result.boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 220, 0), max(1, image_rgb.shape[1] // 320))
    label = ",".join(result.labels) if result.valid else "no target"
    caption = f"{instruction} -> {label} {result.score:.2f}" if instruction else f"{label} {result.score:.2f}"
    _caption(out, caption)
    return out


def _caption(img: np.ndarray, text: str, top: int = 0) -> None:
    scale = max(0.4, img.shape[1] / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, top), (min(img.shape[1], tw + 8), top + th + base + 8), (0, 0, 0), -1)
    cv2.putText(img, text, (4, top + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], *, tile_width: int = 320) -> np.ndarray:
    """One row per sample: frame | mask | overlay, with the instruction above. Returns RGB."""
    tiles = []
    for frame, mask, overlay, title in rows:
        h = int(round(frame.shape[0] * tile_width / frame.shape[1]))
        cells = [cv2.resize(frame, (tile_width, h)), cv2.resize(np.repeat(mask[:, :, None], 3, 2), (tile_width, h),
                                                                interpolation=cv2.INTER_NEAREST),
                 cv2.resize(overlay, (tile_width, h))]
        band = np.full((28, tile_width * 3 + 8, 3), 32, np.uint8)
        _caption(band, title[:120])
        row = np.concatenate([cells[0], np.full((h, 4, 3), 255, np.uint8), cells[1],
                              np.full((h, 4, 3), 255, np.uint8), cells[2]], axis=1)
        tiles += [band, row, np.full((6, row.shape[1], 3), 255, np.uint8)]
    if not tiles:
        return np.full((40, tile_width * 3, 3), 255, np.uint8)
    width = max(t.shape[1] for t in tiles)
    return np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles])
