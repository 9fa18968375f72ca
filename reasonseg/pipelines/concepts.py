"""`refine` with `detector.kind: sam3`: open-vocabulary candidates. The noun phrase the query parser extracts
("the tripod on the left" -> "tripod") goes to SAM 3 as a text concept; its instances (mask, box, score) replace
the COCO detections, and refine's spatial / colour / ordinal / count / relation rules (`selection.py`) pick among
them as they pick among detections. A concept SAM 3 says is absent (presence below `sam3.presence_threshold`) is
"not found" with that reason — never the nearest COCO class. The chosen masks prompt the segmenter per frame
(and seed the tracker), as `mllm`'s boxes do.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from reasonseg.core.prompt import Box, Prompt
from reasonseg.core.results import Grounding, Target
from reasonseg.core.settings import Settings
from reasonseg.core.timing import Timer
from reasonseg.grounding.query import Query, parse_query
from reasonseg.grounding.selection import select_instances
from reasonseg.pipelines.prompted import PromptedPipeline
from reasonseg.segmenters.sam3.concepts import ConceptInstance

MASK_LOGIT = 10.0  # a binary mask as logits for a mask prompt (sigmoid(10) ~ 1)


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A SAM 3 instance as the selection rules see a detection."""

    box: Box
    score: float
    label: str
    instance: ConceptInstance


def mask_prompt(instance: ConceptInstance, takes_masks: bool) -> Prompt:
    """The instance's box, and its mask as logits for a segmenter that takes mask prompts (SAM2 / SAM 3)."""
    logits = np.where(instance.mask, MASK_LOGIT, -MASK_LOGIT).astype(np.float32) if takes_masks else None
    return Prompt(box=instance.box, mask_logits=logits)


class ConceptRefinePipeline(PromptedPipeline):
    name = "refine"

    def __init__(self, concepts, segmenter, settings: Settings) -> None:
        self.concepts = concepts
        self.segmenter = segmenter
        self.settings = settings
        self._mask_prompts = "mask" in getattr(segmenter, "PROMPT_KINDS", ())

    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        timer = Timer()
        query = parse_query(instruction, exclusions=False)
        queries = [q for q in (dataclasses.replace(query, also=()), *query.also) if q.phrase]
        if not queries:
            return Grounding(instruction=instruction, labels=(), targets=(), pipeline=self.name, timings_ms=timer.ms,
                             reasoning="the instruction names no object", source="sam3 concepts")
        targets: list[Target] = []
        reasons: list[str] = []
        for q in queries:
            with timer.stage("sam3_concepts"):
                chosen, why = self._choose(image_rgb, q)
            reasons.append(why)
            targets += [Target(c.label, c.score, mask_prompt(c.instance, self._mask_prompts)) for c in chosen]
        return Grounding(instruction=instruction, labels=tuple(dict.fromkeys(q.phrase for q in queries)),
                         targets=tuple(targets), reasoning="; ".join(reasons), source="sam3 concepts",
                         pipeline=self.name, timings_ms=timer.ms)

    def _choose(self, image_rgb: np.ndarray, q: Query) -> tuple[list[_Candidate], str]:
        found = self.concepts.find(image_rgb, q.phrase)
        if not found.instances:
            return [], f"no {q.phrase} in the image ({found.absent_reason})"
        pool = [_Candidate(i.box, i.score, q.phrase, i) for i in found.instances]
        refs: tuple[str, ...] = ()
        if q.relation is not None and q.relation.reference:  # "the car behind the truck": the truck, as a concept
            ref = self.concepts.find(image_rgb, q.relation.reference)
            pool += [_Candidate(i.box, i.score, q.relation.reference, i) for i in ref.instances]
            refs = (q.relation.reference,)
        same = lambda a, b: 1.0 if a == b else 0.0  # noqa: E731 (labels are phrases here, not COCO classes)
        sel = select_instances(image_rgb, pool, (q.phrase,), q, label_similarity=same, sibling_similarity=1.0,
                               reference_labels=refs)
        return [pool[i] for i in sel.indices], f"{sel.reasoning} (SAM 3 presence {found.presence:.2f})"


__all__ = ["ConceptRefinePipeline"]
