"""`l2l`: L2L's onboard segmentor (`reasonseg.models.l2l`) masks the referred object straight from frame +
expression, every frame, with no MLLM and no detector. `ground` only encodes the expression (once per
instruction); `segment` runs the segmentor, `l2l.passes` times, each later pass taking the previous one's
probabilities as SESM's structural prior.
"""
from __future__ import annotations

import logging

import numpy as np

from reasonseg.core.prompt import mask_box
from reasonseg.core.results import FrameResult, Grounding, Instance
from reasonseg.core.settings import L2LSettings
from reasonseg.core.timing import Timer
from reasonseg.core.torch_device import resolve_device
from reasonseg.grounding.query import parse_query
from reasonseg.pipelines.base import Pipeline

log = logging.getLogger(__name__)


class L2LPipeline(Pipeline):
    name = "l2l"

    def __init__(self, settings: L2LSettings) -> None:
        from transformers import BertTokenizerFast

        from reasonseg.models.l2l import L2LSegmentor

        self.settings = settings
        self.device = resolve_device(settings.device, "l2l.device")
        self.model = L2LSegmentor.from_pretrained(settings.model).to(self.device)
        self.tokenizer = BertTokenizerFast.from_pretrained(settings.model, local_files_only=True)
        self.size = self.model.config.image_size
        self.endpoint = f"{settings.model} on {self.device}"

    def analyse(self, image_rgb: np.ndarray, timer: Timer) -> None:
        return None

    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        import torch

        timer = Timer()
        with timer.stage("text_encoder"), torch.inference_mode():
            enc = self.tokenizer([instruction], padding="max_length", truncation=True,
                                 max_length=self.model.config.max_text_len, return_tensors="pt").to(self.device)
            text = self.model.encode_text(enc.input_ids, enc.attention_mask)
        label = parse_query(instruction).phrase
        return Grounding(instruction=instruction, labels=(label,), targets=(), reasoning="L2L segmentor (no MLLM)",
                         source="l2l", pipeline=self.name, timings_ms=timer.ms, detail=text)

    def segment(self, image_rgb: np.ndarray, grounding: Grounding, track=(), analysis=None) -> FrameResult:
        import cv2
        import torch

        from reasonseg.models.l2l import preprocess

        s = self.settings
        timer = Timer()
        h, w = image_rgb.shape[:2]
        text, pad = grounding.detail
        with timer.stage("l2l_segmentor"), torch.inference_mode():
            pixels = preprocess(image_rgb, self.size).to(self.device)
            prior = None
            for _ in range(s.passes):
                prior = torch.sigmoid(self.model.decode(pixels, text, pad, prior))
            prob = cv2.resize(prior[0, 0].float().cpu().numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
        mask = prob > s.threshold
        box = mask_box(mask)
        if box is None or mask.mean() < s.min_area:
            return FrameResult.not_found(np.zeros((h, w), bool), grounding, timer.ms, "not in the image")
        return FrameResult.found(mask, (Instance(grounding.labels[0], float(prob[mask].mean()), box),), grounding,
                                 timer.ms)


__all__ = ["L2LPipeline"]
