"""PerceptionEngine: "reason once, segment every frame" (DESIGN §3), free of ROS.

Threads:
  caller (image callback) -> submit(): O(1), drops the older waiting frame.
  segment worker: takes the newest frame, asks for grounding when needed,
                  segments with the latest grounding, emits an EngineOutput.
  grounding worker: resolves the instruction on the newest frame handed to it
                  (may call an LLM for seconds); never blocks the segment worker.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..config import RuntimeSettings
from ..errors import InputError
from ..image_codec import validate_rgb
from ..instruction import sanitize_instruction
from ..pipelines.base import FrameResult, Grounding, Pipeline, Timer
from .frame_gate import LatestSlot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    # HxWx3 uint8 RGB, or a decoder that makes it: most camera frames are superseded before the worker
    # takes them, so they are only decoded if taken (keeps the image callback O(1)).
    source: np.ndarray | Callable[[], np.ndarray]
    stamp_ns: int            # source stamp (camera clock)
    frame_id: str = ""
    header: Any = None       # opaque, handed back with the output (a ROS header, say)

    def pixels(self) -> np.ndarray:
        return validate_rgb(self.source() if callable(self.source) else self.source)


@dataclass(frozen=True)
class EngineOutput:
    frame: Frame
    image: np.ndarray        # the decoded frame
    instruction: str
    result: FrameResult
    grounding_age_s: float
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class _GroundRequest:
    image: np.ndarray
    analysis: Any
    instruction: str
    generation: int


class PerceptionEngine:
    def __init__(self, pipeline: Pipeline, settings: RuntimeSettings,
                 on_output: Callable[[EngineOutput], None], *,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self._on_output = on_output
        self._on_error = on_error or (lambda msg: log.error("%s", msg))
        self._frames: LatestSlot[Frame] = LatestSlot()
        self._ground_requests: LatestSlot[_GroundRequest] = LatestSlot()
        self._lock = threading.Lock()
        self._instruction: str | None = None
        self._generation = 0                    # bumps on every new instruction
        self._grounding: Grounding | None = None
        self._grounding_gen = -1
        self._grounded_at = 0.0
        self._ground_pending = False
        self._track: tuple = ()
        self._lost = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._segment_loop, name="reasonseg-segment", daemon=True),
                         threading.Thread(target=self._ground_loop, name="reasonseg-ground", daemon=True)]
        self.stats = {"frames_in": 0, "frames_processed": 0, "groundings": 0, "grounding_fallbacks": 0,
                      "errors": 0}

    # -- inputs ----------------------------------------------------------------------------------
    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._frames.close()
        self._ground_requests.close()
        for t in self._threads:
            t.join(timeout)

    def set_instruction(self, raw: str | bytes, max_chars: int) -> str:
        """Validate and switch the target; raises InputError (the old instruction stays active)."""
        text = sanitize_instruction(raw, max_chars=max_chars)
        with self._lock:
            if text == self._instruction:
                return text
            self._instruction = text
            self._generation += 1
            self._track = ()
            self._lost = 0
        log.info("new instruction: %r", text)
        return text

    @property
    def instruction(self) -> str | None:
        return self._instruction

    def submit(self, frame: Frame) -> None:
        if not callable(frame.source):
            validate_rgb(frame.source)
        self.stats["frames_in"] += 1
        self._frames.put(frame)

    @property
    def frames_dropped(self) -> int:
        return self._frames.dropped

    # -- workers ---------------------------------------------------------------------------------
    def _segment_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._frames.take(timeout=0.2)
            if frame is not None:
                self._guarded("frame dropped", self._process, frame)

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Run one unit of work; any exception is reported once and counted — a worker never ends early."""
        try:
            fn(*args)
        except InputError as exc:
            self._error(f"{what}: {exc}")
        except Exception as exc:  # keep serving: one bad frame or grounding must not stop the node
            log.debug("%s", what, exc_info=True)
            self._error(f"{what}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")

    def _process(self, frame: Frame) -> None:
        if self._instruction is None:
            return
        image = frame.pixels()
        timer = Timer()
        analysis = self.pipeline.analyse(image, timer)
        # Read the grounding state and decide on a new grounding in one step, after the detector ran:
        # a grounding that finished meanwhile is used, not requested twice.
        with self._lock:
            instruction, gen, track = self._instruction, self._generation, self._track
            grounding = self._grounding if self._grounding_gen == gen else None
            request = not self._ground_pending and self._grounding_due(grounding)
            self._ground_pending |= request
        if request:  # hand over this frame's analysis: the grounding thread need not detect again
            self._ground_requests.put(_GroundRequest(image, analysis, instruction, gen))
        if grounding is None:
            return  # nothing to segment yet; the camera keeps flowing
        result = self.pipeline.segment(image, grounding, track, analysis)
        with self._lock:
            if gen != self._generation:
                return  # instruction changed while we worked: this mask answers the old one
            self._track = result.boxes if result.valid else self._track
            self._lost = 0 if result.valid else self._lost + 1
        if self._stop.is_set():
            return  # shutting down: the outputs' transport may already be gone
        self.stats["frames_processed"] += 1
        self._on_output(EngineOutput(frame, image, instruction, result, time.monotonic() - self._grounded_at,
                                     {**timer.ms, **result.timings_ms}))

    def _grounding_due(self, grounding: Grounding | None) -> bool:
        """Caller holds the lock."""
        if grounding is None or self._lost >= self.settings.lost_frames_before_reground:
            return True
        period = self.settings.reground_period_s
        return period > 0 and time.monotonic() - self._grounded_at > period

    def _ground_loop(self) -> None:
        while not self._stop.is_set():
            req = self._ground_requests.take(timeout=0.2)
            if req is not None:
                try:
                    self._guarded("grounding failed", self._ground, req)
                finally:
                    with self._lock:
                        self._ground_pending = False

    def _ground(self, req: _GroundRequest) -> None:
        grounding = self.pipeline.ground(req.image, req.instruction, req.analysis)
        self.stats["groundings"] += 1
        if grounding.source.startswith("local_fallback"):
            self.stats["grounding_fallbacks"] += 1
        log.info("grounded %r -> %s via %s (%s)", req.instruction, ",".join(grounding.labels) or "-",
                 grounding.source, grounding.reasoning)
        with self._lock:
            if req.generation == self._generation:
                self._grounding, self._grounding_gen = grounding, req.generation
                self._grounded_at = time.monotonic()
                self._track = grounding.boxes
                self._lost = 0

    def _error(self, msg: str) -> None:
        self.stats["errors"] += 1
        try:
            self._on_error(msg)
        except Exception:  # a broken log sink must not end a worker thread
            pass
