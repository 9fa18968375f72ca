"""`refine` with `detector.kind: sam3`: open-vocabulary candidates. The noun phrase the query parser extracts
("the tripod on the left" -> "tripod") goes to SAM 3 as a text concept; its instances (mask, box, score) replace
the COCO detections, and refine's spatial / colour / ordinal / count / relation / exclusion rules (`selection.py`) pick among
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
from reasonseg.grounding.selection import SAME_OBJECT_IOU, box_iou, select_instances
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


def _same(a: str, b: str) -> float:
    """Label similarity for concept phrases: no sibling classes (a COCO notion) among SAM 3's instances."""
    return 1.0 if a == b else 0.0


class ConceptRefinePipeline(PromptedPipeline):
    name = "refine"

    def __init__(self, concepts, segmenter, settings: Settings) -> None:
        self.concepts = concepts
        self.segmenter = segmenter
        self.settings = settings
        self._mask_prompts = "mask" in getattr(segmenter, "PROMPT_KINDS", ())

    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        timer = Timer()
        query = parse_query(instruction)
        queries = [q for q in (dataclasses.replace(query, also=(), excluded=()), *query.also) if q.phrase]
        if not queries:  # "everything except the dog": SAM 3 needs a noun phrase to look for
            return Grounding(instruction=instruction, labels=(), targets=(), pipeline=self.name, timings_ms=timer.ms,
                             reasoning="the instruction names no object to look for", source="sam3 concepts")
        chosen: list[_Candidate] = []
        reasons: list[str] = []
        with timer.stage("sam3_concepts"):
            for q in queries:
                picked, why = self._choose(image_rgb, q)
                chosen += picked
                reasons.append(why)
            for ex in query.excluded:  # "all the cars except the red one", "every person except the cyclist"
                chosen, why = self._exclude(image_rgb, chosen, ex)
                reasons.append(why)
        targets = tuple(Target(c.label, c.score, mask_prompt(c.instance, self._mask_prompts)) for c in chosen)
        return Grounding(instruction=instruction, labels=tuple(dict.fromkeys(q.phrase for q in queries)),
                         targets=targets, reasoning="; ".join(reasons), source="sam3 concepts", pipeline=self.name,
                         timings_ms=timer.ms)

    def _exclude(self, image_rgb: np.ndarray, chosen: list[_Candidate], ex: Query) -> tuple[list[_Candidate], str]:
        """An instance the cues pick among those chosen ("the red one"), or every chosen one that is an instance of
        the excluded concept ("the cyclist": the same object, IoU >= SAME_OBJECT_IOU)."""
        if not chosen:
            return chosen, "nothing to leave out"
        if ex.colours or ex.spatial or ex.ordinal:
            labels = tuple(dict.fromkeys(c.label for c in chosen))
            sel = select_instances(image_rgb, chosen, labels, dataclasses.replace(ex, plural=False, count=None),
                                   label_similarity=_same, sibling_similarity=1.0)
            return [c for i, c in enumerate(chosen) if i not in sel.indices], f"leaving out {sel.reasoning}"
        found = self.concepts.find(image_rgb, ex.phrase)
        kept = [c for c in chosen if all(box_iou(c.box, i.box) < SAME_OBJECT_IOU for i in found.instances)]
        return kept, f"leaving out {len(chosen) - len(kept)} {ex.phrase}"

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
        sel = select_instances(image_rgb, pool, (q.phrase,), q, label_similarity=_same, sibling_similarity=1.0,
                               reference_labels=refs)
        return [pool[i] for i in sel.indices], f"{sel.reasoning} (SAM 3 presence {found.presence:.2f})"


__all__ = ["ConceptRefinePipeline"]
