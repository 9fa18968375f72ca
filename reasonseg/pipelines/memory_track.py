"""`Track` over a segmenter with memory (SAM2): conditioned once on the grounding frame, then one tracking
step per frame — no re-prompting, no VLM — with SAM2's object-presence probability as the confidence."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from reasonseg.core.prompt import mask_box
from reasonseg.core.results import FrameResult, Grounding, Instance
from reasonseg.core.timing import Timer
from reasonseg.pipelines.base import Track


class MemoryTrack(Track):
    def __init__(self, segmenter, grounding: Grounding, image_rgb: np.ndarray, memory_frames: int,
                 min_score: float) -> None:
        super().__init__(grounding)
        self.min_score = min_score
        t0 = time.perf_counter()
        self.stream = segmenter.start_stream(image_rgb, [t.prompt for t in grounding.targets], memory_frames)
        self.last = self._result(image_rgb.shape[:2], self.stream.last, {"track_start": (time.perf_counter() - t0) * 1e3})

    def step(self, image_rgb: np.ndarray, analysis: Any = None) -> FrameResult:
        timer = Timer()
        with timer.stage("track_step"):
            predictions = self.stream.step(image_rgb)
        self.last = self._result(image_rgb.shape[:2], predictions, timer.ms)
        return self.last

    def _result(self, size: tuple[int, int], predictions, timings_ms: dict[str, float]) -> FrameResult:
        g = self.grounding
        mask = np.zeros(size, bool)
        instances = []
        for target, p in zip(g.targets, predictions):
            box = mask_box(p.mask) if p.score >= self.min_score else None
            if box is not None:
                mask |= p.mask
                instances.append(Instance(target.label, p.score, box))
        self.confidence = max((p.score for p in predictions), default=0.0)
        if not instances:
            return FrameResult.not_found(mask, g, timings_ms, "target lost")
        return FrameResult.found(mask, instances, g, timings_ms, "tracked")

    def close(self) -> None:
        self.stream.close()
