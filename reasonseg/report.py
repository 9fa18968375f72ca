"""Latency tables: medians per instruction and per stage, as Markdown and JSON."""
from __future__ import annotations

import time
from statistics import median
from typing import Callable, Iterable, Mapping


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of `fn` in ms over `repeats` calls, after one warm-up call. `sync` waits for
    asynchronous work (`torch.cuda.synchronize`) before each clock read."""
    sync = sync or (lambda: None)
    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(median(times), 1)


def median_table(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Column-wise medians over dict rows (missing keys skipped)."""
    cols: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            cols.setdefault(k, []).append(float(v))
    return {k: round(median(v), 1) for k, v in cols.items()}


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
