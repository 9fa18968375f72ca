"""SAM 3's open-vocabulary concept segmentation (`Sam3Model`): every instance of a short noun phrase ("yellow school
bus") in one pass — masks, boxes, scores — and a presence probability that says whether the concept is in the
image at all (the detector's presence token; an instance's score is its own probability times the presence,
transformers' `post_process_instance_segmentation`). Used by `refine` with `detector.kind: sam3` and by the
`agent` pipeline. Nothing downloads (`local_files_only`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from reasonseg.core.prompt import Box, mask_box
from reasonseg.core.settings import Sam3Settings
from reasonseg.core.torch_device import resolve_device
from reasonseg.models.weights import check_model_dir

log = logging.getLogger(__name__)
MAX_PHRASE_CHARS = 120  # SAM 3's text encoder reads 32 tokens; a longer "concept" is not a noun phrase


@dataclass(frozen=True, eq=False)
class ConceptInstance:
    mask: np.ndarray   # bool (H, W), frame pixels
    box: Box           # frame pixels
    score: float       # instance probability x presence


@dataclass(frozen=True)
class ConceptResult:
    phrase: str
    presence: float                         # probability that the concept is in the image
    instances: tuple[ConceptInstance, ...]  # best first; empty when presence is below the threshold

    @property
    def absent_reason(self) -> str:
        return f"SAM 3 presence {self.presence:.2f} for {self.phrase!r}"


class Sam3Concepts:
    """`find(image_rgb, phrase)` over a transformers `Sam3Model` checkpoint (facebook/sam3, or a dir)."""

    def __init__(self, settings: Sam3Settings) -> None:
        import torch
        from transformers import Sam3Model, Sam3Processor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if not settings.model:
            raise ValueError("sam3.model is empty: name a SAM 3 checkpoint (facebook/sam3 from the local cache, or "
                             "a dir)")
        check_model_dir(settings.model, "sam3.model")
        self.settings = settings
        self.device = resolve_device(settings.device, "sam3.device")
        self.processor = Sam3Processor.from_pretrained(settings.model, local_files_only=True)
        self.model = Sam3Model.from_pretrained(settings.model, local_files_only=True,
                                               dtype=torch.float32).to(self.device).eval()
        self.endpoint = f"{settings.model} on {self.device}"

    def find(self, image_rgb: np.ndarray, phrase: str) -> ConceptResult:
        """Every instance of `phrase` above sam3.score_threshold, best first, at most sam3.max_instances."""
        import torch

        s = self.settings
        phrase = " ".join(phrase.split())[:MAX_PHRASE_CHARS]
        if not phrase:
            raise ValueError("an empty concept phrase")
        h, w = image_rgb.shape[:2]
        inputs = self.processor(images=np.ascontiguousarray(image_rgb), text=phrase, return_tensors="pt")
        with torch.inference_mode():
            out = self.model(**inputs.to(self.device))
        presence = float(torch.sigmoid(out.presence_logits.float()).reshape(-1)[0]) \
            if out.presence_logits is not None else 1.0
        if presence < s.presence_threshold:
            return ConceptResult(phrase, presence, ())
        (res,) = self.processor.post_process_instance_segmentation(out, threshold=s.score_threshold,
                                                                   mask_threshold=s.mask_threshold,
                                                                   target_sizes=[(h, w)])
        order = torch.argsort(res["scores"], descending=True)[: s.max_instances]
        instances = []
        for i in order.tolist():
            mask = res["masks"][i].cpu().numpy().astype(bool)
            if not mask.any():
                continue
            x0, y0, x1, y1 = np.clip(res["boxes"][i].float().cpu().numpy(), 0, [w, h, w, h]).tolist()
            box = (x0, y0, x1, y1) if x1 - x0 >= 1 and y1 - y0 >= 1 else mask_box(mask)  # the detector's, clipped
            instances.append(ConceptInstance(mask, box, float(res["scores"][i])))
        return ConceptResult(phrase, presence, tuple(instances))
