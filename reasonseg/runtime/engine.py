"""PerceptionEngine: "reason once, segment every frame" (DESIGN §3), free of ROS.

One loaded pipeline serves several cameras (`Camera`, one per stream):
  caller (image callback) -> camera.submit(): O(1), replaces that camera's waiting frame.
  segment worker (one, shared): takes the newest frame of the next camera in round-robin
                  order (fair: no camera starves), asks for grounding when needed, segments
                  with that camera's latest grounding, emits an EngineOutput.
  grounding worker (one per camera): resolves the camera's instruction on the newest frame
                  handed to it (may call an LLM for seconds); never blocks the segment worker.
Between key frames (`runtime.keyframe_period`) the segment worker carries the last mask forward by optical flow
(runtime/propagation.py) instead of running the pipeline; every output says which it was (`mask_source`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from reasonseg.core.errors import InputError, one_line
from reasonseg.core.image_codec import validate_rgb
from reasonseg.core.instruction import sanitize_instruction
from reasonseg.core.results import PROPAGATED, FrameResult, Grounding
from reasonseg.core.settings import RuntimeSettings
from reasonseg.core.timing import Timer
from reasonseg.pipelines.base import Pipeline, Track
from reasonseg.runtime.backoff import RetryBackoff
from reasonseg.runtime.frame_gate import FairGate, LatestSlot
from reasonseg.runtime.propagation import MaskPropagator

log = logging.getLogger(__name__)

# With no instruction, taken frames are not segmented; one of them is still decoded this often, so that a camera
# sending only undecodable frames is reported whether or not anyone has asked for a target yet.
IDLE_CHECK_PERIOD_S = 1.0


@dataclass(frozen=True)
class Frame:
    # HxWx3 uint8 RGB, or a decoder that makes it: most camera frames are superseded before the worker
    # takes them, so they are only decoded if taken (keeps the image callback O(1)).
    source: np.ndarray | Callable[[], np.ndarray]
    stamp_ns: int            # source stamp (camera clock)
    frame_id: str = ""
    header: Any = None       # opaque, handed back with the output (a ROS header, say)
    arrived_ns: int | None = None  # arrival on the receiver's clock (latency where the stamp is on another)

    def pixels(self) -> np.ndarray:
        return validate_rgb(self.source() if callable(self.source) else self.source)


@dataclass(frozen=True)
class EngineOutput:
    camera: str
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


class Camera:
    """One stream's instruction, grounding and tracking state; frames go through the engine's gate."""

    def __init__(self, engine: "PerceptionEngine", name: str, on_output: Callable[[EngineOutput], None]) -> None:
        self.name = name
        self._engine = engine
        self._on_output = on_output
        self._ground_requests: LatestSlot[_GroundRequest] = LatestSlot()
        self._lock = threading.Lock()
        self._instruction: str | None = None
        self._generation = 0                    # bumps on every new (or cleared) instruction
        self._grounding: Grounding | None = None
        self._grounding_gen = -1
        self._grounded_at = 0.0
        self._ground_pending = False
        self._ground_frame: tuple[np.ndarray, Any] | None = None  # the frame (and analysis) grounded on
        self._track: Track | None = None        # touched by the segment worker only
        self._propagator = MaskPropagator(engine.settings)  # ditto
        self._lost = 0
        self.last_frame_at: float | None = None   # monotonic time of the last frame that arrived (rejected too)
        self.last_usable_at: float | None = None  # ... of the last frame that decoded
        self.last_rejected_at: float | None = None
        self.last_reject_reason = ""
        self._checked_at = 0.0                    # last idle check (no instruction): see IDLE_CHECK_PERIOD_S
        # a failing grounder is asked again after a growing delay, never on every frame (reset: new instruction)
        self.grounding_backoff = RetryBackoff()
        self.stats = {"frames_in": 0, "frames_rejected": 0, "frames_processed": 0, "frames_segmented": 0,
                      "frames_propagated": 0, "groundings": 0, "grounding_fallbacks": 0, "errors": 0,
                      "consecutive_errors": 0}
        self._thread = threading.Thread(target=self._ground_loop, name=f"reasonseg-ground-{name or 'camera'}",
                                         daemon=True)

    # -- inputs ----------------------------------------------------------------------------------
    def set_instruction(self, raw: str | bytes, max_chars: int) -> str:
        """Validate and switch the target; raises InputError (the old instruction stays active)."""
        text = sanitize_instruction(raw, max_chars=max_chars)
        with self._lock:
            if text == self._instruction:
                return text
            self._instruction = text
            self._new_generation()
        self.grounding_backoff.reset()
        log.info("%snew instruction: %r", self._prefix, text)
        return text

    def clear(self) -> None:
        """Stop segmenting until the next instruction."""
        with self._lock:
            self._instruction = None
            self._new_generation()
        self.grounding_backoff.reset()
        log.info("%sinstruction cleared", self._prefix)

    def _new_generation(self) -> None:
        """Caller holds the lock."""
        self._generation += 1
        self._lost = 0

    @property
    def instruction(self) -> str | None:
        return self._instruction

    def submit(self, frame: Frame) -> None:
        if not callable(frame.source):
            validate_rgb(frame.source)
        self.stats["frames_in"] += 1
        self.last_frame_at = time.monotonic()
        self._engine._gate.put(self.name, frame)

    def reject(self, reason: str) -> None:
        """Count a frame that arrived and cannot be used (malformed, undecodable): it is input, not silence."""
        self.stats["frames_rejected"] += 1
        self.last_frame_at = self.last_rejected_at = time.monotonic()
        self.last_reject_reason = reason

    @property
    def rejecting(self) -> bool:
        """The last frame checked was rejected: nothing usable has arrived since."""
        return self.last_rejected_at is not None and (self.last_usable_at is None
                                                      or self.last_rejected_at > self.last_usable_at)

    @property
    def frames_dropped(self) -> int:
        """Frames replaced by a newer one before the worker took them (by design, not an error)."""
        return self._engine._gate.dropped[self.name]

    @property
    def _prefix(self) -> str:
        return f"[{self.name}] " if self.name else ""

    # -- work, on the engine's segment worker ----------------------------------------------------
    def _process(self, frame: Frame) -> None:
        if self._instruction is None:
            now = time.monotonic()
            if now - self._checked_at >= IDLE_CHECK_PERIOD_S:
                self._checked_at = now
                self._decode(frame)
            return
        pipeline = self._engine.pipeline
        image = self._decode(frame)
        if self._propagated(frame, image):
            return
        timer = Timer()
        analysis = pipeline.analyse(image, timer)
        # Read the grounding state and decide on a new grounding in one step, after the detector ran:
        # a grounding that finished meanwhile is used, not requested twice.
        with self._lock:
            instruction, gen = self._instruction, self._generation
            if instruction is None:
                return  # cleared while the detector ran
            grounding = self._grounding if self._grounding_gen == gen else None
            ground_frame = self._ground_frame
            if grounding is not None and ground_frame is not None and ground_frame[0].shape[:2] != image.shape[:2]:
                # the camera changed resolution: the grounding's pixel prompts belong to the old size
                log.info("%sframe size changed from %dx%d to %dx%d: grounding again", self._prefix,
                         ground_frame[0].shape[1], ground_frame[0].shape[0], image.shape[1], image.shape[0])
                grounding = self._grounding = self._ground_frame = ground_frame = None
            request = not self._ground_pending and self._grounding_due(grounding) and self.grounding_backoff.ready()
            self._ground_pending |= request
        if request:  # hand over this frame's analysis: the grounding thread need not detect again
            self._ground_requests.put(_GroundRequest(image, analysis, instruction, gen))
        try:
            track = self._track_for(grounding, ground_frame)
            if track is None:
                return  # nothing to segment yet; the camera keeps flowing
            result = track.step(image, analysis)
        except Exception:  # a track that cannot start or step (a SAM2 stream whose frame size changed):
            if self._track is not None:  # drop it and ground again, then re-raise to count the error
                self._track.close()
                self._track = None
            with self._lock:
                self._lost = max(self._lost, self._engine.settings.lost_frames_before_reground)
            raise
        with self._lock:
            if gen != self._generation:
                return  # instruction changed while we worked: this mask answers the old one
            found = result.valid and track.confidence >= self._engine.settings.min_track_confidence
            self._lost = 0 if found else self._lost + 1
        if found:
            self._propagator.key(image, result)
        else:
            self._propagator.reset("target lost")
        self._emit(frame, image, instruction, result, {**timer.ms, **result.timings_ms})

    def _propagated(self, frame: Frame, image: np.ndarray) -> bool:
        """Carry the last mask to this frame by optical flow when no key frame is due; False: segment it."""
        prop = self._propagator
        if not prop.enabled or self._track is None:
            return False
        with self._lock:
            instruction, gen = self._instruction, self._generation
            current = self._grounding if self._grounding_gen == gen else None
            if instruction is None or current is not self._track.grounding:
                return False  # a new grounding (or instruction) starts on a key frame
            if not self._ground_pending and self._grounding_due(current) and self.grounding_backoff.ready():
                return False  # the key frame hands its analysis to the grounding it asks for
        result = prop.propagate(image)
        if result is None:
            log.debug("%skey frame: %s", self._prefix, prop.why_key)
            return False
        with self._lock:
            if gen != self._generation:
                return True  # the instruction changed meanwhile: this mask answers the old one
        self._track.carried(result)
        self._emit(frame, image, instruction, result, result.timings_ms)
        return True

    def _emit(self, frame: Frame, image: np.ndarray, instruction: str, result: FrameResult,
              timings_ms: dict[str, float]) -> None:
        if self._engine.stopping:
            return  # shutting down: the outputs' transport may already be gone
        self.stats["frames_processed"] += 1
        self.stats["frames_propagated" if result.mask_source == PROPAGATED else "frames_segmented"] += 1
        self.stats["consecutive_errors"] = 0
        self._on_output(EngineOutput(self.name, frame, image, instruction, result,
                                     time.monotonic() - self._grounded_at, timings_ms))

    def _decode(self, frame: Frame) -> np.ndarray:
        """The frame's pixels; InputError (counted as a rejected frame by the worker) when they cannot be had."""
        image = frame.pixels()
        self.last_usable_at = time.monotonic()
        return image

    def _track_for(self, grounding: Grounding | None, ground_frame: tuple[np.ndarray, Any] | None) -> Track | None:
        """The track of the current grounding: a new grounding starts one on the frame it was made on
        (SAM2 conditions its memory there, then steps to the newest frame)."""
        if self._track is not None and self._track.grounding is grounding:
            return self._track
        if self._track is not None:
            self._track.close()
            self._track = None
        self._propagator.reset("new grounding")
        if grounding is None:
            return None
        image, analysis = ground_frame if ground_frame is not None else (None, None)
        self._track = self._engine.pipeline.start(image, grounding, analysis)
        return self._track

    def _grounding_due(self, grounding: Grounding | None) -> bool:
        """Caller holds the lock."""
        settings = self._engine.settings
        if grounding is None or self._lost >= settings.lost_frames_before_reground:
            return True
        period = settings.reground_period_s
        return period > 0 and time.monotonic() - self._grounded_at > period

    # -- grounding worker ------------------------------------------------------------------------
    def _ground_loop(self) -> None:
        while not self._engine.stopping:
            req = self._ground_requests.take(timeout=0.2)
            if req is not None:
                try:
                    error = self._engine._guarded(self, "grounding failed", self._ground, req)
                    if error is not None and req.generation == self._generation:
                        delay = self.grounding_backoff.failed(error)
                        log.info("%sgrounding failed %d time(s) in a row: next try in %.1f s", self._prefix,
                                 self.grounding_backoff.state().failures, delay)
                finally:
                    with self._lock:
                        self._ground_pending = False

    def _ground(self, req: _GroundRequest) -> None:
        grounding = self._engine.pipeline.ground(req.image, req.instruction, req.analysis)
        self.stats["groundings"] += 1
        fallback = bool(grounding.fallback)  # the preferred grounder failed and a fallback answered
        if fallback:
            self.stats["grounding_fallbacks"] += 1
        log.info("%sgrounded %r -> %s via %s (%s)", self._prefix, req.instruction,
                 ",".join(grounding.labels) or "-", grounding.source, grounding.reasoning)
        with self._lock:
            if req.generation == self._generation:
                self._grounding, self._grounding_gen = grounding, req.generation
                self._ground_frame = (req.image, req.analysis)
                self._grounded_at = time.monotonic()
                self._lost = 0
                # a fallback answers this time, but the grounder that failed is not asked again at once
                if fallback:
                    self.grounding_backoff.failed(grounding.fallback)
                else:
                    self.grounding_backoff.succeeded()

    def _release(self) -> None:
        """Drop every reference to the engine, the pipeline's state and the output callback (the node's bound
        method): Camera <-> engine is a reference cycle that would keep the old pipeline alive until a full
        garbage collection, which a long-lived process with few new objects runs rarely."""
        if self._track is not None:
            try:
                self._track.close()
            except Exception:  # a broken track must not keep the rest alive
                log.debug("track close failed", exc_info=True)
        with self._lock:
            self._track = self._grounding = self._ground_frame = None
        self._propagator.reset("released")  # its last result holds the grounding
        self._ground_requests.close()
        self._on_output = _no_output
        self._engine = None  # type: ignore[assignment]
        self._thread = None  # type: ignore[assignment]


def _no_output(_out: EngineOutput) -> None:
    pass


class PerceptionEngine:
    """Shared pipeline + one fair segment worker for any number of cameras."""

    def __init__(self, pipeline: Pipeline, settings: RuntimeSettings, *,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self._on_error = on_error or (lambda msg: log.error("%s", msg))
        self._gate: FairGate[Frame] = FairGate()
        self.cameras: dict[str, Camera] = {}
        self._stop = threading.Event()
        self._started = False
        self._threads = [threading.Thread(target=self._segment_loop, name="reasonseg-segment", daemon=True)]

    def add_camera(self, name: str, on_output: Callable[[EngineOutput], None]) -> Camera:
        if self._started:
            raise RuntimeError("add cameras before start()")
        if name in self.cameras:
            raise ValueError(f"camera {name!r} added twice")
        cam = Camera(self, name, on_output)
        self.cameras[name] = cam
        self._gate.add(name)
        self._threads.append(cam._thread)
        return cam

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._started = True
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._gate.close()
        for cam in self.cameras.values():
            cam._ground_requests.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 5.0) -> None:
        """Stop, then break every reference cycle through the engine (cameras, worker threads, the gate's frames,
        the output callbacks), so the pipeline and its models are freed as soon as the owner lets go of it."""
        self.stop(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:  # they still use the cameras and the pipeline: the garbage collector frees them later
            log.warning("workers still running %.0f s after stop: %s", timeout, ", ".join(alive))
            return
        for cam in self.cameras.values():
            cam._release()
        self.cameras.clear()
        self._threads = []
        self._gate = FairGate()
        self._on_error = _no_output
        self.pipeline = None  # type: ignore[assignment]

    def discard_frames(self) -> None:
        """Drop every waiting frame (the node stops taking frames)."""
        for name in self.cameras:
            self._gate.discard(name)

    # -- the shared segment worker ---------------------------------------------------------------
    def _segment_loop(self) -> None:
        while not self._stop.is_set():
            taken = self._gate.take(timeout=0.2)
            if taken is not None:
                cam = self.cameras[taken[0]]
                self._guarded(cam, "frame dropped", cam._process, taken[1])

    def _guarded(self, cam: Camera, what: str, fn: Callable[..., None], *args: Any) -> str | None:
        """Run one unit of work; any exception is reported once and counted — a worker never ends early.
        Returns what went wrong in one line, None when it went well."""
        try:
            fn(*args)
            return None
        except InputError as exc:  # bad input (a frame that does not decode), not a pipeline fault
            cam.reject(str(exc))
            self._report(cam, f"{what}: {exc}")
            return str(exc)
        except Exception as exc:  # keep serving: one bad frame or grounding must not stop the node
            log.debug("%s", what, exc_info=True)
            cam.stats["errors"] += 1
            cam.stats["consecutive_errors"] += 1
            why = f"{type(exc).__name__}: {one_line(exc, 300)}"
            self._report(cam, f"{what}: {why}")
            return why

    def _report(self, cam: Camera, msg: str) -> None:
        try:
            self._on_error(cam._prefix + msg)
        except Exception:  # a broken log sink must not end a worker thread
            pass
