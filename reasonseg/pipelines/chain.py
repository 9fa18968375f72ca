"""`auto`: the configured pipelines in order of preference; a grounding that fails falls down the chain.

Each mask is segmented by the pipeline whose grounding it follows, and the result names it: after a
fallback the grounding's `pipeline` is the one that answered and its `source` says why the first failed.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from reasonseg.core.errors import ReasonSegError
from reasonseg.core.model_text import reason_of
from reasonseg.core.prompt import Box
from reasonseg.core.results import FrameResult, Grounding
from reasonseg.core.timing import Timer
from reasonseg.pipelines.base import Pipeline, Track

log = logging.getLogger(__name__)


class FallbackChain(Pipeline):
    def __init__(self, pipelines: Sequence[Pipeline]) -> None:
        if len(pipelines) < 2:
            raise ValueError("a fallback chain needs two pipelines or more")
        self.pipelines = list(pipelines)
        self.name = "auto(" + ">".join(p.name for p in self.pipelines) + ")"
        self._by_name = {p.name: p for p in self.pipelines}

    def analyse(self, image_rgb: np.ndarray, timer: Timer) -> None:
        return None  # each member analyses what it needs, only when it grounds or segments

    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        reasons = []
        for p in self.pipelines:
            try:
                g = p.ground(image_rgb, instruction)
            except Exception as exc:  # LlmError, MllmAnswerError, or any fault of a model: the next one answers
                why = reason_of(exc)
                reasons.append(f"{p.name} failed: {why}")
                log.warning("%s grounding failed, falling back: %s", p.name, why)
                continue
            if reasons:
                why = "; ".join(reasons)
                g = dataclasses.replace(g, source=f"{g.source} ({why})",
                                        fallback="; ".join(filter(None, (why, g.fallback))))
            return g
        raise ReasonSegError("every pipeline failed to ground: " + "; ".join(reasons))

    # The chain analyses nothing itself (`analysis` is None): each member computes what it needs.
    def segment(self, image_rgb: np.ndarray, grounding: Grounding, track: tuple[Box, ...] = (),
                analysis=None) -> FrameResult:
        return self._by_name[grounding.pipeline].segment(image_rgb, grounding, track)

    def start(self, image_rgb: np.ndarray, grounding: Grounding, analysis=None) -> Track:
        return self._by_name[grounding.pipeline].start(image_rgb, grounding)
