"""A served vision LLM behind any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, TensorRT-LLM, GPT-4o).

The frame goes as a JPEG data URL after Qwen's smart_resize at the family's factor (so an answer in pixels is in
those of the image the model saw; one in 0..1000, Qwen3-VL's, is relative whatever the size: `mllm.box_format`,
auto from the served model's name); the
transport is the bounded, deadline-enforced client of `reasonseg.grounding.llm`.
"""
from __future__ import annotations

import base64
import logging

import cv2
import numpy as np

from reasonseg.core.settings import MllmSettings
from reasonseg.grounding.llm.client import ChatLlm, resolve_endpoint
from reasonseg.grounding.vlm.answer import MllmAnswer, build_prompt, family_from_name, parse_answer, smart_resize

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
        self.family, why = family_from_name(settings.model, settings.box_format)
        self.box_format = self.family.box_format
        log.info("mllm.box_format: %s, resize factor %d (%s)", self.box_format, self.family.factor, why)  # at start-up

    def ground(self, image_rgb: np.ndarray, instruction: str) -> MllmAnswer:
        """Ask where `instruction`'s target is; raises LlmError (transport) or MllmAnswerError (answer)."""
        s = self.settings
        fh, fw = image_rgb.shape[:2]
        url, (w, h) = self._data_url(image_rgb)
        text = self.ask(url, build_prompt(instruction, chain_of_thought=s.chain_of_thought, box_format=self.box_format))
        return parse_answer(text, sent_size=(w, h), frame_size=(fw, fh), max_instances=s.max_instances,
                            box_format=self.box_format)

    def ask(self, image: np.ndarray | str, text: str, *, timeout_s: float | None = None) -> str:
        """One question about an image (an RGB array, or a data URL already made): the answer text, unparsed
        (the caller validates it). `timeout_s`: a deadline shorter than mllm.timeout_s."""
        url = image if isinstance(image, str) else self._data_url(image)[0]
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
        s = self.settings
        return self._llm.chat([{"role": "user", "content": content}],
                              max_bytes=max(64 * 1024, s.max_new_tokens * BYTES_PER_TOKEN), timeout_s=timeout_s)

    def _data_url(self, image_rgb: np.ndarray) -> tuple[str, tuple[int, int]]:
        """The frame after smart_resize as a JPEG data URL, and the (width, height) sent."""
        s = self.settings
        fh, fw = image_rgb.shape[:2]
        h, w = smart_resize(fh, fw, factor=self.family.factor, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        sent = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA if w * h < fw * fh else cv2.INTER_LINEAR)
        ok, jpeg = cv2.imencode(".jpg", sent[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("could not encode the frame as JPEG")
        return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii"), (w, h)
