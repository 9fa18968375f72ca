"""argparse types for numeric options: a bad value is a usage error (one line, exit 2) at the start, never a
traceback or a silently absurd run later (a rate of 0 divided by zero, a negative one replayed a bag as fast
as possible, NaN frames per second crashed the bag writer)."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(kind: type = float, *, low: float = 0.0, above: bool = False,
           high: float | None = None) -> Callable[[str], float]:
    """Finite, >= `low` (> `low` with `above`), <= `high` when given; `kind` int also refuses fractions."""
    bound = f"{'>' if above else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value

    return parse
