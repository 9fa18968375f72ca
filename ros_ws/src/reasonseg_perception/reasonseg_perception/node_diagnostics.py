"""/diagnostics of the node: one DiagnosticStatus per camera, built from the engine camera's counters, its grounding
backoff and the node's own time accounting. No node needed: values in, message fields out."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from reasonseg.core.model_text import clean_model_text
from reasonseg.runtime.backoff import RetryState
from reasonseg.runtime.engine import Camera
from reasonseg.runtime.health import StreamSnapshot

from .message_building import PUBLISH_STAGE

LEVEL = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}
INACTIVE = (0, "inactive (lifecycle): not taking frames")  # (level, message) while the node takes no frames


@dataclass(frozen=True)
class TimesSnapshot:
    latencies_ms: list[float]
    series: list[tuple[str, list[float]]]  # (key, samples): each gives a median_<key> value
    totals: dict[str, float]


class FrameTimes:
    """One camera's time accounting: written by the subscription callbacks and the engine's worker thread, read by
    the diagnostics timer on the executor thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency_ms: deque[float] = deque(maxlen=300)
        self._stage_ms: dict[str, deque[float]] = {}
        self._overhead_s = 0.0
        self._compute_s = 0.0

    def add_overhead(self, seconds: float) -> None:
        """Node time spent on a frame outside the pipeline (receiving, decoding)."""
        with self._lock:
            self._overhead_s += seconds

    def add_frame(self, latency_ms: float, timings_ms: dict[str, float], publish_ms: float) -> None:
        """A published frame: its latency, the pipeline's stage times and the time spent publishing it."""
        with self._lock:
            self._overhead_s += publish_ms / 1e3
            self._compute_s += sum(timings_ms.values()) / 1e3
            self._latency_ms.append(latency_ms)
            for k, v in [*timings_ms.items(), (PUBLISH_STAGE, publish_ms)]:
                self._stage_ms.setdefault(k, deque(maxlen=300)).append(v)

    def snapshot(self) -> TimesSnapshot:
        with self._lock:
            latencies = list(self._latency_ms)
            series = [("latency_ms", latencies), *[(f"stage_{k}_ms", list(v)) for k, v in self._stage_ms.items()]]
            totals = {"ros_overhead_total_s": round(self._overhead_s, 3), "compute_total_s": round(self._compute_s, 3)}
        return TimesSnapshot(latencies, series, totals)


def grounding_status(retry: RetryState) -> str:
    if not retry.failures:
        return "ok"
    return (f"failing: {retry.failures} in a row, next try in {retry.retry_in_s:.1f} s"
            + (f" ({clean_model_text(retry.last_error, max_chars=160)})" if retry.last_error else ""))


def camera_values(cam: Camera, retry: RetryState, times: TimesSnapshot) -> dict[str, Any]:
    """The key/value pairs of one camera's status, in the order /diagnostics lists them."""
    st = cam.stats
    values: dict[str, Any] = {"instruction": cam.instruction or "", "frames_in": st["frames_in"],
                              "frames_processed": st["frames_processed"],
                              "frames_segmented": st["frames_segmented"], "frames_propagated": st["frames_propagated"],
                              "frames_dropped_stale": cam.frames_dropped,
                              "frames_rejected": st["frames_rejected"], "groundings": st["groundings"],
                              "grounding_fallbacks": st["grounding_fallbacks"], "errors": st["errors"],
                              "grounding": grounding_status(retry),
                              "grounding_failures_in_row": retry.failures,
                              "grounding_next_try_s": round(retry.retry_in_s, 1),
                              "last_reject_reason": cam.last_reject_reason, **times.totals}
    for key, data in times.series:
        if data:
            values[f"median_{key}"] = round(median(data), 2)
    return values


def stream_snapshot(cam: Camera, retry: RetryState, now: float, active_since: float) -> StreamSnapshot:
    """What the health rater compares between reports; `now` and `active_since` on the monotonic clock."""
    st = cam.stats
    since = lambda t: None if t is None else now - t  # noqa: E731
    return StreamSnapshot(st["frames_in"], st["frames_rejected"], cam.frames_dropped,
                          st["frames_processed"], st["errors"], st["consecutive_errors"],
                          st["grounding_fallbacks"], since(cam.last_frame_at), now - active_since,
                          since_last_usable_s=since(cam.last_usable_at), rejecting=cam.rejecting,
                          last_reject_reason=cam.last_reject_reason, grounding_failures=retry.failures,
                          grounding_retry_in_s=retry.retry_in_s, frames_segmented=st["frames_segmented"],
                          frames_propagated=st["frames_propagated"])


def diagnostic_status(level: int, message: str, values: dict[str, Any], *, node_name: str, namespace: str,
                      camera: str) -> DiagnosticStatus:
    status = DiagnosticStatus(level=LEVEL[level], message=message, hardware_id=namespace,
                              name=f"{node_name}: camera {camera}" if camera else f"{node_name}: reasonseg pipeline")
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
