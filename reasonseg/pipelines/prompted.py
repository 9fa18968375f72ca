"""A pipeline whose grounding hands the segmenter one prompt per target (`mllm`, `agent`, `refine` with SAM 3
concepts): per frame the prompts are decoded again (LiteSAM: no memory), or, with a memory segmenter (SAM2 /
SAM 3 tracker), the targets are tracked from the grounding frame on and the tracker's presence asks for a new
grounding when they are lost."""
from __future__ import annotations

import numpy as np

from reasonseg.core.prompt import Box, mask_box
from reasonseg.core.results import FrameResult, Grounding, Instance
from reasonseg.core.settings import Settings
from reasonseg.core.timing import Timer
from reasonseg.pipelines.base import Pipeline, Track
from reasonseg.pipelines.memory_track import MemoryTrack

MIN_MASK_IOU = 0.05  # a predicted IoU below this is no mask at all


class PromptedPipeline(Pipeline):
    segmenter: object
    settings: Settings

    def analyse(self, image_rgb: np.ndarray, timer: Timer) -> None:
        return None  # nothing per frame before grounding: the grounding looks at the frame itself

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
