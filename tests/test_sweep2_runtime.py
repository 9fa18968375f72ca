"""Runtime without ROS (issue 29): a failing grounder is retried with a bounded backoff, a closed engine frees its
pipeline without a garbage collection, rejected frames are rated WARN / ERROR per camera, and URL settings with
credentials are refused in one line."""
from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest

from reasonseg.core.settings import DiagnosticsSettings, RuntimeSettings, Settings
from reasonseg.settings.loading import with_overrides
from reasonseg.settings.ros_args import check_url_parameters
from reasonseg.core.errors import ConfigError, InputError
from reasonseg.runtime.backoff import RetryBackoff
from reasonseg.runtime.engine import Frame, PerceptionEngine
from reasonseg.runtime.health import ERROR, WARN, HealthRater, StreamSnapshot
from test_engine import TimedPipeline, _frame


def test_backoff_doubles_to_its_cap_and_resets():
    now = [100.0]
    b = RetryBackoff(0.5, 4.0, clock=lambda: now[0])
    assert b.ready() and b.state().failures == 0
    delays = [b.failed("http 500") for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert not b.ready() and b.state().retry_in_s == 4.0 and b.state().last_error == "http 500"
    now[0] += 4.0
    assert b.ready()
    for _ in range(5000):  # thousands of failures in a row: no overflow, still the cap
        b.failed("x")
    assert b.state().retry_in_s == 4.0
    b.reset()
    assert b.ready() and b.state().failures == 0 and b.state().last_error == ""


class FailingGrounder(TimedPipeline):
    """An endpoint that always fails: ground() raises, as the mllm pipeline does on HTTP 500."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0)
        self.calls: list[float] = []

    def ground(self, image, instruction, analysis=None):
        self.calls.append(time.monotonic())
        raise RuntimeError("HTTP 500 from the VLM endpoint")


def test_a_failing_grounder_is_asked_with_backoff_not_on_every_frame():
    pipe = FailingGrounder()
    errors: list[str] = []
    eng = PerceptionEngine(pipe, RuntimeSettings(), on_error=errors.append)
    cam = eng.add_camera("", lambda out: None)
    eng.start()
    try:
        cam.set_instruction("the thing", 100)
        t_end, i = time.monotonic() + 3.0, 0
        while time.monotonic() < t_end:  # a 50 Hz camera for 3 s
            cam.submit(_frame(i))
            i += 1
            time.sleep(0.02)
        # 0.5, 1, 2 s apart: 3-4 tries in 3 s, not one per frame (~150)
        assert 2 <= len(pipe.calls) <= 4, f"{len(pipe.calls)} grounding requests in 3 s"
        state = cam.grounding_backoff.state()
        assert state.failures == len(pipe.calls) and "HTTP 500" in state.last_error and state.retry_in_s > 0
        n = len(pipe.calls)
        cam.set_instruction("the other thing", 100)  # a new instruction is tried at once
        for j in range(10):
            cam.submit(_frame(i + j))
            time.sleep(0.02)
        assert len(pipe.calls) == n + 1 and cam.grounding_backoff.state().failures == 1
    finally:
        eng.stop()


def test_a_closed_engine_frees_its_pipeline_without_a_garbage_collection():
    pipe = TimedPipeline(0.0, 0.0)
    outputs: list = []
    eng = PerceptionEngine(pipe, RuntimeSettings(), on_error=lambda m: None)
    cams = [eng.add_camera(name, outputs.append) for name in ("front", "rear")]
    eng.start()
    for cam in cams:
        cam.set_instruction("the thing", 100)
    for i in range(40):
        for cam in cams:
            cam.submit(_frame(i))
        time.sleep(0.01)
    assert outputs
    ref, eng_ref = weakref.ref(pipe), weakref.ref(eng)
    gc.disable()
    try:
        eng.close()
        del eng, cams, pipe, outputs, cam
        assert eng_ref() is None and ref() is None, "the engine or its pipeline sits in a reference cycle"
    finally:
        gc.enable()


def _snap(**kw) -> StreamSnapshot:
    base = dict(frames_in=0, frames_rejected=0, frames_stale=0, frames_processed=0, errors=0, consecutive_errors=0,
                grounding_fallbacks=0, since_last_frame_s=0.1, since_active_s=60.0)
    return StreamSnapshot(**{**base, **kw})


def test_rejected_frames_warn_then_error_and_are_not_called_silence():
    rater = HealthRater(DiagnosticsSettings(no_frame_s=5))
    level, msg = rater.rate(_snap(frames_in=30, frames_rejected=3, since_last_usable_s=0.2, rejecting=True,
                                  last_reject_reason="cannot decode compressed image"), [])
    assert level == WARN and "3 frames rejected: cannot decode compressed image" in msg
    # compressed garbage: frames keep arriving (and counting in), none decodes for longer than the limit
    level, msg = rater.rate(_snap(frames_in=300, frames_rejected=30, since_last_usable_s=6.0, rejecting=True), [])
    assert level == ERROR and "frames rejected: no usable frame for 6.0 s" in msg and "no frame for" not in msg
    # a raw camera whose every frame fails the layout check: never one usable, never "no frame"
    level, msg = HealthRater(DiagnosticsSettings(no_frame_s=5)).rate(
        _snap(frames_rejected=90, since_last_usable_s=None, since_active_s=9.0, rejecting=True), [])
    assert level == ERROR and "frames rejected" in msg and "no frame for" not in msg
    # rejections long ago, good frames since: fine again
    level, msg = rater.rate(_snap(frames_in=400, frames_rejected=30, frames_processed=50, since_last_usable_s=0.1),
                            [])
    assert level == 0, msg
    level, msg = rater.rate(_snap(frames_in=400, frames_rejected=30, grounding_failures=3, grounding_retry_in_s=2.0),
                            [])
    assert level == WARN and "grounding failed 3 time(s) in a row, next try in 2.0 s" in msg


def test_an_undecodable_frame_counts_as_rejected_even_with_no_instruction():
    eng = PerceptionEngine(TimedPipeline(0.0, 0.0), RuntimeSettings(), on_error=lambda m: None)
    cam = eng.add_camera("", lambda out: None)
    eng.start()

    def garbage() -> np.ndarray:
        raise InputError("cannot decode compressed image")

    try:
        cam.submit(Frame(garbage, stamp_ns=1))
        assert _wait(lambda: cam.stats["frames_rejected"] == 1)
        assert cam.last_reject_reason == "cannot decode compressed image" and cam.last_usable_at is None
        time.sleep(1.0)  # the idle check period
        cam.submit(_frame(2))
        assert _wait(lambda: cam.last_usable_at is not None and cam.last_usable_at > cam.last_rejected_at)
    finally:
        eng.stop()


def _wait(cond, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.02)
    return cond()


@pytest.mark.parametrize("url", ["http://robot:s3cret@127.0.0.1:8000/v1", "https://sk-s3cret@api.example.com/v1",
                                 "robot:s3cret@10.0.0.2:8000", "http://:s3cret@host"])
@pytest.mark.parametrize("name", ["mllm.base_url", "llm.base_url"])
def test_credentials_in_a_url_setting_are_refused_in_one_line(name, url):
    for refuse in (lambda: with_overrides(Settings(), [f"{name}={url}"]),
                   lambda: check_url_parameters({name: url, "segmenter.num_points": "many"})):
        with pytest.raises(ConfigError) as err:
            refuse()
        line = str(err.value)
        assert "\n" not in line and name in line and "OPENAI_API_KEY" in line and "s3cret" not in line, line
    for fine in ("http://127.0.0.1:8000/v1", "https://api.example.com/v1/a@b"):
        assert getattr(getattr(with_overrides(Settings(), [f"{name}={fine}"]), name.split(".")[0]), "base_url") == fine
