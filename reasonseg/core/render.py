"""Pictures people look at: mask overlays and contact sheets."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from reasonseg.core.model_text import clean_model_text
from reasonseg.core.results import FrameResult

_TINT = np.array([255, 40, 200], np.uint8)  # magenta reads on roads, sky and foliage alike
MAX_CAPTION_CHARS = 120


def render_overlay(image_rgb: np.ndarray, result: FrameResult, instruction: str = "") -> np.ndarray:
    """RGB image with the mask tinted, its outline, the box and a caption.

    Every size-dependent cost is bounded: uint8 blending (no float copy of the frame), line widths
    and the caption's font scale from the short side, clamped, the caption text capped.
    """
    out = image_rgb.copy()
    line = _line_width(image_rgb.shape)
    tint_mask(out, result.mask, _TINT, (255, 255, 255), line, keep=0.45, weight=0.55)
    for box in result.boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 220, 0), line + 1)
    label = ",".join(result.labels) if result.valid else "no target"
    caption = f"{instruction} -> {label} {result.score:.2f}" if instruction else f"{label} {result.score:.2f}"
    _caption(out, caption)
    return out


def tint_mask(out: np.ndarray, mask: np.ndarray, colour, outline: tuple[int, int, int], line: int, *,
              keep: float, weight: float) -> None:
    """In place: the mask's pixels of `out` blended toward `colour` (`keep` x pixel + `weight` x colour, uint8:
    no float copy of the frame), and the mask's outer contour drawn in `outline`."""
    if mask.any():
        tinted = cv2.addWeighted(out, keep, np.broadcast_to(colour, out.shape), weight, 0.0)
        np.copyto(out, tinted, where=mask[:, :, None])
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, outline, line)


def _line_width(shape: tuple[int, ...]) -> int:
    return int(np.clip(min(shape[:2]) // 300, 1, 6))


def _caption(img: np.ndarray, text: str, scale: float | None = None) -> None:
    text = clean_model_text(text, max_chars=4 * MAX_CAPTION_CHARS)  # labels from a model: one line, no controls
    text = text if len(text) <= MAX_CAPTION_CHARS else text[: MAX_CAPTION_CHARS - 3] + "..."
    # Hershey fonts draw ASCII only, and OpenCV segfaults on a str it cannot encode (a lone surrogate
    # from an undecodable file name): hand it ASCII, '?' for the rest.
    text = text.encode("ascii", "replace").decode("ascii")
    if scale is None:  # from the short side, clamped: a very wide frame must not draw a giant glyph
        scale = float(np.clip(min(img.shape[:2]) / 1000, 0.4, 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (min(img.shape[1], tw + 8), th + base + 8), (0, 0, 0), -1)
    cv2.putText(img, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], *, tile_width: int = 320) -> np.ndarray:
    """One row per sample: frame | mask | overlay, with the instruction above. Returns RGB."""
    tiles = []
    for frame, mask, overlay, title in rows:
        h = int(round(frame.shape[0] * tile_width / frame.shape[1]))
        cells = [cv2.resize(frame, (tile_width, h)), cv2.resize(np.repeat(mask[:, :, None], 3, 2), (tile_width, h),
                                                                interpolation=cv2.INTER_NEAREST),
                 cv2.resize(overlay, (tile_width, h))]
        band = np.full((28, tile_width * 3 + 8, 3), 32, np.uint8)
        _caption(band, title, scale=0.6)
        row = np.concatenate([cells[0], np.full((h, 4, 3), 255, np.uint8), cells[1],
                              np.full((h, 4, 3), 255, np.uint8), cells[2]], axis=1)
        tiles += [band, row, np.full((6, row.shape[1], 3), 255, np.uint8)]
    if not tiles:
        return np.full((40, tile_width * 3, 3), 255, np.uint8)
    width = max(t.shape[1] for t in tiles)
    return np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles])
