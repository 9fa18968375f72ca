"""Rate a camera stream's health for /diagnostics: OK, WARN or ERROR, and say why (no ROS here)."""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Sequence

from reasonseg.core.settings import DiagnosticsSettings

OK, WARN, ERROR = 0, 1, 2
MIN_FRAMES_FOR_SHARE = 10  # too few frames in a window say nothing about a drop share
# A frame stamped this far from the node's clock on arrival was not stamped on that clock: unstamped (0), a
# sensor's own clock, a bag replayed without use_sim_time. Transport takes milliseconds, not seconds.
MAX_STAMP_SKEW_S = 10.0
MAX_REASON_CHARS = 160  # of a rejection's reason in a status message


def frame_latency_ms(now_ns: int, stamp_ns: int, arrived_ns: int) -> tuple[float, bool]:
    """(latency in ms, whether it is from the frame's stamp): stamp -> now where the stamp is on this clock,
    else arrival -> now, so an unsynchronised camera does not read as a 50-year delay."""
    if abs(arrived_ns - stamp_ns) > MAX_STAMP_SKEW_S * 1e9:
        return (now_ns - arrived_ns) / 1e6, False
    return (now_ns - stamp_ns) / 1e6, True


@dataclass(frozen=True)
class StreamSnapshot:
    """Counters of one camera at one report (cumulative since start)."""

    frames_in: int            # frames received (valid layout)
    frames_rejected: int      # malformed frames dropped at the door
    frames_stale: int         # replaced in the frame gate by a newer frame (by design)
    frames_processed: int
    errors: int
    consecutive_errors: int
    grounding_fallbacks: int
    since_last_frame_s: float | None  # None: no frame yet (rejected frames count: they arrived)
    since_active_s: float              # how long the stream has been taking frames
    since_last_usable_s: float | None = None  # None: no frame has decoded yet
    rejecting: bool = False            # the last frame checked was rejected (none usable since)
    last_reject_reason: str = ""
    grounding_failures: int = 0        # grounder failures in a row (a fallback answered, or nothing did)
    grounding_retry_in_s: float = 0.0  # until the failing grounder is asked again
    frames_segmented: int = 0          # masks the pipeline made (key frames)
    frames_propagated: int = 0         # masks optical flow carried from the last one


class HealthRater:
    """Compares each report with the previous one, so shares and new errors are per report window."""

    def __init__(self, settings: DiagnosticsSettings) -> None:
        self.settings = settings
        self._last: StreamSnapshot | None = None
        self.rates: dict[str, float] = {}  # masks/s segmented and propagated over the last report window

    def rate(self, snap: StreamSnapshot, latencies_ms: Sequence[float]) -> tuple[int, str]:
        s, last = self.settings, self._last
        self._last = snap
        d = lambda field: getattr(snap, field) - (getattr(last, field) if last else 0)  # noqa: E731
        errors, warnings = [], []
        if snap.consecutive_errors >= s.error_count:
            errors.append(f"{snap.consecutive_errors} pipeline errors in a row")
        quiet = snap.since_last_frame_s if snap.since_last_frame_s is not None else snap.since_active_s
        unusable = snap.since_last_usable_s if snap.since_last_usable_s is not None else snap.since_active_s
        reason = f": {snap.last_reject_reason[:MAX_REASON_CHARS]}" if snap.last_reject_reason else ""
        if quiet > s.no_frame_s:
            errors.append(f"no frame for {quiet:.1f} s (limit {s.no_frame_s:g} s)")
        elif snap.rejecting and unusable > s.no_frame_s:  # frames arrive, none of them usable
            errors.append(f"frames rejected: no usable frame for {unusable:.1f} s (limit {s.no_frame_s:g} s){reason}")
        elif d("frames_rejected"):
            warnings.append(f"{d('frames_rejected')} frames rejected{reason}")
        if latencies_ms and median(latencies_ms) > s.max_latency_ms:
            warnings.append(f"median latency {median(latencies_ms):.0f} ms > {s.max_latency_ms:g} ms")
        arrived = d("frames_in") + d("frames_rejected")
        dropped = d("frames_stale") + d("frames_rejected")
        if arrived >= MIN_FRAMES_FOR_SHARE and dropped / arrived > s.max_drop_share:
            warnings.append(f"{dropped / arrived:.0%} of frames dropped > {s.max_drop_share:.0%}")
        if d("errors") and snap.consecutive_errors < s.error_count:
            warnings.append(f"{d('errors')} new errors")
        if d("grounding_fallbacks"):
            warnings.append(f"{d('grounding_fallbacks')} LLM fallbacks")
        if snap.grounding_failures:
            warnings.append(f"grounding failed {snap.grounding_failures} time(s) in a row, next try in "
                            f"{snap.grounding_retry_in_s:.1f} s")
        level = ERROR if errors else WARN if warnings else OK
        summary = f"{snap.frames_processed} masks"
        window_s = snap.since_active_s - last.since_active_s if last else 0.0  # < 0: re-activated since
        self.rates = {}
        if window_s > 0:
            self.rates = {"masks_segmented_per_s": round(d("frames_segmented") / window_s, 2),
                          "masks_propagated_per_s": round(d("frames_propagated") / window_s, 2)}
            summary += (f" ({self.rates['masks_segmented_per_s']:g}/s segmented, "
                        f"{self.rates['masks_propagated_per_s']:g}/s propagated)")
        return level, "; ".join([summary, *errors, *warnings])
