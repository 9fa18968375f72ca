"""`mllm`: a vision LLM grounds the instruction (box + points, optional chain of thought), a SAM-family
segmenter turns them into the mask (Seg-Zero style; LENS §3 minus the trained connector). Training-free.

Between groundings the grounded boxes prompt the segmenter on every frame; with the embedded LiteSAM
(no memory) that is the whole tracking — the SAM2 memory tracker replaces it when `segmenter.kind: sam2`
lands. A new grounding comes on instruction change, every `runtime.reground_period_s`, or when the mask
is lost for `runtime.lost_frames_before_reground` frames.
"""
from __future__ import annotations

import numpy as np

from ..config import Settings
from ..mllm.answer import MllmAnswerError
from ..query import parse_query
from .base import Box, FrameResult, Grounding, Instance, Pipeline, Timer

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
        query = parse_query(instruction)
        objects = answer.objects
        labels = tuple(dict.fromkeys(o.label or query.phrase for o in objects)) or (query.phrase,)
        reasoning = answer.reasoning or (f"{len(objects)} object(s) named by the MLLM" if objects
                                         else "the MLLM says it is not in the image")
        return Grounding(instruction=instruction, query=query, labels=labels, reference_labels=(),
                         boxes=tuple(o.box for o in objects), scores=tuple(1.0 for _ in objects),
                         reasoning=reasoning, source=f"mllm:{self.vlm.name}", pipeline=self.name,
                         timings_ms=timer.ms, points=tuple(o.points for o in objects))

    def segment(self, image_rgb: np.ndarray, grounding: Grounding, track: tuple[Box, ...] = (),
                analysis=None) -> FrameResult:
        timer = Timer()
        h, w = image_rgb.shape[:2]
        mask = np.zeros((h, w), bool)
        if not grounding.boxes:
            return FrameResult(mask, False, grounding.labels, (), 0.0, grounding, timer.ms, "not in the image")
        with timer.stage("sam_encoder"):
            emb = self.segmenter.encode(image_rgb)
        n_points = self.settings.segmenter.num_points  # 0 for LiteMedSAM: points shrink its masks (README)
        instances = []
        with timer.stage("sam_decoder"):
            for i, box in enumerate(grounding.boxes):
                pts = grounding.points[i][:n_points] if i < len(grounding.points) else ()
                points = np.asarray(pts, np.float32).reshape(-1, 2) if pts else None
                m, iou = self.segmenter.decode(emb, box, points, np.ones(len(pts), np.int64) if pts else None)
                if iou < MIN_MASK_IOU or not m.any():
                    continue
                mask |= m
                label = grounding.labels[min(i, len(grounding.labels) - 1)]
                instances.append(Instance(label, float(iou), box))
        if not instances:
            return FrameResult(mask, False, grounding.labels, (), 0.0, grounding, timer.ms, "target lost")
        return FrameResult(mask, True, tuple(dict.fromkeys(i.label for i in instances)),
                           tuple(i.box for i in instances), max(i.score for i in instances), grounding, timer.ms,
                           "", tuple(instances))


__all__ = ["MllmPipeline", "MllmAnswerError"]
