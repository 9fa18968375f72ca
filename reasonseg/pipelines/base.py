"""The pipeline interface: slow grounding once, fast segmentation every frame."""
from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..query import Query

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Grounding:
    """What the instruction refers to, resolved on one frame."""

    instruction: str
    query: Query
    labels: tuple[str, ...]            # target class label(s)
    reference_labels: tuple[str, ...]  # labels of objects named as reference ("left of the bus")
    boxes: tuple[Box, ...]             # chosen instance(s) in the grounding frame, best first
    scores: tuple[float, ...]
    reasoning: str
    source: str                        # "llm", "local", or "local_fallback: <why>"
    pipeline: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    points: tuple[tuple[tuple[float, float], ...], ...] = ()  # positive points per box (MLLM answers), or ()


@dataclass(frozen=True)
class Instance:
    """One chosen object: what it is, how sure, where (source pixels)."""

    label: str
    score: float
    box: Box


@dataclass(frozen=True)
class FrameResult:
    """Mask for one frame plus what a user needs to trust it."""

    mask: np.ndarray                   # bool HxW, source pixels
    valid: bool                        # a target was found in this frame
    labels: tuple[str, ...]
    boxes: tuple[Box, ...]
    score: float
    grounding: Grounding | None
    timings_ms: dict[str, float]
    note: str = ""                     # e.g. "re-acquired by rules", "target lost"
    instances: tuple[Instance, ...] = ()  # every chosen instance, best first (boxes[i] is instances[i].box)

    @property
    def box(self) -> Box | None:
        """Union box of all chosen instances."""
        if not self.boxes:
            return None
        b = np.asarray(self.boxes)
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


class Timer:
    """Collects per-stage wall times in ms."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


class Pipeline(ABC):
    """One grounding pipeline. Thread-safety: `ground` and `segment` may run on two threads at once."""

    name: str = "base"

    @abstractmethod
    def analyse(self, image_rgb: np.ndarray, timer: Timer) -> Any:
        """Per-frame perception shared by ground() and segment() (e.g. detections)."""

    @abstractmethod
    def ground(self, image_rgb: np.ndarray, instruction: str, analysis: Any = None) -> Grounding:
        """Resolve the instruction on this frame (slow: may call an LLM)."""

    @abstractmethod
    def segment(self, image_rgb: np.ndarray, grounding: Grounding, track: tuple[Box, ...] = (),
                analysis: Any = None) -> FrameResult:
        """Mask the grounded target in this frame (fast path), following `track` boxes from the last frame."""

    def run(self, image_rgb: np.ndarray, instruction: str) -> FrameResult:
        """One-shot: ground and segment the same frame (CLI)."""
        timer = Timer()
        analysis = self.analyse(image_rgb, timer)
        grounding = self.ground(image_rgb, instruction, analysis)
        result = self.segment(image_rgb, grounding, grounding.boxes, analysis)
        timings = {**timer.ms, **grounding.timings_ms, **result.timings_ms}
        return dataclasses.replace(result, grounding=grounding, timings_ms=timings)
