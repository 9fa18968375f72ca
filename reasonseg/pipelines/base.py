"""The pipeline interface: slow grounding once, fast segmentation every frame.

`ground` resolves the instruction on one frame into `Target`s, each with a segmenter `Prompt` (box,
points, mask logits or raw prompt embeddings). `start` turns a grounding into a `Track`, which the engine
owns per camera and steps on every later frame; its `confidence` falling below
`runtime.min_track_confidence` asks for a new grounding. Pipeline-private data (refine's parsed query)
rides in `Grounding.detail`.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from reasonseg.core.prompt import Box, Prompt
from reasonseg.core.timing import Timer


@dataclass(frozen=True)
class Target:
    """One grounded object: what it is, how sure, and how to prompt the segmenter for it."""

    label: str
    score: float
    prompt: Prompt


@dataclass(frozen=True)
class Grounding:
    """What the instruction refers to, resolved on one frame."""

    instruction: str
    labels: tuple[str, ...]            # what the instruction names (reported even when nothing is found)
    targets: tuple[Target, ...]        # chosen instance(s) in the grounding frame, best first
    reasoning: str
    source: str                        # "llm", "local", "mllm:<backend>", or "... (<why a fallback happened>)"
    pipeline: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    detail: Any = None                 # pipeline-private (refine: parsed query and reference labels)
    fallback: str = ""                 # why the preferred grounder (an LLM / VLM, a model) failed; "" when it answered

    @property
    def boxes(self) -> tuple[Box, ...]:
        return tuple(t.prompt.box for t in self.targets if t.prompt.box is not None)

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(t.score for t in self.targets)


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

    @classmethod
    def found(cls, mask: np.ndarray, instances: Sequence[Instance], grounding: Grounding | None,
              timings_ms: dict[str, float], note: str = "") -> FrameResult:
        """A frame where `instances` (at least one, best first) were found: their labels (each once, in order),
        boxes and best score."""
        return cls(mask, True, tuple(dict.fromkeys(i.label for i in instances)), tuple(i.box for i in instances),
                   max(i.score for i in instances), grounding, timings_ms, note, tuple(instances))

    @classmethod
    def not_found(cls, mask: np.ndarray, grounding: Grounding, timings_ms: dict[str, float],
                  note: str) -> FrameResult:
        """A frame where the grounded target was not found (`note` says why): the grounding's labels, no boxes."""
        return cls(mask, False, grounding.labels, (), 0.0, grounding, timings_ms, note)

    @property
    def box(self) -> Box | None:
        """Union box of all chosen instances."""
        if not self.boxes:
            return None
        b = np.asarray(self.boxes)
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


class Track(ABC):
    """Follows one grounding from frame to frame; owned by the engine (one per camera)."""

    def __init__(self, grounding: Grounding) -> None:
        self.grounding = grounding
        self.confidence = 1.0               # in [0, 1]; the engine re-grounds when it stays low
        self.last: FrameResult | None = None  # the newest result (for SAM2: the grounding frame's, after start)

    @abstractmethod
    def step(self, image_rgb: np.ndarray, analysis: Any = None) -> FrameResult:
        """Mask the target(s) in the next frame."""

    def close(self) -> None:
        """Free what the track holds (a SAM2 memory bank)."""


class BoxTrack(Track):
    """Memory-less following: each frame the pipeline's `segment` prompts the segmenter afresh, given the
    boxes of the last frame (refine associates them with new detections; mllm re-prompts the grounding)."""

    def __init__(self, pipeline: "Pipeline", grounding: Grounding) -> None:
        super().__init__(grounding)
        self._pipeline = pipeline
        self.boxes = grounding.boxes

    def step(self, image_rgb: np.ndarray, analysis: Any = None) -> FrameResult:
        result = self._pipeline.segment(image_rgb, self.grounding, self.boxes, analysis)
        if result.valid:
            self.boxes = result.boxes
        self.confidence = 1.0 if result.valid else 0.0
        self.last = result
        return result


class Pipeline(ABC):
    """One grounding pipeline. Thread-safety: `ground` and `start`/`Track.step` may run on two threads at once."""

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
        """Mask the grounded target in this frame without memory, following `track` boxes from the last frame."""

    def start(self, image_rgb: np.ndarray, grounding: Grounding, analysis: Any = None) -> Track:
        """Begin following `grounding`, made on `image_rgb`. Default: box following, nothing run yet."""
        return BoxTrack(self, grounding)

    def run(self, image_rgb: np.ndarray, instruction: str) -> FrameResult:
        """One-shot: ground and segment the same frame (CLI)."""
        timer = Timer()
        analysis = self.analyse(image_rgb, timer)
        grounding = self.ground(image_rgb, instruction, analysis)
        track = self.start(image_rgb, grounding, analysis)
        try:
            result = track.last or track.step(image_rgb, analysis)
        finally:
            track.close()
        timings = {**timer.ms, **grounding.timings_ms, **result.timings_ms}
        return dataclasses.replace(result, grounding=grounding, timings_ms=timings)
