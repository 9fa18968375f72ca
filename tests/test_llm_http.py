"""The LLM client against a hostile OpenAI-compatible server on 127.0.0.1: deadline, size bounds, redirects."""
from __future__ import annotations

import logging
import time
import tracemalloc

import pytest

from openai_server import HOSTILE, OpenAiServer
from reasonseg.grounding.llm.client import ChatLlm, LlmError
from reasonseg.grounding.llm.http import redact_url

LABELS = ("person", "dog", "truck")
TIMEOUT_S = 1.5


@pytest.fixture()
def server():
    with OpenAiServer() as srv:
        yield srv


def _llm(url: str, timeout: float = TIMEOUT_S) -> ChatLlm:
    return ChatLlm("test-model", base_url=url, api_key="sk-hostile-test", timeout_s=timeout)


@pytest.mark.parametrize("behaviour", HOSTILE)
def test_hostile_endpoint_fails_within_deadline_and_bounded_memory(server, behaviour):
    server.behaviour = behaviour
    server.bomb  # build the gzip bomb outside the measured region
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(LlmError) as info:
            _llm(server.base_url).pre_refine("the dog", ["dog"], LABELS)
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < TIMEOUT_S + 0.5, f"{behaviour}: took {elapsed:.1f}s ({info.value})"
    assert peak < 8 * 1024 * 1024, f"{behaviour}: peak {peak / 1e6:.1f} MB allocated"
    expected = {"http429": "HTTP 429", "hang": "timed out", "drip": "timed out", "cut": "cut short",
                "huge": "too large", "huge_chunked": "too large", "gzip_bomb": "too large"}[behaviour]
    assert expected in str(info.value)


def test_gzip_answer_within_bounds_is_read(server):
    """A server may gzip although asked not to: a small compressed answer is fine."""
    server.behaviour = "gzip_ok"
    assert _llm(server.base_url).pre_refine("the dog", ["dog"], LABELS).labels == ("dog",)


def test_redirect_to_another_origin_is_not_followed(server):
    with OpenAiServer() as other:
        other.behaviour = "redirect"  # would answer on /v2/
        server.behaviour, server.redirect_to = "redirect", f"http://127.0.0.1:{other.port}/v2/chat/completions"
        with pytest.raises(LlmError, match="another origin"):
            _llm(server.base_url).pre_refine("the dog", ["dog"], LABELS)
        assert other.requests == [], "the request (and its key) went to the other origin"


def test_same_origin_redirect_is_followed(server):
    server.behaviour, server.redirect_to = "redirect", "/v2/chat/completions"
    assert _llm(server.base_url).pre_refine("the dog", ["dog"], LABELS).labels == ("dog",)
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions", "/v2/chat/completions"]
    assert server.requests[-1]["auth"] == "Bearer sk-hostile-test"


def test_credentials_in_url_are_used_but_never_shown(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.behaviour = "http429"
    url = server.base_url.replace("http://", "http://robot:s3cret-pw@")
    llm = ChatLlm("m", base_url=url, api_key=None, timeout_s=TIMEOUT_S)
    with pytest.raises(LlmError) as info:
        llm.pre_refine("the dog", ["dog"], LABELS)
    assert server.requests[-1]["auth"].startswith("Basic ")
    assert "s3cret" not in str(info.value) + llm.endpoint + caplog.text
    assert redact_url("https://u:k@api.example.com:8443/v1?key=abc") == "https://***@api.example.com:8443/v1?***"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
