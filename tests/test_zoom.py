"""The closer look at small or weak boxes of the instruction's class (reasonseg/grounding/zoom.py): when it runs,
where it looks, what it keeps; and the real detector's region pass mapping boxes back to the frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reasonseg.grounding.selection import box_iou
from reasonseg.grounding.zoom import ZOOM_NEW_SCORE, merge_zoomed, needs_zoom, zoom_region


@dataclass(frozen=True)
class Det:
    box: tuple
    score: float
    label: str


def test_a_second_look_only_for_small_or_weak_evidence_of_the_asked_class():
    small_person = Det((100, 100, 120, 140), 0.6, "person")   # 40 px in a 768 frame: small at 0.06
    big_person = Det((100, 100, 180, 300), 0.6, "person")
    weak_big = Det((100, 100, 180, 300), 0.2, "person")
    car = Det((300, 100, 330, 120), 0.2, "car")
    small = 0.06 * 768
    assert needs_zoom([small_person, car], ("person",), small)
    assert needs_zoom([weak_big], ("person",), small)
    assert not needs_zoom([small_person, big_person], ("person",), small)  # one conclusive box is enough
    assert not needs_zoom([car], ("person",), small)  # no evidence at all: absence stays absence
    assert not needs_zoom([small_person], (), small)


def test_the_region_enlarges_the_evidence_keeps_the_frame_aspect_and_stays_inside():
    r = zoom_region([(700, 500, 730, 560)], 768, 576, 2.0)  # in the bottom-right corner
    assert r is not None
    assert np.isclose(r[2] - r[0], 384) and np.isclose(r[3] - r[1], 288)  # 2x, the frame's aspect
    assert r[0] >= 0 and r[1] >= 0 and r[2] <= 768 and r[3] <= 576
    assert r[0] <= 700 and r[1] <= 500 and r[2] >= 730 and r[3] >= 560  # the evidence is inside
    # evidence spread across the frame: no crop enlarges it, so no pass
    assert zoom_region([(5, 100, 40, 160), (720, 300, 760, 360)], 768, 576, 2.0) is None
    assert zoom_region([], 768, 576, 2.0) is None
    wide = zoom_region([(200, 200, 420, 260)], 768, 576, 3.0)  # wider evidence: enlarged less than 3x
    assert wide is not None and 768 / (wide[2] - wide[0]) < 3.0


def test_the_closer_look_confirms_drops_and_adds_with_a_higher_bar():
    region = (0, 0, 384, 288)
    dets = [Det((100, 100, 120, 140), 0.25, "person"),   # found again in the zoom: the zoom's box
            Det((140, 100, 160, 140), 0.35, "person"),   # found again, weaker: the zoom's box, the native score
            Det((200, 100, 215, 130), 0.2, "person"),    # a shadow: not found again, dropped
            Det((500, 100, 520, 140), 0.2, "person"),    # outside the region: untouched
            Det((50, 50, 90, 80), 0.5, "car")]           # another class: untouched
    zoomed = [Det((101, 99, 121, 141), 0.55, "person"), Det((141, 101, 161, 139), 0.2, "person"),
              Det((300, 150, 318, 190), ZOOM_NEW_SCORE + 0.1, "person"),  # only the zoom sees it: added
              Det((330, 150, 348, 190), ZOOM_NEW_SCORE - 0.1, "person"),  # too weak to add
              Det((10, 10, 30, 30), 0.9, "dog")]                          # not the asked class
    out, note = merge_zoomed(dets, zoomed, region, ("person",), 46.0)
    boxes = {d.box for d in out}
    assert (101, 99, 121, 141) in boxes and (100, 100, 120, 140) not in boxes
    assert [d.score for d in out if d.box == (141, 101, 161, 139)] == [0.35]
    assert (200, 100, 215, 130) not in boxes
    assert (500, 100, 520, 140) in boxes and (50, 50, 90, 80) in boxes
    assert (300, 150, 318, 190) in boxes and (330, 150, 348, 190) not in boxes and (10, 10, 30, 30) not in boxes
    assert note == "closer look: 2 confirmed, 1 dropped, 1 added"
    assert [d.score for d in out] == sorted((d.score for d in out), reverse=True)


def test_the_real_detector_looks_at_a_region_in_frame_pixels(refine_pipeline, photos, load_rgb):
    """CenterNet on a crop of a real photo: the same objects, boxes mapped back onto the frame, none cut by the crop."""
    image = load_rgb(photos / "kite.jpg")
    det = refine_pipeline.detector
    full = [d for d in det.detect(image, score_floor=0.3) if d.label == "person"]
    assert full
    h, w = image.shape[:2]
    target = max(full, key=lambda d: d.score)
    region = zoom_region([target.box], w, h, 2.0)
    assert region is not None
    near = det.detect_region(image, region, score_floor=0.3)
    again = [d for d in near if d.label == "person" and box_iou(d.box, target.box) >= 0.5]
    assert again, (target, near)
    for d in near:
        assert region[0] - 1 <= d.box[0] and d.box[2] <= region[2] + 1
        assert region[1] - 1 <= d.box[1] and d.box[3] <= region[3] + 1
        assert all(region[0] - 1 <= x <= region[2] + 1 and region[1] - 1 <= y <= region[3] + 1 for x, y in d.points)
    assert det.detect_region(image, (10, 10, 11, 11)) == []  # a region too small to look at


def test_refine_takes_a_closer_look_at_a_small_dog_and_says_so(refine_pipeline, photos, load_rgb, monkeypatch):
    """A real photo shrunk to a quarter in the corner of a larger frame: the dog is small, so grounding looks again
    and says what the closer look did; with `detector.zoom_in: 1` it does not."""
    import dataclasses

    import cv2

    src = load_rgb(photos / "dog.jpg")
    small = cv2.resize(src, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    frame = np.full((576, 768, 3), 128, np.uint8)
    frame[400:400 + small.shape[0], 550:550 + small.shape[1]] = small
    full_dog = max((d for d in refine_pipeline.detector.detect(src) if d.label == "dog"), key=lambda d: d.score)
    truth = tuple(v * 0.25 + o for v, o in zip(full_dog.box, (550, 400, 550, 400)))

    calls = []
    real = refine_pipeline.detector.detect_region
    monkeypatch.setattr(refine_pipeline.detector, "detect_region", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = refine_pipeline.run(frame, "the dog")
    assert "closer look: 1 confirmed" in result.grounding.reasoning, result.grounding.reasoning
    assert len(calls) == 1  # the grounding and the first mask share the frame's analysis: one closer look
    assert box_iou(result.grounding.targets[0].prompt.box, truth) >= 0.5
    assert result.mask[int(truth[1]):int(truth[3]), int(truth[0]):int(truth[2])].sum() >= 0.8 * result.mask.sum()

    settings = refine_pipeline.settings
    off = dataclasses.replace(settings, detector=dataclasses.replace(settings.detector, zoom_in=1.0))
    monkeypatch.setattr(refine_pipeline, "settings", off)
    assert "closer look" not in refine_pipeline.run(frame, "the dog").grounding.reasoning
