"""A served vision LLM behind any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, TensorRT-LLM, GPT-4o).

The frame goes as a JPEG data URL after Qwen's smart_resize (so an answer in pixels is in those of the
image the model saw; one in 0..1000, Qwen3-VL's, is relative whatever the size: `mllm.box_format`); the
transport is the bounded, deadline-enforced client of `reasonseg.grounding.llm`.
"""
from __future__ import annotations

import base64
import logging

import cv2
import numpy as np

from reasonseg.core.settings import MllmSettings
from reasonseg.grounding.llm.client import ChatLlm, resolve_endpoint
from reasonseg.grounding.vlm.answer import MllmAnswer, box_format_for, build_prompt, parse_answer, smart_resize

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
BYTES_PER_TOKEN = 16  # a generous bound on the JSON envelope per generated token


class OpenAiVlm:
    name = "openai"

    def __init__(self, settings: MllmSettings) -> None:
        # the served VLM's base_url is the first home of $OPENAI_API_KEY when $OPENAI_BASE_URL is unset
        endpoint = resolve_endpoint(settings.base_url, (settings.base_url,))
        if endpoint is None:
            raise ValueError("mllm.backend=openai needs mllm.base_url or $OPENAI_BASE_URL (and $OPENAI_API_KEY "
                             "if the endpoint wants one)")
        self.settings = settings
        self._llm = ChatLlm(settings.model, base_url=endpoint.base_url, api_key=endpoint.api_key,
                            timeout_s=settings.timeout_s, max_tokens=settings.max_new_tokens)
        self.endpoint = str(endpoint)  # redacted, says whether a key goes there: safe to log
        self.box_format, why = box_format_for(settings.model, settings.box_format)
        log.info("mllm.box_format: %s (%s)", self.box_format, why)  # once, at start-up

    def ground(self, image_rgb: np.ndarray, instruction: str) -> MllmAnswer:
        """Ask where `instruction`'s target is; raises LlmError (transport) or MllmAnswerError (answer)."""
        s = self.settings
        fh, fw = image_rgb.shape[:2]
        h, w = smart_resize(fh, fw, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        sent = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA if w * h < fw * fh else cv2.INTER_LINEAR)
        ok, jpeg = cv2.imencode(".jpg", sent[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("could not encode the frame as JPEG")
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")
        content = [{"type": "image_url", "image_url": {"url": url}},
                   {"type": "text", "text": build_prompt(instruction, chain_of_thought=s.chain_of_thought,
                                                         box_format=self.box_format)}]
        text = self._llm.chat([{"role": "user", "content": content}],
                              max_bytes=max(64 * 1024, s.max_new_tokens * BYTES_PER_TOKEN))
        return parse_answer(text, sent_size=(w, h), frame_size=(fw, fh), max_instances=s.max_instances,
                            box_format=self.box_format)
