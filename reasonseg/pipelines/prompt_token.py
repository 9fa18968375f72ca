"""`lens` and `cora`: a trained model turns (frame, instruction) into ONE SAM2 sparse prompt token, and its own
SAM2 decodes the mask (dense prompt = no_mask_embed, single mask). Between groundings that SAM2's memory
tracks the target (MemoryTrack, conditioned on the model's mask); `segment` decodes the token on a fresh frame.
"""
from __future__ import annotations

import logging

import numpy as np

from reasonseg.core.prompt import Prompt, Segmenter
from reasonseg.core.results import Grounding, Target
from reasonseg.core.settings import Settings
from reasonseg.core.timing import Timer
from reasonseg.grounding.query import parse_query
from reasonseg.grounding.vlm.token_answer import TokenGrounder
from reasonseg.pipelines.mllm import MllmPipeline

log = logging.getLogger(__name__)


class TokenPipeline(MllmPipeline):
    def __init__(self, grounder: TokenGrounder, settings: Settings, segmenter: Segmenter | None = None) -> None:
        if segmenter is None:
            from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

            # the checkpoint's own SAM2 (memory modules included), frames resized as LENS's release resizes them
            segmenter = Sam2Segmenter(grounder.model.sam, device=str(grounder.device), antialias=True)
        super().__init__(grounder, segmenter, settings)
        self.name = grounder.name

    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        timer = Timer()
        answer = self.vlm.ground(image_rgb, instruction, timer)  # LlmError: the caller falls back
        label = parse_query(instruction).phrase
        said = [answer.note] if answer.note else []
        if answer.box is not None:
            said.append(f"{self.name} box [" + ", ".join(f"{v:.0f}" for v in answer.box) + "]")
        if answer.note:
            log.info("%s: %s: %r", self.name, answer.note, answer.text[:200])
        reasoning = "; ".join([answer.reasoning] * bool(answer.reasoning) + said) or f"{self.name} prompt token"
        target = Target(label, 1.0, Prompt(sparse_embeddings=answer.token))
        return Grounding(instruction=instruction, labels=(label,), targets=(target,), reasoning=reasoning,
                         source=self.name, pipeline=self.name, timings_ms=timer.ms, detail=answer)


__all__ = ["TokenPipeline"]
