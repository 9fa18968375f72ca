"""Latency tables: medians per instruction and per stage, as Markdown and JSON."""
from __future__ import annotations

import time
from statistics import median
from typing import Callable, Iterable, Mapping

from reasonseg.core.model_text import clean_model_text


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


def interleaved_median_ms(fns: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall time in ms of each of `fns` over `rounds` rounds that call every one once, after one warm-up
    call each: on a busy shared machine a slow spell slows all of them alike, so their ratios hold."""
    for fn in fns.values():
        fn()  # first-run allocations and kernel choices
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: round(median(v), 1) for k, v in times.items()}


def median_table(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Column-wise medians over dict rows (missing keys skipped)."""
    cols: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            cols.setdefault(k, []).append(float(v))
    return {k: round(median(v), 1) for k, v in cols.items()}


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """Rows as a Markdown table for a terminal or a .md file: each cell one printable line (cells may hold a
    model's labels: no escape sequences, line breaks or bidi characters), its `|` escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return clean_model_text(value, max_chars=500).replace("|", "\\|")
