"""Give the memory of a dropped pipeline back to the system (no ROS here)."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def release_freed_memory() -> None:
    """A full garbage collection (the loaded libraries keep reference cycles of their own: a TextEmbedder's
    lru_cache holds its bound method, frames kept from import time hold a build's locals), then the freed heap
    pages handed back to the system. Without the trim, glibc keeps them in the arenas of the worker threads
    that allocated them, and every reload of the models on new threads adds ~30 MB of RSS."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
