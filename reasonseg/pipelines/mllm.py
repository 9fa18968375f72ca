"""`mllm`: a vision LLM grounds the instruction (box + points, optional chain of thought), a SAM-family
segmenter turns them into the mask (Seg-Zero style; LENS §3 minus the trained connector). Training-free.

Between groundings: with SAM2 (`segmenter.kind: sam2`, a sam2_video checkpoint) the memory tracker follows
the target at camera rate and its presence confidence asks for a new grounding when the target is lost;
with the embedded LiteSAM (no memory) the grounded prompts are decoded again on every frame.
"""
from __future__ import annotations

import numpy as np

from reasonseg.core.prompt import Prompt
from reasonseg.core.results import Grounding, Target
from reasonseg.core.settings import Settings
from reasonseg.core.timing import Timer
from reasonseg.grounding.query import parse_query
from reasonseg.pipelines.prompted import PromptedPipeline


class MllmPipeline(PromptedPipeline):
    name = "mllm"

    def __init__(self, vlm, segmenter, settings: Settings) -> None:
        self.vlm = vlm
        self.segmenter = segmenter
        self.settings = settings

    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        timer = Timer()
        with timer.stage("mllm"):
            answer = self.vlm.ground(image_rgb, instruction)  # LlmError / MllmAnswerError: the caller falls back
        n_points = self.settings.segmenter.num_points  # 0 for LiteMedSAM: points shrink its masks (README)
        fallback_label = parse_query(instruction).phrase
        targets = tuple(Target(o.label or fallback_label, 1.0, Prompt(box=o.box, points=o.points[:n_points]))
                        for o in answer.objects)
        labels = tuple(dict.fromkeys(t.label for t in targets)) or (fallback_label,)
        reasoning = answer.reasoning or (f"{len(targets)} object(s) named by the MLLM" if targets
                                         else "the MLLM says it is not in the image")
        return Grounding(instruction=instruction, labels=labels, targets=targets, reasoning=reasoning,
                         source=f"mllm:{self.vlm.name}", pipeline=self.name, timings_ms=timer.ms)


__all__ = ["MllmPipeline"]
