"""Chat client for any OpenAI-compatible endpoint, with strict answer validation.

Configured the standard way (OPENAI_BASE_URL, OPENAI_API_KEY) or by a base_url setting; the model name
comes from settings. No endpoint is ever assumed: without a base URL a client is not used. The key goes
only to the origin it was given for (`resolve_endpoint`). Every failure mode — endpoint down, slow past
the deadline, HTTP errors, oversized or cut answers, redirects off-origin, non-JSON, JSON nested too
deep, labels outside the allowed list — raises `LlmError` so the caller falls back to the local resolver
and records why. The key is never logged; URLs are redacted; model text in messages is cleaned.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from reasonseg.core.errors import ReasonSegError
from reasonseg.core.model_text import clean_model_text, json_too_deep
from reasonseg.grounding.llm import prompts
from reasonseg.grounding.llm.http import (
    HttpError,
    HttpStatusError,
    HttpTimeout,
    HttpUnreachable,
    post_json,
    redact_url,
    url_origin,
)

URL_ENV, KEY_ENV = "OPENAI_BASE_URL", "OPENAI_API_KEY"
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


@dataclass(frozen=True)
class Endpoint:
    """Where one client talks, and the key it sends there (None: no key)."""

    base_url: str
    api_key: str | None

    def __str__(self) -> str:  # for the start-up log: never the key
        return f"{redact_url(self.base_url)} ({'key: $' + KEY_ENV if self.api_key else 'no key'})"


def resolve_endpoint(base_url: str, key_home: Sequence[str],
                     env: Mapping[str, str] | None = None) -> Endpoint | None:
    """One client's endpoint: its own `base_url` setting, else $OPENAI_BASE_URL; neither -> None, the client is
    not used (no remote default is ever contacted).

    $OPENAI_API_KEY belongs to one origin: $OPENAI_BASE_URL's when that is set, else the first of `key_home`
    that is set (the base URLs the config names, in order: a served VLM's mllm.base_url, then llm.base_url).
    A client gets the key only when its endpoint has that origin, so the key never reaches a second party."""
    env = os.environ if env is None else env
    env_url = env.get(URL_ENV) or None
    url = base_url or env_url
    if not url:
        return None
    home = env_url or next((u for u in key_home if u), None)
    key = env.get(KEY_ENV) or None
    same = home is not None and url_origin(url) is not None and url_origin(url) == url_origin(home)
    return Endpoint(url, key if same else None)


class ChatLlm:
    def __init__(self, model: str, *, base_url: str, api_key: str | None, timeout_s: float,
                 max_tokens: int = 256) -> None:
        if not base_url:
            raise ValueError("an LLM client needs a base URL (no default endpoint is assumed)")
        self.model = model
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self._url = base_url.rstrip("/") + "/chat/completions"
        # A local server (vLLM, Ollama) often needs no key.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # a pasted key with a line break or non-ASCII cannot go into a header (http.client: a bare ValueError)
        self._key_problem = None if not api_key or all(" " <= c <= "~" for c in api_key) else (
            "OPENAI_API_KEY holds characters an HTTP header cannot carry (a line break, a control or non-ASCII "
            "character): check the variable")
        self.endpoint = redact_url(base_url)  # safe to log
        self._answers: dict[tuple, PreRefinement] = {}

    @classmethod
    def for_endpoint(cls, model: str, endpoint: Endpoint | None, *, timeout_s: float,
                     max_tokens: int = 256) -> "ChatLlm | None":
        """A client for a resolved endpoint; None when there is none."""
        if endpoint is None:
            return None
        return cls(model, base_url=endpoint.base_url, api_key=endpoint.api_key, timeout_s=timeout_s,
                   max_tokens=max_tokens)

    def complete(self, system: str, user: str) -> str:
        """One chat completion; `timeout_s` is a deadline for the whole exchange."""
        return self.chat([{"role": "system", "content": system}, {"role": "user", "content": user}])

    def chat(self, messages: list[dict], *, max_tokens: int | None = None, max_bytes: int = MAX_RESPONSE_BYTES,
             timeout_s: float | None = None) -> str:
        """The assistant's text for `messages` (text or OpenAI image content parts); raises LlmError.
        `timeout_s`: this exchange's deadline when shorter than the client's (what is left of a grounding's)."""
        if self._key_problem:
            raise LlmError(self._key_problem)
        payload = {"model": self.model, "temperature": 0, "max_tokens": max_tokens or self.max_tokens,
                   "messages": messages}
        deadline = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        try:
            resp = post_json(self._url, payload, headers=self._headers, deadline_s=deadline, max_bytes=max_bytes)
        except HttpTimeout:
            raise LlmError(f"LLM timed out ({round(deadline, 2)}s)") from None
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
    """Parse the one JSON object an answer must be; never eval anything. Nesting is bounded before decoding, and
    whatever the decoder still raises (RecursionError; ValueError for an integer of more than 4300 digits) is an
    LlmError like any other unusable answer."""
    if len(text) > _MAX_ANSWER_CHARS:
        raise LlmError(f"LLM answer too long ({len(text)} chars)")
    body = _FENCE.sub("", text.strip())
    if json_too_deep(body):
        raise LlmError("LLM answer is not JSON (nested too deep)")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
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
            raise LlmError(f"LLM returned label {clean_model_text(v, max_chars=40)!r} outside the allowed list")
        if allowed_set[key] not in out:
            out.append(allowed_set[key])
    return tuple(out)
