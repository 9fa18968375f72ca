"""Chat client for any OpenAI-compatible endpoint, with strict answer validation.

Configured the standard way (OPENAI_BASE_URL, OPENAI_API_KEY); the model name
comes from settings. Every failure mode — endpoint down, slow past the deadline,
HTTP errors, oversized or cut answers, redirects off-origin, non-JSON, labels
outside the allowed list — raises `LlmError` so the caller falls back to the
local resolver and records why. The key is never logged; URLs are redacted.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import ReasonSegError
from . import prompts
from .http import HttpError, HttpStatusError, HttpTimeout, HttpUnreachable, post_json, redact_url

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the OpenAI SDK's default when only a key is set
MAX_RESPONSE_BYTES = 1 << 20  # a chat answer of max_tokens <= 4096 is far below this
_MAX_ANSWER_CHARS = 20_000
_MAX_MEMO = 256
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


class LlmError(ReasonSegError):
    """The LLM could not give a usable answer; the message says why in one line."""


@dataclass(frozen=True)
class PreRefinement:
    labels: tuple[str, ...]
    reference_labels: tuple[str, ...]


def endpoint_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    env = os.environ if env is None else env
    return env.get("OPENAI_BASE_URL") or None, env.get("OPENAI_API_KEY") or None


class ChatLlm:
    def __init__(self, model: str, *, base_url: str | None, api_key: str | None, timeout_s: float,
                 max_tokens: int = 256) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self._url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        # A local server (vLLM, Ollama) often needs no key.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # a pasted key with a line break or non-ASCII cannot go into a header (http.client: a bare ValueError)
        self._key_problem = None if not api_key or all(" " <= c <= "~" for c in api_key) else (
            "OPENAI_API_KEY holds characters an HTTP header cannot carry (a line break, a control or non-ASCII "
            "character): check the variable")
        self.endpoint = redact_url(base_url or DEFAULT_BASE_URL)  # safe to log
        self._answers: dict[tuple, PreRefinement] = {}

    @classmethod
    def from_env(cls, model: str, *, timeout_s: float, max_tokens: int = 256) -> "ChatLlm | None":
        base_url, api_key = endpoint_from_env()
        if not base_url and not api_key:
            return None
        return cls(model, base_url=base_url, api_key=api_key, timeout_s=timeout_s, max_tokens=max_tokens)

    def complete(self, system: str, user: str) -> str:
        """One chat completion; `timeout_s` is a deadline for the whole exchange."""
        return self.chat([{"role": "system", "content": system}, {"role": "user", "content": user}])

    def chat(self, messages: list[dict], *, max_tokens: int | None = None, max_bytes: int = MAX_RESPONSE_BYTES) -> str:
        """The assistant's text for `messages` (text or OpenAI image content parts); raises LlmError."""
        if self._key_problem:
            raise LlmError(self._key_problem)
        payload = {"model": self.model, "temperature": 0, "max_tokens": max_tokens or self.max_tokens,
                   "messages": messages}
        try:
            resp = post_json(self._url, payload, headers=self._headers, deadline_s=self.timeout_s,
                             max_bytes=max_bytes)
        except HttpTimeout:
            raise LlmError(f"LLM timed out ({self.timeout_s}s)") from None
        except HttpStatusError as exc:
            raise LlmError(f"LLM endpoint answered HTTP {exc.status}") from None
        except HttpUnreachable:
            raise LlmError(f"LLM endpoint unreachable ({self.endpoint})") from None
        except HttpError as exc:
            raise LlmError(f"LLM endpoint {self.endpoint}: {exc}") from None
        try:
            content = resp["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LlmError("LLM answer has no message content") from None
        if not isinstance(content, str) or not content.strip():
            raise LlmError("LLM answer is empty")
        return content

    def pre_refine(self, instruction: str, tags: Sequence[str], allowed: Sequence[str]) -> PreRefinement:
        """Target labels for an instruction; validated answers are memoised (temperature 0: the same question
        gets the same answer), so re-grounding an unchanged scene does not call the endpoint again."""
        key = (instruction, tuple(tags), tuple(allowed))
        if key in self._answers:
            return self._answers[key]
        answer = self._ask_pre_refine(instruction, tags, allowed)
        if len(self._answers) >= _MAX_MEMO:
            self._answers.pop(next(iter(self._answers)))
        self._answers[key] = answer
        return answer

    def _ask_pre_refine(self, instruction: str, tags: Sequence[str], allowed: Sequence[str]) -> PreRefinement:
        answer = parse_json_object(self.complete(prompts.pre_refinement_system(allowed),
                                                 prompts.pre_refinement_user(instruction, tags)))
        labels = validate_labels(answer.get("labels"), allowed, "labels")
        refs = validate_labels(answer.get("reference_labels", []), allowed, "reference_labels")
        return PreRefinement(labels, refs)

    def post_refine(self, phrase: str, allowed: Sequence[str]) -> str:
        answer = parse_json_object(self.complete(prompts.post_refinement_system(allowed), json.dumps({"phrase": phrase})))
        labels = validate_labels([answer.get("label")], allowed, "label")
        return labels[0]


def parse_json_object(text: str) -> dict:
    """Parse the one JSON object an answer must be; never eval anything."""
    if len(text) > _MAX_ANSWER_CHARS:
        raise LlmError(f"LLM answer too long ({len(text)} chars)")
    body = _FENCE.sub("", text.strip())
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        raise LlmError("LLM answer is not JSON") from None
    if not isinstance(value, dict):
        raise LlmError("LLM answer is not a JSON object")
    return value


def validate_labels(value: object, allowed: Sequence[str], field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LlmError(f"LLM field {field!r} is not a list of strings")
    allowed_set = {a.lower(): a for a in allowed}
    out = []
    for v in value:
        key = v.strip().lower()
        if key not in allowed_set:
            raise LlmError(f"LLM returned label {v[:40]!r} outside the allowed list")
        if allowed_set[key] not in out:
            out.append(allowed_set[key])
    return tuple(out)
