"""Keep only the newest frame: a slow consumer never sees a stale backlog."""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-slot mailbox: put() replaces what is waiting, take() blocks for the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.dropped = 0  # items replaced before anyone took them

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FairGate(Generic[T]):
    """Newest-item-only slots for several sources, served round-robin.

    Each source (camera) keeps at most one waiting item: put() replaces it. take() hands out the
    next source after the one served last that has an item, so a fast camera cannot starve a slow
    one and no source waits more than one turn per other source.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: dict[str, T | None] = {}
        self._order: list[str] = []
        self._next = 0
        self._closed = False
        self.dropped: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self._cond:
            if key not in self._items:
                self._items[key] = None
                self._order.append(key)
                self.dropped[key] = 0

    def put(self, key: str, item: T) -> None:
        with self._cond:
            if self._items[key] is not None:
                self.dropped[key] += 1
            self._items[key] = item
            self._cond.notify()

    def discard(self, key: str) -> None:
        """Forget what `key` has waiting (a camera that stops taking frames)."""
        with self._cond:
            self._items[key] = None

    def take(self, timeout: float | None = None) -> tuple[str, T] | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or any(v is not None for v in self._items.values()),
                                       timeout) or self._closed:
                return None
            n = len(self._order)
            for i in range(n):
                key = self._order[(self._next + i) % n]
                item = self._items[key]
                if item is not None:
                    self._items[key] = None
                    self._next = (self._next + i + 1) % n
                    return key, item
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
