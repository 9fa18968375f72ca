"""Key frames + optical flow (reasonseg/runtime/propagation.py): the mask follows a moving object on real DIS flow,
and a new key frame is due when the flow stops agreeing with itself, the area drifts or the period ends."""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from reasonseg.core.prompt import Prompt, mask_box
from reasonseg.core.results import PROPAGATED, SEGMENTED, FrameResult, Grounding, Instance, Target
from reasonseg.core.settings import DiagnosticsSettings, RuntimeSettings
from reasonseg.core.timing import Timer
from reasonseg.pipelines.base import Pipeline
from reasonseg.runtime.engine import Frame, PerceptionEngine
from reasonseg.runtime.health import HealthRater, StreamSnapshot
from reasonseg.runtime.propagation import MaskPropagator

H, W, R = 120, 160, 18  # frame, object radius


def _texture(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Smooth random texture: something for optical flow to hold on to."""
    noise = np.random.default_rng(seed).integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


BACKGROUND, SKIN = _texture(1), _texture(2)


def scene(cx: float, cy: float, radius: float = R) -> tuple[np.ndarray, np.ndarray]:
    """A textured disk centred at (cx, cy) over a still textured background; (frame, its true mask). The disk's
    texture moves and scales with it (a real object coming closer, not a hole in the background)."""
    yy, xx = np.mgrid[0:H, 0:W]
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
    z = radius / R
    shift = np.float32([[z, 0, cx - z * W / 2], [0, z, cy - z * H / 2]])
    skin = cv2.warpAffine(SKIN, shift, (W, H), borderMode=cv2.BORDER_REFLECT)
    return np.where(mask[..., None], skin, BACKGROUND), mask


def segmented(mask: np.ndarray, label: str = "ball") -> FrameResult:
    g = Grounding("the ball", (label,), (Target(label, 0.9, Prompt(box=mask_box(mask))),), "test", "local", "test")
    return FrameResult.found(mask, (Instance(label, 0.9, mask_box(mask)),), g, {"segment": 1.0})


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_the_mask_follows_a_moving_object_and_says_it_was_propagated():
    prop = MaskPropagator(RuntimeSettings(keyframe_period=100))
    image, mask = scene(50, 60)
    prop.key(image, segmented(mask))
    for k in range(1, 9):  # 3 px right, 1 px down per frame
        image, truth = scene(50 + 3 * k, 60 + k)
        out = prop.propagate(image)
        assert out is not None, prop.why_key
        assert out.mask_source == PROPAGATED and out.valid and out.labels == ("ball",)
        assert iou(out.mask, truth) > 0.85, (k, iou(out.mask, truth))
        assert set(out.timings_ms) == {"optical_flow", "mask_warp"}
        assert prop.last_check.consistency > 0.9 and abs(prop.last_check.area_change) < 0.2
    # the instance's box moved with the object (8 frames: 24 px right, 8 px down)
    x0, y0, x1, y1 = out.instances[0].box
    tx0, ty0, tx1, ty1 = mask_box(truth)
    assert max(abs(x0 - tx0), abs(y0 - ty0), abs(x1 - tx1), abs(y1 - ty1)) <= 4, (out.instances[0].box, mask_box(truth))
    assert out.grounding.instruction == "the ball" and "consistent" in out.note


def test_a_still_mask_would_be_wrong_so_the_flow_is_what_moves_it():
    """The check above fails without flow: the key mask left in place loses the object."""
    _, first = scene(50, 60)
    _, last = scene(74, 68)
    assert iou(first, last) < 0.5


def test_a_key_frame_is_due_every_period():
    prop = MaskPropagator(RuntimeSettings(keyframe_period=4))
    image, mask = scene(50, 60)
    prop.key(image, segmented(mask))
    got = [prop.propagate(scene(50 + 2 * k, 60)[0]) for k in range(1, 5)]
    assert [g is not None for g in got] == [True, True, True, False]
    assert "every 4 frames" in prop.why_key
    prop.key(scene(60, 60)[0], segmented(scene(60, 60)[1]))  # a new key frame restarts the count
    assert prop.propagate(scene(62, 60)[0]) is not None


def test_period_one_means_every_frame_is_segmented():
    prop = MaskPropagator(RuntimeSettings(keyframe_period=1))
    assert not prop.enabled
    image, mask = scene(50, 60)
    prop.key(image, segmented(mask))
    assert prop.propagate(image) is None


def test_a_scene_cut_fails_the_forward_backward_check():
    prop = MaskPropagator(RuntimeSettings(keyframe_period=100))
    image, mask = scene(50, 60)
    prop.key(image, segmented(mask))
    cut = _texture(7)  # another place altogether: no flow explains it
    assert prop.propagate(cut) is None
    assert "consistent" in prop.why_key or "area" in prop.why_key or "vanished" in prop.why_key, prop.why_key


def test_an_object_coming_closer_grows_with_it_until_a_key_frame_is_due():
    prop = MaskPropagator(RuntimeSettings(keyframe_period=100, flow_max_area_change=0.35))
    image, mask = scene(80, 60, radius=14)
    prop.key(image, segmented(mask))
    carried = []
    for radius in range(15, 26):  # +7 % to +3 % in size per frame
        image, truth = scene(80, 60, radius=radius)
        out = prop.propagate(image)
        if out is None:
            break
        carried.append((radius, iou(out.mask, truth), int(out.mask.sum())))
    assert out is None and "area" in prop.why_key, (prop.why_key, carried)
    assert len(carried) >= 2 and carried[-1][2] > 1.2 * mask.sum(), carried  # it grew with the object
    assert all(v > 0.75 for _, v, _ in carried), carried


def test_nothing_is_carried_from_a_frame_without_the_target_or_of_another_size():
    prop = MaskPropagator(RuntimeSettings(keyframe_period=10))
    image, mask = scene(50, 60)
    g = segmented(mask).grounding
    prop.key(image, FrameResult.not_found(np.zeros((H, W), bool), g, {}, "target lost"))
    assert prop.propagate(image) is None and "not found" in prop.why_key
    prop.key(image, segmented(mask))
    assert prop.propagate(cv2.resize(image, (W * 2, H * 2))) is None and "size" in prop.why_key


def test_flow_runs_on_a_shrunk_frame_and_the_mask_comes_back_full_size():
    """A 1280x960 frame: flow at flow_max_side 160 px, the mask at full resolution, still on the object."""
    prop = MaskPropagator(RuntimeSettings(keyframe_period=10, flow_max_side=160))
    big = lambda cx: tuple(cv2.resize(a.astype(np.uint8), (1280, 960), interpolation=cv2.INTER_NEAREST)  # noqa: E731
                           for a in scene(cx, 60))
    image, mask = big(50)
    prop.key(image, segmented(mask.astype(bool)))
    image, truth = big(54)
    out = prop.propagate(image)
    assert out is not None and out.mask.shape == (960, 1280)
    assert iou(out.mask, truth.astype(bool)) > 0.85


# -- in the engine: key frames by the pipeline, the frames between by flow ------------------------------------------

class DiskPipeline(Pipeline):
    """Segments the disk exactly (the test knows where it is), slowly, and counts its runs."""

    name = "disk"

    def __init__(self, centres: dict[int, tuple[float, float]], segment_s: float = 0.05) -> None:
        self.centres, self.segment_s = centres, segment_s
        self.runs = 0

    def analyse(self, image, timer: Timer):
        return None

    def ground(self, image, instruction, analysis=None) -> Grounding:
        return segmented(np.ones((H, W), bool)).grounding

    def segment(self, image, grounding, track=(), analysis=None) -> FrameResult:
        self.runs += 1
        time.sleep(self.segment_s)
        cx, cy = self.centres[_stamp_of(image)]
        mask = scene(cx, cy)[1]
        return dataclasses.replace(segmented(mask), grounding=grounding)


_STAMPS: dict[int, int] = {}  # id of a frame's pixels -> its index (frames are the test's own arrays)


def _stamp_of(image: np.ndarray) -> int:
    return _STAMPS[id(image)]


def test_engine_publishes_key_frames_and_propagated_frames_and_counts_both():
    centres = {i: (40 + 1.5 * i, 60) for i in range(40)}
    pipe = DiskPipeline(centres)
    outputs: list = []
    eng = PerceptionEngine(pipe, RuntimeSettings(keyframe_period=5, reground_period_s=0.0),
                           on_error=lambda m: outputs.append(m))
    cam = eng.add_camera("", outputs.append)
    eng.start()
    frames = []
    try:
        cam.set_instruction("the ball", 100)
        for i in range(40):
            image = scene(*centres[i])[0]
            _STAMPS[id(image)] = i
            frames.append(image)  # keeps the array (and its id) alive
            cam.submit(Frame(image, stamp_ns=i))
            time.sleep(0.03)
            if len(outputs) >= 20:
                break
        deadline = time.monotonic() + 5
        while len(outputs) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        eng.stop()
    assert all(not isinstance(o, str) for o in outputs), [o for o in outputs if isinstance(o, str)]
    kinds = [o.result.mask_source for o in outputs]
    assert kinds[0] == SEGMENTED and PROPAGATED in kinds, kinds
    assert cam.stats["frames_segmented"] == kinds.count(SEGMENTED) == pipe.runs
    assert cam.stats["frames_propagated"] == kinds.count(PROPAGATED)
    assert cam.stats["frames_processed"] == len(outputs)
    run = 0  # never more than keyframe_period - 1 propagated frames in a row
    for k in kinds:
        run = run + 1 if k == PROPAGATED else 0
        assert run <= 4, kinds
    for o in outputs:  # every mask on the disk of its own frame
        truth = scene(*centres[o.frame.stamp_ns])[1]
        assert iou(o.result.mask, truth) > 0.8, (o.frame.stamp_ns, o.result.mask_source, iou(o.result.mask, truth))


def test_health_reports_both_rates_over_the_window():
    rater = HealthRater(DiagnosticsSettings())
    snap = lambda t, seg, prop: StreamSnapshot(seg + prop, 0, 0, seg + prop, 0, 0, 0, 0.1, t,  # noqa: E731
                                               frames_segmented=seg, frames_propagated=prop)
    rater.rate(snap(1.0, 2, 10), [])
    level, message = rater.rate(snap(3.0, 6, 40), [])
    assert rater.rates == {"masks_segmented_per_s": 2.0, "masks_propagated_per_s": 15.0}
    assert "2/s segmented, 15/s propagated" in message
    rater.rate(snap(0.5, 6, 40), [])  # re-activated: no window to divide by
    assert rater.rates == {}


def test_a_box_track_follows_the_carried_boxes_to_the_next_key_frame():
    """refine / mllm follow last frame's boxes: after frames carried by flow the key frame must look where the
    object is now, not where the last key frame saw it."""
    pipe = DiskPipeline({})
    track = pipe.start(None, pipe.ground(None, "the ball"))
    moved = segmented(scene(90, 70)[1])
    track.carried(moved)
    assert track.boxes == moved.boxes
    track.carried(FrameResult.not_found(moved.mask, moved.grounding, {}, "lost"))
    assert track.boxes == moved.boxes  # nothing found: keep the last boxes
