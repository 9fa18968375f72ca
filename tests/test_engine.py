"""PerceptionEngine without ROS: newest frame only, async grounding, bad frames dropped."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from reasonseg.core.errors import InputError
from reasonseg.core.prompt import Prompt
from reasonseg.core.timing import Timer
from reasonseg.core.results import FrameResult, Grounding, Target
from reasonseg.pipelines.base import Pipeline
from reasonseg.runtime.engine import Frame, PerceptionEngine
from reasonseg.core.settings import RuntimeSettings


class TimedPipeline(Pipeline):
    """A pipeline with set costs: marks the whole frame, so outputs are easy to check."""

    name = "timed"

    def __init__(self, segment_s: float, ground_s: float) -> None:
        self.segment_s, self.ground_s = segment_s, ground_s
        self.ground_threads: list[str] = []
        self.grounded = threading.Event()

    def analyse(self, image, timer: Timer):
        return None

    def ground(self, image, instruction, analysis=None) -> Grounding:
        self.ground_threads.append(threading.current_thread().name)
        time.sleep(self.ground_s)
        self.grounded.set()
        h, w = image.shape[:2]
        return Grounding(instruction, ("thing",), (Target("thing", 1.0, Prompt(box=(0, 0, w, h))),), "all",
                         "local", self.name)

    def segment(self, image, grounding, track=(), analysis=None) -> FrameResult:
        time.sleep(self.segment_s)
        return FrameResult(np.ones(image.shape[:2], bool), True, grounding.labels, grounding.boxes, 1.0, grounding,
                           {"segment": self.segment_s * 1e3})


def _engine(pipeline, **runtime):
    outputs, errors = [], []
    eng = PerceptionEngine(pipeline, RuntimeSettings(**{"keyframe_period": 1, **runtime}), on_error=errors.append)
    cam = eng.add_camera("", outputs.append)
    eng.start()
    return eng, cam, outputs, errors


def _frame(i: int) -> Frame:
    return Frame(np.full((4, 6, 3), i % 255, np.uint8), stamp_ns=i)


def _feed(cam, frames: int = 60, until=lambda: False) -> None:
    """A 50 Hz stream of `frames` frames into `cam`, stopping early once `until()` holds."""
    for i in range(frames):
        cam.submit(_frame(i))
        time.sleep(0.02)
        if until():
            return


def test_newest_frame_only_and_no_output_before_instruction():
    eng, cam, outputs, errors = _engine(TimedPipeline(0.1, 0.05))
    try:
        for i in range(5):
            cam.submit(_frame(i))
        time.sleep(0.3)
        assert outputs == []  # no instruction yet: nothing to answer
        cam.set_instruction("the thing", max_chars=100)
        for i in range(5, 200):  # 200 Hz against a 10 Hz pipeline
            cam.submit(_frame(i))
            time.sleep(0.005)
        time.sleep(0.5)
        stamps = [o.frame.stamp_ns for o in outputs]
        assert 3 <= len(stamps) < 40 and stamps == sorted(stamps)
        assert cam.frames_dropped > 100
    finally:
        eng.stop()
    assert not errors


def test_slow_grounding_does_not_stall_segmentation():
    pipe = TimedPipeline(0.02, 1.0)
    eng, cam, outputs, errors = _engine(pipe, reground_period_s=0.1)
    try:
        cam.set_instruction("the thing", max_chars=100)
        t_end = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < t_end:
            cam.submit(_frame(i))
            i += 1
            time.sleep(0.01)
        # one grounding per second at most, but masks flow at the segmenter's pace in between
        assert len(outputs) > 40
        assert set(pipe.ground_threads) == {"reasonseg-ground-camera"}
    finally:
        eng.stop()


def test_instruction_change_discards_old_answers_and_bad_frames_are_dropped():
    eng, cam, outputs, errors = _engine(TimedPipeline(0.05, 0.05))
    try:
        cam.set_instruction("the thing", max_chars=100)

        def bad() -> np.ndarray:
            raise InputError("image data has 3 bytes, expected step*height = 72")

        cam.submit(Frame(bad, stamp_ns=1))
        time.sleep(0.2)
        assert errors and "frame dropped: image data has 3 bytes" in errors[0]
        for i in range(2, 10):
            cam.submit(_frame(i))
            time.sleep(0.06)
        cam.set_instruction("the other thing", max_chars=100)
        for i in range(10, 30):
            cam.submit(_frame(i))
            time.sleep(0.06)
        time.sleep(0.2)
        after = [o for o in outputs if o.frame.stamp_ns >= 12]
        assert after and all(o.instruction == "the other thing" for o in after)
        assert all(o.result.grounding.instruction == o.instruction for o in outputs)
        with pytest.raises(InputError):
            cam.set_instruction("", max_chars=100)
        assert cam.instruction == "the other thing"  # a bad instruction leaves the old one active
    finally:
        eng.stop()


class FaultyPipeline(TimedPipeline):
    """Raises from ground() and segment() on chosen calls, as a broken model or endpoint would."""

    def __init__(self) -> None:
        super().__init__(0.01, 0.01)
        self.ground_calls = self.segment_calls = 0

    def ground(self, image, instruction, analysis=None) -> Grounding:
        self.ground_calls += 1
        if self.ground_calls == 1:
            raise ValueError("Logger severity cannot be changed between calls.")
        return super().ground(image, instruction, analysis)

    def segment(self, image, grounding, track=(), analysis=None) -> FrameResult:
        self.segment_calls += 1
        if self.segment_calls in (1, 2):
            raise MemoryError("out of memory in the decoder")
        return super().segment(image, grounding, track, analysis)


def test_workers_survive_any_exception_and_count_it():
    errors: list[str] = []

    def flaky_sink(msg: str) -> None:  # the error reporter itself fails the first time
        errors.append(msg)
        if len(errors) == 1:
            raise RuntimeError("log sink broken")

    pipe = FaultyPipeline()
    outputs: list = []
    eng = PerceptionEngine(pipe, RuntimeSettings(lost_frames_before_reground=1), on_error=flaky_sink)
    cam = eng.add_camera("", outputs.append)
    eng.start()
    try:
        cam.set_instruction("the thing", max_chars=100)
        _feed(cam)
        assert all(t.is_alive() for t in eng._threads), "a worker thread ended"
        assert outputs, "no mask after the faults: grounding or segmentation stopped for good"
        assert pipe.ground_calls >= 2 and cam.stats["errors"] == 3
        assert any("grounding failed: ValueError" in e for e in errors)
        assert sum("frame dropped: MemoryError" in e for e in errors) == 2
    finally:
        eng.stop()


class UnstartablePipeline(TimedPipeline):
    """The first track cannot start (a SAM2 stream failing on its grounding frame, say)."""

    def __init__(self) -> None:
        super().__init__(0.01, 0.01)
        self.starts = 0

    def start(self, image, grounding, analysis=None):
        self.starts += 1
        if self.starts == 1:
            raise RuntimeError("cannot condition the tracker")
        return super().start(image, grounding, analysis)


def test_a_track_that_cannot_start_asks_for_a_new_grounding():
    pipe = UnstartablePipeline()
    outputs, errors = [], []
    eng = PerceptionEngine(pipe, RuntimeSettings(reground_period_s=0.0), on_error=errors.append)
    cam = eng.add_camera("", outputs.append)
    eng.start()
    try:
        cam.set_instruction("the thing", max_chars=100)
        _feed(cam, until=lambda: outputs and cam.stats["groundings"] >= 2)
        assert outputs and cam.stats["groundings"] >= 2, (cam.stats, errors)
        assert sum("cannot condition the tracker" in e for e in errors) == 1
    finally:
        eng.stop()


def test_cameras_share_one_pipeline_fairly_and_clear_stops_one():
    """Three cameras, one at 10x the others' rate: each gets its own target and a fair share of the worker."""
    pipe = TimedPipeline(0.02, 0.01)
    eng = PerceptionEngine(pipe, RuntimeSettings(), on_error=lambda m: None)
    outputs: dict[str, list] = {name: [] for name in ("front", "left", "right")}
    cams = {name: eng.add_camera(name, outputs[name].append) for name in outputs}
    eng.start()
    try:
        for name, cam in cams.items():
            cam.set_instruction(f"the thing seen by {name}", max_chars=100)
        t_end, i = time.monotonic() + 2.0, 0
        while time.monotonic() < t_end:
            cams["front"].submit(_frame(i))  # floods
            if i % 10 == 0:
                cams["left"].submit(_frame(i))
                cams["right"].submit(_frame(i))
            i += 1
            time.sleep(0.002)
        counts = {name: len(out) for name, out in outputs.items()}
        sent_slow = i // 10 + 1
        # round robin: a slow camera gets its fair third of the worker, or every frame it sent if that is less,
        # however much front floods (a FIFO would give front nearly everything)
        fair = min(sent_slow, sum(counts.values()) / 3)
        assert min(counts["left"], counts["right"]) >= 0.8 * fair, (counts, sent_slow)
        for name, out in outputs.items():
            assert out and all(o.camera == name and o.instruction.endswith(name) for o in out)
        cams["left"].clear()
        n_left = len(outputs["left"])
        for j in range(5):
            cams["left"].submit(_frame(j))
            time.sleep(0.05)
        assert len(outputs["left"]) == n_left and cams["left"].instruction is None
    finally:
        eng.stop()


def test_a_camera_that_changes_resolution_is_grounded_again_before_it_is_masked():
    """The grounding's box is in the old frame's pixels: no mask of a new-size frame may use it."""
    pipe = TimedPipeline(segment_s=0.01, ground_s=0.05)
    eng, cam, outputs, errors = _engine(pipe, reground_period_s=0.0)
    try:
        cam.set_instruction("the thing", 100)
        for size in ((4, 6), (8, 12), (4, 6)):
            n = len(outputs)
            for i in range(200):
                cam.submit(Frame(np.zeros((*size, 3), np.uint8), stamp_ns=i))
                time.sleep(0.01)
                if len(outputs) - n >= 5 and outputs[-1].image.shape[:2] == size:
                    break
            assert outputs[-1].image.shape[:2] == size, f"no output at {size}"
        for out in outputs:  # every mask from a grounding of its own frame size
            h, w = out.image.shape[:2]
            assert out.result.grounding.boxes == ((0, 0, w, h),), (out.image.shape, out.result.grounding.boxes)
        assert pipe.grounded.is_set() and not errors
    finally:
        eng.stop()
