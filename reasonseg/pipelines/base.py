"""The pipeline interface: slow grounding once, fast segmentation every frame.

`ground` resolves the instruction on one frame into `Target`s, each with a segmenter `Prompt` (box,
points, mask logits or raw prompt embeddings). `start` turns a grounding into a `Track`, which the engine
owns per camera and steps on every later frame; its `confidence` falling below
`runtime.min_track_confidence` asks for a new grounding. Pipeline-private data (refine's parsed query)
rides in `Grounding.detail`. The result types (`Target`, `Grounding`, `Instance`, `FrameResult`) are
`reasonseg/core/results.py`: the renderer, the nodes and the CLI read them without a pipeline.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from reasonseg.core.prompt import Box
from reasonseg.core.results import FrameResult, Grounding
from reasonseg.core.timing import Timer


class Track(ABC):
    """Follows one grounding from frame to frame; owned by the engine (one per camera)."""

    def __init__(self, grounding: Grounding) -> None:
        self.grounding = grounding
        self.confidence = 1.0               # in [0, 1]; the engine re-grounds when it stays low
        self.last: FrameResult | None = None  # the newest result (for SAM2: the grounding frame's, after start)

    @abstractmethod
    def step(self, image_rgb: np.ndarray, analysis: Any = None) -> FrameResult:
        """Mask the target(s) in the next frame."""

    def carried(self, result: FrameResult) -> None:
        """A frame the track did not see: optical flow carried the last mask to `result` (runtime/propagation.py).
        A track that follows boxes takes the moved ones, so the next key frame finds the same instance."""

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

    def carried(self, result: FrameResult) -> None:
        if result.valid:
            self.boxes = result.boxes


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
