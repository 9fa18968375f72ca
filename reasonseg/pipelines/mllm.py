"""`mllm`: a vision LLM grounds the instruction (box + points, optional chain of thought), a SAM-family
segmenter turns them into the mask (Seg-Zero style; LENS §3 minus the trained connector). Training-free.

Between groundings: with SAM2 (`segmenter.kind: sam2`, a sam2_video checkpoint) the memory tracker follows
the target at camera rate and its presence confidence asks for a new grounding when the target is lost;
with the embedded LiteSAM (no memory) the grounded prompts are decoded again on every frame.
"""
from __future__ import annotations

import numpy as np

from reasonseg.core.prompt import Box, Prompt, mask_box
from reasonseg.core.results import FrameResult, Grounding, Instance, Target
from reasonseg.core.settings import Settings
from reasonseg.core.timing import Timer
from reasonseg.grounding.query import parse_query
from reasonseg.pipelines.base import Pipeline, Track
from reasonseg.pipelines.memory_track import MemoryTrack

MIN_MASK_IOU = 0.05  # a predicted IoU below this is no mask at all


class MllmPipeline(Pipeline):
    name = "mllm"

    def __init__(self, vlm, segmenter, settings: Settings) -> None:
        self.vlm = vlm
        self.segmenter = segmenter
        self.settings = settings

    def analyse(self, image_rgb: np.ndarray, timer: Timer) -> None:
        return None  # nothing per frame before grounding: the VLM looks at the frame itself

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

    def start(self, image_rgb: np.ndarray, grounding: Grounding, analysis=None) -> Track:
        if grounding.targets and getattr(self.segmenter, "can_track", False):
            return MemoryTrack(self.segmenter, grounding, image_rgb, self.settings.segmenter.memory_frames,
                               self.settings.runtime.min_track_confidence)
        return super().start(image_rgb, grounding, analysis)

    def segment(self, image_rgb: np.ndarray, grounding: Grounding, track: tuple[Box, ...] = (),
                analysis=None) -> FrameResult:
        timer = Timer()
        h, w = image_rgb.shape[:2]
        mask = np.zeros((h, w), bool)
        if not grounding.targets:
            return FrameResult.not_found(mask, grounding, timer.ms, "not in the image")
        with timer.stage("sam_encoder"):
            emb = self.segmenter.encode(image_rgb)
        instances = []
        with timer.stage("sam_decoder"):
            for target in grounding.targets:
                p = self.segmenter.predict(emb, target.prompt)
                if p.score < MIN_MASK_IOU or not p.mask.any():
                    continue
                mask |= p.mask
                box = target.prompt.box or mask_box(p.mask)  # lens prompts with an embedding, not a box
                instances.append(Instance(target.label, float(p.score), box))
        if not instances:
            return FrameResult.not_found(mask, grounding, timer.ms, "target lost")
        return FrameResult.found(mask, instances, grounding, timer.ms)


__all__ = ["MllmPipeline"]
