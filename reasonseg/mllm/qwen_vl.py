"""Qwen2.5-VL / Qwen2-VL in this process through `transformers` (HF id from the local cache, or a local dir).

Nothing downloads at run time (`local_files_only`). The frame is resized with smart_resize first; the
size the model actually saw is read back from the processor's `image_grid_thw` (patches x 14 px), so
the answer's pixels map to the frame exactly even if the checkpoint's processor bounds differ.
`mllm.timeout_s` stops generation between tokens.
"""
from __future__ import annotations

import time

import numpy as np

from ..config import MllmSettings
from ..llm.client import LlmError
from ..torch_device import resolve_device, resolve_dtype
from .answer import MllmAnswer, build_prompt, parse_answer, smart_resize


class QwenVl:
    name = "transformers"

    def __init__(self, settings: MllmSettings) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor, StoppingCriteria
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.settings = settings
        self.device = resolve_device(settings.device, "mllm.device")
        dtype = resolve_dtype(settings.dtype, self.device)
        self.processor = AutoProcessor.from_pretrained(settings.model, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(settings.model, dtype=dtype,
                                                                 local_files_only=True).to(self.device).eval()
        self.endpoint = f"{settings.model} on {self.device}"
        self.stats = {"tokens": 0, "seconds": 0.0}  # last generation, for logs and benchmarks

        class _Deadline(StoppingCriteria):
            """Stops generation once the grounding's deadline has passed."""

            def __init__(self, deadline: float) -> None:
                self.deadline, self.hit = deadline, False

            def __call__(self, input_ids, scores, **kwargs) -> bool:
                self.hit = time.monotonic() > self.deadline
                return self.hit

        self._deadline_cls = _Deadline

    def ground(self, image_rgb: np.ndarray, instruction: str) -> MllmAnswer:
        """Raises LlmError (deadline) or MllmAnswerError (answer)."""
        import torch
        from PIL import Image

        s = self.settings
        t0 = time.monotonic()
        fh, fw = image_rgb.shape[:2]
        h, w = smart_resize(fh, fw, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        image = Image.fromarray(np.ascontiguousarray(image_rgb)).resize((w, h), Image.BICUBIC)
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": build_prompt(instruction, chain_of_thought=s.chain_of_thought)}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=[image], return_tensors="pt").to(self.device)
        patch = self.processor.image_processor.patch_size
        _, grid_h, grid_w = (int(v) for v in inputs["image_grid_thw"][0])
        deadline = self._deadline_cls(t0 + s.timeout_s)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=s.max_new_tokens, do_sample=False,
                                      stopping_criteria=[deadline])
        new = out[0, inputs["input_ids"].shape[1]:]
        self.stats = {"tokens": int(new.numel()), "seconds": time.monotonic() - t0}
        if deadline.hit:
            raise LlmError(f"MLLM timed out ({s.timeout_s}s, {new.numel()} tokens)")
        answer = self.processor.decode(new, skip_special_tokens=True)
        return parse_answer(answer, sent_size=(grid_w * patch, grid_h * patch), frame_size=(fw, fh),
                            max_instances=s.max_instances)
