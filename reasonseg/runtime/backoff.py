"""Bounded exponential backoff for grounding retries: a failing endpoint is asked again after 0.5 s, 1 s, 2 s, ...
up to a cap, never on every frame (no ROS here)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


@dataclass(frozen=True)
class RetryState:
    """What /diagnostics says about grounding: failures in a row and how long until the next try is allowed."""

    failures: int              # in a row, since the last success or new instruction
    retry_in_s: float          # 0: a grounding may be asked for now
    last_error: str            # why the last one failed ('' after a success)


class RetryBackoff:
    """After n failures in a row the next attempt waits min(first * 2**(n-1), cap) seconds; a success or a new
    instruction (reset) allows the next attempt at once. Thread-safe: the segment and grounding workers share it."""

    def __init__(self, first_s: float = FIRST_RETRY_S, cap_s: float = MAX_RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < first_s <= cap_s:
            raise ValueError("backoff needs 0 < first_s <= cap_s")
        self._first, self._cap, self._clock = first_s, cap_s, clock
        self._lock = threading.Lock()
        self._failures = 0
        self._not_before = 0.0
        self._last_error = ""

    def ready(self) -> bool:
        """Whether an attempt may be made now."""
        with self._lock:
            return self._clock() >= self._not_before

    def failed(self, why: str) -> float:
        """Record a failure; returns the delay before the next attempt."""
        with self._lock:
            self._failures += 1
            # the exponent is bounded: 2**n overflows a float long before n failures in a row stop coming
            delay = min(self._first * 2.0 ** min(self._failures - 1, 64), self._cap)
            self._not_before = self._clock() + delay
            self._last_error = why
            return delay

    def succeeded(self) -> None:
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._failures, self._not_before, self._last_error = 0, 0.0, ""

    def state(self) -> RetryState:
        with self._lock:
            return RetryState(self._failures, max(0.0, self._not_before - self._clock()), self._last_error)
