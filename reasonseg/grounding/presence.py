"""Per-class presence floors: how high a detector score must be before refine says the class is there.

One detector floor for all 80 classes (detector.score_floor) is wrong both ways: a weak box of a class the
detector confuses easily (a cat scored as a dog at 0.3, a laptop's keys as a keyboard) passes it, while a small
pedestrian at 0.15 must. The floors here are fitted, per class, on the unseen-photo evaluation's *tune* photos
(`bench/eval_unseen.py --fit-presence` writes `presence_floors.json`): for each class the score of the box on the
real object where it is present, and of the best box of that class where it is absent; the floor is the cut
between them with the fewest errors (lowest such cut on ties: missing a target is the worse error for a vehicle
that must avoid it). A class the tune photos never showed absent keeps no floor beyond the detector's.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

SHIPPED = Path(__file__).with_name("presence_floors.json")
MAX_FLOOR = 0.5  # one confident false box must not make a class unfindable


@dataclass(frozen=True)
class PresenceFloors:
    floors: Mapping[str, float] = field(default_factory=dict)
    source: str = "none"

    def floor(self, label: str) -> float:
        return float(self.floors.get(label, 0.0))

    @classmethod
    def load(cls, spec: str) -> "PresenceFloors":
        """`spec`: "shipped" (the fitted file in the package), "none", or a JSON file's path."""
        if spec == "none":
            return cls()
        path = SHIPPED if spec == "shipped" else Path(spec)
        try:
            data = json.loads(path.read_text())
            floors = {str(k): float(v) for k, v in data["floors"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"presence floors {path}: unreadable ({exc}); expected JSON {{\"floors\": "
                             f"{{class: score}}}} as `bench/eval_unseen.py --fit-presence` writes") from exc
        bad = {k: v for k, v in floors.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"presence floors {path}: scores must lie in [0, 1], got {bad}")
        return cls(floors, str(path))


def fit_floors(samples: Sequence[tuple[str, float, bool]]) -> dict[str, float]:
    """samples: (class, score, present) — the score of the box on the object where the class is present, or of
    the class's best box where it is absent. Returns {class: floor} for classes with absent evidence that a floor
    of at most MAX_FLOOR separates better than none."""
    by_class: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for label, score, present in samples:
        by_class[label].append((float(score), bool(present)))
    floors = {}
    for label, rows in sorted(by_class.items()):
        absent = [s for s, p in rows if not p]
        if not absent:
            continue
        present = [s for s, p in rows if p]

        def errors(cut: float) -> int:
            return sum(s < cut for s in present) + sum(s >= cut for s in absent)

        cuts = sorted({round(s + 1e-3, 3) for s in absent if s + 1e-3 <= MAX_FLOOR})
        best = min(cuts, key=lambda c: (errors(c), c), default=None)
        if best is not None and errors(best) < errors(0.0):
            floors[label] = best
    return floors


__all__ = ["PresenceFloors", "fit_floors", "SHIPPED"]
