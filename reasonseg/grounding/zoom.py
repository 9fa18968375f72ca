"""A second, closer look where the instruction's class was found only small or weak (issue 33, scope 3).

At 512 px input a 768-px frame's 30-px pedestrian is 20 px to the detector: it is found weakly, boxed loosely,
or a shadow or a bollard is taken for one. An earlier attempt ran the detector on 2x2 tiles of every frame and
added every tile's detections: more people, and more false ones (each tile is a new chance for a weak false box,
and a tile cuts objects in halves that then read as whole ones). This pass differs in three ways:

* it runs only for the instruction's class, and only where the full-frame pass already has evidence of it that is
  not conclusive (small or weak boxes); a class with no box at all stays absent, and a confident, normal-sized one
  needs no second look;
* it looks at one region, the smallest crop around that evidence that enlarges it by up to `zoom_in`; when the
  evidence is spread over the frame no crop enlarges it and nothing runs;
* it *verifies* as much as it adds: a small box of the class inside the region that the closer look does not find
  again is dropped; a box it finds again takes the closer look's box and the higher of the two scores (a second
  look that agrees is no reason for less confidence); an object only the closer look finds must score
  ZOOM_NEW_SCORE there, and objects the crop cuts are left to the full-frame pass.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, TypeVar

from reasonseg.core.prompt import Box
from reasonseg.grounding.selection import DetectionLike, box_iou

D = TypeVar("D", bound=DetectionLike)

ZOOM_CONFIDENT = 0.4  # a box of the class this confident and not small is conclusive: no second look
ZOOM_NEW_SCORE = 0.3  # an object only the closer look finds must score this much there
SAME_IN_ZOOM_IOU = 0.3  # a closer-look box overlapping a full-frame one this much is the same object
MIN_ENLARGE = 1.5  # a crop that would enlarge less than this is not worth a detector pass
PAD = 0.5  # context around the evidence, as a share of its box size: the detector needs some surroundings


def _conclusive(d: DetectionLike, small: float) -> bool:
    """Confident, and its larger side at least `small` pixels: no second look needed."""
    return d.score >= ZOOM_CONFIDENT and max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= small


def needs_zoom(dets: Sequence[DetectionLike], labels: Sequence[str], small: float) -> bool:
    """The full-frame pass has boxes of the class, and none is conclusive (`small`: pixels)."""
    of_class = [d for d in dets if d.label in labels]
    return bool(of_class) and not any(_conclusive(d, small) for d in of_class)


def zoom_region(evidence: Sequence[Box], width: int, height: int, zoom_in: float) -> Box | None:
    """The crop (frame pixels, the frame's aspect) around the padded evidence that enlarges it the most, up to
    `zoom_in`; None when it would enlarge less than MIN_ENLARGE."""
    if not evidence:
        return None
    x0 = min(b[0] - PAD * (b[2] - b[0]) for b in evidence)
    y0 = min(b[1] - PAD * (b[3] - b[1]) for b in evidence)
    x1 = max(b[2] + PAD * (b[2] - b[0]) for b in evidence)
    y1 = max(b[3] + PAD * (b[3] - b[1]) for b in evidence)
    enlarge = min(zoom_in, width / max(x1 - x0, 1.0), height / max(y1 - y0, 1.0))
    if enlarge < MIN_ENLARGE:
        return None
    cw, ch = width / enlarge, height / enlarge
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(0.0, cx - cw / 2), width - cw)
    top = min(max(0.0, cy - ch / 2), height - ch)
    return left, top, left + cw, top + ch


def merge_zoomed(dets: Sequence[D], zoomed: Sequence[D], region: Box, labels: Sequence[str],
                 small: float) -> tuple[list[D], str]:
    """The full-frame detections with the closer look's verdict on the class's small or weak boxes inside
    `region`, and a line saying what changed."""
    def inside(b: Box) -> bool:
        return b[0] >= region[0] and b[1] >= region[1] and b[2] <= region[2] and b[3] <= region[3]

    out: list[D] = []
    used: set[int] = set()
    confirmed = dropped = 0
    for d in dets:
        if d.label not in labels or not inside(d.box) or _conclusive(d, small):
            out.append(d)
            continue
        k = max(range(len(zoomed)), key=lambda k: (zoomed[k].label == d.label, box_iou(zoomed[k].box, d.box)),
                default=None)
        if k is not None and k not in used and zoomed[k].label == d.label \
                and box_iou(zoomed[k].box, d.box) >= SAME_IN_ZOOM_IOU:
            used.add(k)
            out.append(dataclasses.replace(zoomed[k], score=max(zoomed[k].score, d.score)))
            confirmed += 1
        else:
            dropped += 1
    added = [z for k, z in enumerate(zoomed) if k not in used and z.label in labels and z.score >= ZOOM_NEW_SCORE
             and all(box_iou(z.box, d.box) < SAME_IN_ZOOM_IOU for d in out if d.label == z.label)]
    out += added
    out.sort(key=lambda d: -d.score)
    return out, f"closer look: {confirmed} confirmed, {dropped} dropped, {len(added)} added"


__all__ = ["needs_zoom", "zoom_region", "merge_zoomed"]
