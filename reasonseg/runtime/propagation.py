"""Masks at camera rate on a CPU: key-frame segmentation, optical flow on the frames between.

The pipeline segments a key frame (detector + encoder + decoder: ~0.3-0.6 s on 2 CPU cores); each later frame
carries the previous frame's mask forward with dense optical flow (OpenCV DIS, a few ms at `flow_max_side`):
backward flow (new -> previous frame) says where each new pixel came from, so the mask is pulled, not pushed,
and has no holes. The same flow checked against the forward flow (forward-backward consistency) says how far
to trust it: where the two disagree the pixel is occluded, newly visible or mis-matched. A new key frame is due
when too little of the carried mask passes that check, when its area has drifted too far from the key frame's
(a person turning, a car leaving), when the target was lost, or every `runtime.keyframe_period` frames.
Pure numpy / OpenCV, no pipeline: the engine decides which frames go where.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from reasonseg.core.prompt import Box
from reasonseg.core.results import PROPAGATED, FrameResult
from reasonseg.core.settings import RuntimeSettings
from reasonseg.core.timing import Timer

# A pixel passes the forward-backward check when the round trip ends this close to where it started, in flow
# pixels: a fixed part for sub-pixel noise plus a share of the motion (fast motion is matched less precisely).
FB_TOLERANCE_PX = 1.0
FB_TOLERANCE_SHARE = 0.1
BRIGHTNESS_TOLERANCE = 24  # gray levels (of 255) a tracked pixel may change by between two frames


@dataclass(frozen=True)
class FlowCheck:
    """How far a propagated mask can be trusted."""

    consistency: float   # share of the carried mask's pixels that pass the forward-backward check
    area_change: float   # |area / key-frame area - 1|

    def describe(self) -> str:
        return f"flow {self.consistency:.0%} consistent, area {self.area_change:+.0%}"


class MaskPropagator:
    """Carries one camera's last mask from frame to frame; `key` after every segmented frame."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._gray: np.ndarray | None = None   # previous frame, shrunk, uint8
        self._mask: np.ndarray | None = None   # previous frame's mask, full size, bool
        self._result: FrameResult | None = None
        self._key_area = 0
        self._since_key = 0
        self.last_check: FlowCheck | None = None
        self.why_key = "no key frame yet"      # why the last `propagate` declined (for the log)

    @property
    def enabled(self) -> bool:
        return self.settings.keyframe_period > 1

    def reset(self, why: str) -> None:
        self._gray = self._mask = self._result = None
        self.why_key = why

    def key(self, image_rgb: np.ndarray, result: FrameResult) -> None:
        """A segmented frame: the mask to carry from now on (nothing to carry when the target was not found)."""
        if not result.valid or not result.mask.any():
            self.reset("target not found on the last key frame")
            return
        self._gray = self._shrink(image_rgb)
        self._mask = result.mask
        self._result = result
        self._key_area = int(result.mask.sum())
        self._since_key = 0

    def propagate(self, image_rgb: np.ndarray) -> FrameResult | None:
        """This frame's mask carried by optical flow, or None when a key frame is due (`why_key` says why)."""
        if self._result is None or self._gray is None or self._mask is None or not self._result.instances:
            return None
        if self._mask.shape != image_rgb.shape[:2]:
            self.reset("frame size changed")
            return None
        if self._since_key + 1 >= self.settings.keyframe_period:
            self.why_key = f"key frame every {self.settings.keyframe_period} frames"
            return None
        timer = Timer()
        with timer.stage("optical_flow"):
            gray = self._shrink(image_rgb)
            back = self._dis.calc(gray, self._gray, None)    # new -> previous: where each new pixel came from
            fwd = self._dis.calc(self._gray, gray, None)     # previous -> new: for the round-trip check
        with timer.stage("mask_warp"):
            mask, consistent = _carry(self._mask, self._gray, gray, back, fwd)
        area = int(mask.sum())
        check = FlowCheck(consistent, area / max(1, self._key_area) - 1.0)
        self.last_check = check
        if not area:
            self.why_key = "the carried mask vanished"
            return None
        if check.consistency < self.settings.flow_min_consistency:
            self.why_key = f"{check.describe()} (< {self.settings.flow_min_consistency:.0%})"
            return None
        if abs(check.area_change) > self.settings.flow_max_area_change:
            self.why_key = f"{check.describe()} (beyond ±{self.settings.flow_max_area_change:.0%})"
            return None
        prev = self._result
        instances = tuple(dataclasses.replace(i, box=_moved_box(i.box, self._mask, mask, fwd)) for i in prev.instances)
        result = FrameResult.found(mask, instances, prev.grounding, timer.ms, check.describe())
        result = dataclasses.replace(result, mask_source=PROPAGATED)
        self._gray, self._mask, self._result = gray, mask, result
        self._since_key += 1
        return result

    def _shrink(self, image_rgb: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = self.settings.flow_max_side / max(h, w)
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return gray


def _carry(mask: np.ndarray, old: np.ndarray, new: np.ndarray, back: np.ndarray, fwd: np.ndarray
           ) -> tuple[np.ndarray, float]:
    """The previous full-size `mask` moved into the new frame by the motion of its own pixels, and the share of
    them whose flow holds: it survives the forward-backward round trip (Kalal et al. 2010, "Forward-Backward
    Error") and the pixel looks the same where it lands (brightness constancy, which a cut or a flash breaks
    while a smooth flow field may still round-trip). `old` / `new`: the frames at flow size, gray.

    Median flow, not per-pixel warping: DIS smooths the flow across an object's outline over about one patch
    (8-12 px), so pixels warped one by one leave a trailing smear that grows every frame. As in Kalal's
    MedianFlow tracker, the object moves by the median displacement of its round-trip-consistent interior pixels
    and scales by the median change of their distances to its centre; each 8-connected part of the mask (one
    person of "the two people") moves on its own."""
    h, w = mask.shape
    fh, fw = fwd.shape[:2]
    sx, sy = w / fw, h / fh
    count, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    moved = np.zeros((h, w), np.uint8)
    kept = total = 0
    for part in range(1, count):
        region = parts == part
        ys, xs = np.nonzero(region)
        # interior pixels: the outline's flow is the smoothed one (small parts keep every pixel)
        inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if inner.sum() >= 20:
            ys, xs = np.nonzero(inner)
        cx = np.clip(np.round(xs * (fw / w)).astype(np.int32), 0, fw - 1)  # each pixel's cell in the flow field
        cy = np.clip(np.round(ys * (fh / h)).astype(np.int32), 0, fh - 1)
        flow = fwd[cy, cx] * np.float32([sx, sy])
        nx, ny = xs + flow[:, 0], ys + flow[:, 1]
        tx = np.clip(np.round(nx * (fw / w)).astype(np.int32), 0, fw - 1)
        ty = np.clip(np.round(ny * (fh / h)).astype(np.int32), 0, fh - 1)
        error = np.hypot(*(flow + back[ty, tx] * np.float32([sx, sy])).T) / max(sx, sy)  # in flow pixels
        inside = (nx >= 0) & (nx <= w - 1) & (ny >= 0) & (ny <= h - 1)
        looks = np.abs(old[cy, cx].astype(np.int16) - new[ty, tx].astype(np.int16)) <= BRIGHTNESS_TOLERANCE
        ok = inside & looks & (error <= FB_TOLERANCE_PX + FB_TOLERANCE_SHARE * np.hypot(*flow.T) / max(sx, sy))
        total += len(xs)
        kept += int(ok.sum())
        if not ok.any():
            continue
        dx, dy = float(np.median(flow[ok, 0])), float(np.median(flow[ok, 1]))
        ox, oy = float(np.median(xs[ok])), float(np.median(ys[ok]))
        before = np.hypot(xs[ok] - ox, ys[ok] - oy)
        after = np.hypot(nx[ok] - ox - dx, ny[ok] - oy - dy)
        far = before > 2.0
        scale = float(np.clip(np.median(after[far] / before[far]), 0.8, 1.25)) if far.sum() >= 10 else 1.0
        # x' = scale * (x - o) + o + d
        affine = np.float32([[scale, 0, (1 - scale) * ox + dx], [0, scale, (1 - scale) * oy + dy]])
        moved |= cv2.warpAffine(region.astype(np.uint8), affine, (w, h), flags=cv2.INTER_NEAREST)
    return moved.astype(bool), kept / max(1, total)


def _moved_box(box: Box, old: np.ndarray, new: np.ndarray, fwd: np.ndarray) -> Box:
    """An instance's box moved with its pixels: the tight box of the new mask's pixels inside the old box shifted
    by the median forward flow of the old mask's pixels in it (the old box shifted when that is empty)."""
    h, w = old.shape
    fh, fw = fwd.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return box
    ys, xs = np.nonzero(old[y0:y1, x0:x1])
    if len(xs):
        fx = np.clip(((xs + x0) * fw / w).astype(int), 0, fw - 1)
        fy = np.clip(((ys + y0) * fh / h).astype(int), 0, fh - 1)
        dx, dy = float(np.median(fwd[fy, fx, 0])) * w / fw, float(np.median(fwd[fy, fx, 1])) * h / fh
    else:
        dx = dy = 0.0
    shifted = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
    sx0, sy0 = max(0, int(np.floor(shifted[0]))), max(0, int(np.floor(shifted[1])))
    sx1, sy1 = min(w, int(np.ceil(shifted[2]))), min(h, int(np.ceil(shifted[3])))
    if sx1 > sx0 and sy1 > sy0:
        ys, xs = np.nonzero(new[sy0:sy1, sx0:sx1])
        if len(xs):
            return float(xs.min() + sx0), float(ys.min() + sy0), float(xs.max() + 1 + sx0), float(ys.max() + 1 + sy0)
    return (float(np.clip(shifted[0], 0, w)), float(np.clip(shifted[1], 0, h)),
            float(np.clip(shifted[2], 0, w)), float(np.clip(shifted[3], 0, h)))


__all__ = ["FlowCheck", "MaskPropagator"]
