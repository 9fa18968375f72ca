"""Qwen3-VL / Qwen2.5-VL / Qwen2-VL in this process through `transformers` (HF id from the local cache, or a dir).

Nothing downloads at run time (`local_files_only`). The family is read from the checkpoint's config.json before a
weight loads (`answer.family_from_config`): Qwen3-VL resizes to multiples of 32 (16-px patches) and answers boxes in
0..1000 of the image; Qwen2/2.5-VL multiples of 28 and pixels. Any other model type is refused, never run with the
wrong resize or coordinates. The frame is resized with smart_resize first; the size the model actually saw is read
back from the processor's `image_grid_thw` (patches x patch px), so the answer's pixels map to the frame exactly
even if the checkpoint's processor bounds differ.
`mllm.timeout_s` stops generation between tokens.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasonseg.core.errors import CheckpointError
from reasonseg.core.settings import MllmSettings
from reasonseg.core.torch_device import resolve_device, resolve_dtype
from reasonseg.grounding.llm.client import LlmError
from reasonseg.grounding.vlm.answer import (FACTOR, FAMILIES, MllmAnswer, ModelFamily, build_prompt, family_from_config,
                                            parse_answer, smart_resize)
from reasonseg.models.weights import check_model_dir

log = logging.getLogger(__name__)

def check_family(model: str) -> ModelFamily:
    """The checkpoint's family from its config.json alone (before any weights); a model this backend would run
    wrongly is refused."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(str(model), local_files_only=True)
    family = family_from_config(config)
    if family is None:
        raise CheckpointError(f"model_type {config.get('model_type')!r} is not a Qwen-VL checkpoint; "
                              f"mllm.backend=transformers runs {', '.join(FAMILIES)}")
    return family


@dataclass
class Generation:
    """One greedy answer of a Qwen-VL to an image + chat messages."""

    inputs: Any                  # the processor's tensors (input_ids, pixel_values, image_grid_thw, ...)
    sequences: Any               # [1, L] prompt + answer token ids
    text: str                    # the answer, special tokens dropped
    sent_size: tuple[int, int]   # (width, height) of the image the model saw
    seconds: float


def pixel_bounds(image_processor) -> tuple[int, int]:
    """A checkpoint's own smart_resize bounds (LENS's release: max_pixels 1e6), as transformers 5.x stores them."""
    size = getattr(image_processor, "size", None) or {}
    lo = size.get("shortest_edge", getattr(image_processor, "min_pixels", None) or 56 * 56)
    hi = size.get("longest_edge", getattr(image_processor, "max_pixels", None) or 1_000_000)
    return int(lo), int(hi)


def _deadline_criteria(deadline: float):
    from transformers import StoppingCriteria

    class _Deadline(StoppingCriteria):
        """Stops generation once the grounding's deadline has passed."""

        hit = False

        def __call__(self, input_ids, scores, **kwargs) -> bool:
            self.hit = time.monotonic() > deadline
            return self.hit

    return _Deadline()


def generate(model, processor, image_rgb: np.ndarray, messages: list[dict], *, min_pixels: int, max_pixels: int,
             max_new_tokens: int, timeout_s: float, device, streamer=None, factor: int = FACTOR) -> Generation:
    """Qwen's smart_resize, the chat template, greedy generation with a deadline (LlmError when it passes).
    `messages` hold one {"type": "image"} part where the frame goes; `streamer`: transformers' (token timing);
    `factor`: the family's (patch x merge)."""
    import torch
    from PIL import Image

    t0 = time.monotonic()
    fh, fw = image_rgb.shape[:2]
    h, w = smart_resize(fh, fw, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    image = Image.fromarray(np.ascontiguousarray(image_rgb)).resize((w, h), Image.BICUBIC)
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt").to(device)
    patch = processor.image_processor.patch_size
    _, grid_h, grid_w = (int(v) for v in inputs["image_grid_thw"][0])
    deadline = _deadline_criteria(t0 + timeout_s)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, stopping_criteria=[deadline],
                             streamer=streamer)
    new = out[0, inputs["input_ids"].shape[1]:]
    if deadline.hit:
        raise LlmError(f"MLLM timed out ({timeout_s}s, {new.numel()} tokens)")
    return Generation(inputs, out, processor.decode(new, skip_special_tokens=True), (grid_w * patch, grid_h * patch),
                      time.monotonic() - t0)


class QwenVl:
    name = "transformers"

    def __init__(self, settings: MllmSettings) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        family = check_family(settings.model)
        check_model_dir(settings.model, "mllm.model")  # a config asking for more layers than its weights hold
        self.settings = settings
        self.device = resolve_device(settings.device, "mllm.device")
        dtype = resolve_dtype(settings.dtype, self.device)
        self.processor = AutoProcessor.from_pretrained(settings.model, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(settings.model, dtype=dtype,
                                                                 local_files_only=True).to(self.device).eval()
        self.endpoint = f"{settings.model} on {self.device}"
        # the checkpoint's own convention; an explicit mllm.box_format overrides it (a fine-tune answering otherwise)
        self.family = family if settings.box_format == "auto" else ModelFamily(family.name, family.factor,
                                                                                 settings.box_format)
        log.info("mllm: %s (from %s config.json%s)", self.family.describe(), settings.model,
                 "" if settings.box_format == "auto" else f"; mllm.box_format={settings.box_format} set")
        self.stats = {"tokens": 0, "seconds": 0.0}  # last generation, for logs and benchmarks

    def ground(self, image_rgb: np.ndarray, instruction: str) -> MllmAnswer:
        """Raises LlmError (deadline) or MllmAnswerError (answer)."""
        g = self._generate(image_rgb, build_prompt(instruction, chain_of_thought=self.settings.chain_of_thought,
                                                   box_format=self.family.box_format), None)
        return self.read_answer(g.text, g.sent_size, image_rgb.shape)

    def ask(self, image_rgb: np.ndarray, text: str, *, timeout_s: float | None = None) -> str:
        """One question about an image: the answer text, unparsed (the caller validates it). `timeout_s`: a
        deadline shorter than mllm.timeout_s."""
        return self._generate(image_rgb, text, timeout_s).text

    def _generate(self, image_rgb: np.ndarray, text: str, timeout_s: float | None) -> Generation:
        s = self.settings
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        timeout = s.timeout_s if timeout_s is None else min(timeout_s, s.timeout_s)
        g = generate(self.model, self.processor, image_rgb, messages, min_pixels=s.min_pixels, max_pixels=s.max_pixels,
                     max_new_tokens=s.max_new_tokens, timeout_s=timeout, device=self.device, factor=self.family.factor)
        self.stats = {"tokens": int(g.sequences.shape[1] - g.inputs["input_ids"].shape[1]), "seconds": g.seconds,
                      "sent_size": g.sent_size}
        return g

    def read_answer(self, text: str, sent_size: tuple[int, int], frame_shape: tuple[int, ...]) -> MllmAnswer:
        """The answer text in frame pixels, in this checkpoint's box convention."""
        return parse_answer(text, sent_size=sent_size, frame_size=(frame_shape[1], frame_shape[0]),
                            max_instances=self.settings.max_instances, box_format=self.family.box_format)
