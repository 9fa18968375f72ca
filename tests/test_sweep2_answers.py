"""Issue 29, model answers and endpoints: the box convention of a served Qwen3-VL vs Qwen2.5-VL, an in-process
checkpoint of a family it does not run, absurd boxes, which endpoint gets which key, answers that break a
JSON parser, and control characters in what a model says. Real HTTP servers on 127.0.0.1 (tests/openai_server.py)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import unicodedata

import pytest

from openai_server import OpenAiServer, scripted_vlm
from reasonseg.core.settings import Settings
from reasonseg.settings.loading import with_overrides
from reasonseg.core.errors import CheckpointError
from reasonseg.grounding.llm.client import ChatLlm
from reasonseg.grounding.vlm.answer import MllmAnswerError, parse_answer
from targets import BOXES, mask_in_box

FRAME = (768, 576)  # dog.jpg (width, height): not square
DOG, TRUCK = BOXES[("dog.jpg", "dog")], BOXES[("dog.jpg", "truck")]


def _rel(box) -> tuple[float, float, float, float]:
    return box[0] / FRAME[0], box[1] / FRAME[1], box[2] / FRAME[0], box[3] / FRAME[1]


def _served(url: str, model: str = "scripted-vlm", pipeline: str = "mllm", *extra: str) -> Settings:
    return with_overrides(Settings(), [f"pipeline={pipeline}", "mllm.backend=openai", f"mllm.model={model}",
                                       f"mllm.base_url={url}", "mllm.timeout_s=3.0", *extra])


def _clean(text: str) -> bool:
    """No control, format (bidi, zero-width) or line-separator character."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


# -- 1. box conventions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, answers, extra, chosen", [
    ("Qwen/Qwen3-VL-8B-Instruct", "relative_1000", (), "relative_1000"),
    ("qwen3-vl:8b", "relative_1000", (), "relative_1000"),                     # Ollama's tag
    ("Qwen/Qwen3-VL-30B-A3B-Instruct-FP8", "relative_1000", (), "relative_1000"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "absolute", (), "absolute"),
    ("qwen2.5vl:7b", "absolute", (), "absolute"),
    ("my-grounder", "absolute", (), "absolute"),                               # opaque: today's reading, said
    ("my-grounder", "relative_1000", ("mllm.box_format=relative_1000",), "relative_1000"),
    ("Qwen/Qwen3-VL-8B-Instruct", "absolute", ("mllm.box_format=absolute",), "absolute"),
])
def test_served_box_format_lands_on_the_named_object(photos, load_rgb, caplog, model, answers, extra, chosen):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"dog": _rel(DOG), "truck": _rel(TRUCK)}, coords=answers)
        with caplog.at_level(logging.INFO):
            pipeline = build_pipeline(_served(srv.base_url, model, "mllm", *extra))
        said = [r.getMessage() for r in caplog.records if "box_format" in r.getMessage()]
        assert len(said) == 1 and chosen in said[0], said
        if model == "my-grounder" and not extra:
            assert "cannot tell" in said[0]
        image = load_rgb(photos / "dog.jpg")
        for target, box in (("truck", TRUCK), ("dog", DOG)):
            res = pipeline.run(image, f"the {target}")
            assert res.valid and res.grounding.pipeline == "mllm", res.grounding
            assert max(abs(a - b) for a, b in zip(res.box, box)) < 6, (res.box, box)
            mask_in_box(res.mask, box)


@pytest.mark.parametrize("frame", [(1280, 480), (480, 1280), (333, 777)])
def test_relative_1000_maps_to_the_original_frame(frame):
    fw, fh = frame
    text = json.dumps([{"bbox_2d": [100, 250, 600, 750], "point_2d": [350, 500], "label": "x"}])
    (obj,) = parse_answer(text, sent_size=(644, 252), frame_size=frame, box_format="relative_1000").objects
    assert obj.box == pytest.approx((0.1 * fw, 0.25 * fh, 0.6 * fw, 0.75 * fh))
    assert obj.points == (pytest.approx((0.35 * fw, 0.5 * fh)),)


def _config_dir(tmp_path, model_type: str):
    from transformers import AutoConfig

    path = tmp_path / model_type
    AutoConfig.for_model(model_type).save_pretrained(path)  # config.json only: no processor, no weights
    assert {p.name for p in path.iterdir()} == {"config.json"}
    return path


@pytest.mark.parametrize("model_type", ["llava", "qwen2"])
def test_in_process_model_of_another_family_is_refused_at_load(tmp_path, caplog, model_type):
    from reasonseg.pipelines.registry import build_pipeline

    path = _config_dir(tmp_path, model_type)
    sets = ["mllm.backend=transformers", f"mllm.model={path}", "mllm.device=cpu"]
    with pytest.raises(CheckpointError, match="not a Qwen-VL checkpoint") as err:
        build_pipeline(with_overrides(Settings(), ["pipeline=mllm", *sets]))
    assert "\n" not in str(err.value) and model_type in str(err.value) and "qwen3_vl" in str(err.value), err.value
    with caplog.at_level(logging.WARNING):  # auto: skipped with that reason, the next pipeline serves
        assert build_pipeline(with_overrides(Settings(), ["pipeline=auto", *sets])).name == "refine"
    assert any("not a Qwen-VL checkpoint" in r.getMessage() for r in caplog.records)


# -- 2. absurd boxes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, box_format, match", [
    ('[{"bbox_2d": [0, 0, 1e308, 1e308]}]', "absolute", "outside"),
    ("[0, 0, 1e308, 1e308]", "absolute", "outside"),
    ('[{"bbox_2d": [-300, -200, 330, 250]}]', "absolute", "outside"),          # 27 % inside the 320x240 image
    ('[{"bbox_2d": [0, 0, 5000, 5000]}]', "relative_1000", "outside"),         # 4 % inside 0..1000
    ('[{"bbox_2d": [0, 0, Infinity, Infinity]}]', "absolute", "non-finite"),
    ('[{"bbox_2d": [0, 0, NaN, 10]}]', "absolute", "non-finite"),
    ('[{"bbox_2d": [0, 0, 1' + "0" * 400 + ", 10]}]", "absolute", "non-finite"),  # an int no float holds
    ('[{"bbox_2d": [0, 0, 10, 10], "point_2d": [1' + "0" * 400 + ", 5]}]", "absolute", "non-finite"),
])
def test_a_box_mostly_outside_the_image_is_unusable(text, box_format, match):
    with pytest.raises(MllmAnswerError, match=match):
        parse_answer(text, sent_size=(320, 240), frame_size=(640, 480), box_format=box_format)


def test_a_box_mostly_inside_is_clamped():
    (obj,) = parse_answer('[{"bbox_2d": [-100, 0, 150, 240]}]', sent_size=(320, 240), frame_size=(640, 480)).objects
    assert obj.box == (0, 0, 300, 480)  # 60 % inside: clamped, then mapped to the frame


def test_absurd_served_box_falls_back_with_the_reason(photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = lambda m: '[{"bbox_2d": [0, 0, 1e308, 1e308], "label": "dog"}]'
        res = build_pipeline(_served(srv.base_url, pipeline="auto")).run(load_rgb(photos / "dog.jpg"), "the dog")
    assert res.grounding.pipeline == "refine" and "mostly outside" in res.grounding.source, res.grounding.source
    mask_in_box(res.mask, DOG)


# -- 3. which endpoint gets which key ------------------------------------------------------------------------
def _two_servers():
    """A (the VLM of mllm_served.yaml: answers nothing usable to an image, labels to text) and B (another
    origin: stands for the public API a text LLM would default to, or a second configured endpoint)."""
    a, b = OpenAiServer(), OpenAiServer()
    labels = json.dumps({"labels": ["dog"], "reference_labels": []})
    a.behaviour = lambda m: "I cannot see it." if isinstance(m[-1]["content"], list) else labels
    b.behaviour = lambda m: labels
    return a, b


@pytest.mark.parametrize("case", ["mllm_url_only", "env_url_is_llm", "llm_url_other_origin", "llm_url_same_origin"])
def test_a_key_goes_only_to_the_endpoint_it_was_given_for(photos, load_rgb, monkeypatch, caplog, case):
    from reasonseg.pipelines.registry import build_pipeline

    key = "sk-local-vlm-secret"
    a, b = _two_servers()
    with a, b:
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        monkeypatch.setenv("OPENAI_API_KEY", key)
        # the old default endpoint, were one still contacted, lands on B instead of the public API
        monkeypatch.setattr("reasonseg.grounding.llm.client.DEFAULT_BASE_URL", b.base_url, raising=False)
        extra: list[str] = []
        if case == "env_url_is_llm":  # the key is the one for $OPENAI_BASE_URL: the VLM elsewhere gets none
            monkeypatch.setenv("OPENAI_BASE_URL", b.base_url)
        elif case == "llm_url_other_origin":
            extra.append(f"llm.base_url={b.base_url}")
        elif case == "llm_url_same_origin":
            extra.append(f"llm.base_url={a.base_url}")
        with caplog.at_level(logging.INFO):
            pipeline = build_pipeline(_served(a.base_url, "scripted-vlm", "auto", *extra))
            res = pipeline.run(load_rgb(photos / "dog.jpg"), "the dog")
        a_auth = {r["auth"] for r in a.requests}
        b_auth = {r["auth"] for r in b.requests}
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert key not in logs and key not in repr(res.grounding)
    assert res.grounding.pipeline == "refine" and "mllm failed" in res.grounding.source
    mask_in_box(res.mask, DOG)
    if case == "mllm_url_only":  # the shipped served YAML as it is: the text LLM has no endpoint -> local
        assert a_auth == {f"Bearer {key}"} and b_auth == set()
        assert res.grounding.source.startswith("local"), res.grounding.source
        assert "LLM=none" in logs
    elif case == "env_url_is_llm":
        assert a_auth == {None} and b_auth == {f"Bearer {key}"}
        assert res.grounding.source.startswith("llm"), res.grounding.source
    elif case == "llm_url_other_origin":  # the key belongs to the VLM's origin; B is another party
        assert a_auth == {f"Bearer {key}"} and b_auth == {None}
        assert res.grounding.source.startswith("llm"), res.grounding.source
    else:
        assert a_auth == {f"Bearer {key}"} and b_auth == set()
        assert res.grounding.source.startswith("llm") and len(a.requests) == 2
    assert f"127.0.0.1:{a.port}" in logs  # the start-up log names each client's endpoint


@pytest.mark.parametrize("own, env_url, home, key_sent", [
    ("http://vlm:8000/v1", "", "http://vlm:8000/v1", True),
    ("http://vlm:8000/other", "", "http://VLM:8000/v1", True),          # same origin, another path
    ("https://api.example.com/v1", "", "https://api.example.com:443/v1", True),
    ("http://vlm:8001/v1", "", "http://vlm:8000/v1", False),            # another port
    ("https://vlm:8000/v1", "", "http://vlm:8000/v1", False),           # another scheme
    ("http://vlm:8000/v1", "https://api.example.com/v1", "http://vlm:8000/v1", False),  # the env URL owns the key
    ("", "https://api.example.com/v1", "http://vlm:8000/v1", True),     # the client uses the env URL itself
    ("not a url", "", "not a url", False),
])
def test_key_origin_rule(own, env_url, home, key_sent):
    from reasonseg.grounding.llm.client import resolve_endpoint

    key = "sk-rule-secret"
    env = {"OPENAI_API_KEY": key, **({"OPENAI_BASE_URL": env_url} if env_url else {})}
    endpoint = resolve_endpoint(own, ("", home), env)
    assert endpoint.base_url == (own or env_url) and (endpoint.api_key == key) == key_sent
    assert key not in str(endpoint) and ("key: $OPENAI_API_KEY" in str(endpoint)) == key_sent  # the log line
    assert resolve_endpoint("", (home,), {"OPENAI_API_KEY": key}) is None  # no URL: no client, no default


def test_no_remote_default_endpoint_without_a_base_url(monkeypatch):
    from reasonseg.pipelines.registry import build_pipeline

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-only-a-key")
    assert build_pipeline(with_overrides(Settings(), ["pipeline=refine"])).llm is None


# -- 4. answers that break a parser -------------------------------------------------------------------------
DEEP = "[" * 3000 + "]" * 3000
HUGE_INT = "9" * 5000
BREAKERS = [DEEP, '{"labels": ' + DEEP + "}", '{"labels": ["dog"], "n": ' + HUGE_INT + "}",
            '{"labels": [' + HUGE_INT + "]}", '{"labels": ["dog"], "x": {"y": ' + "{" * 2000 + "}" * 2000 + "}}"]


@pytest.mark.parametrize("answer", BREAKERS, ids=["deep", "deep_labels", "huge_int", "huge_int_label", "deep_obj"])
def test_text_llm_answer_that_breaks_json_falls_to_the_local_resolver(refine_pipeline, photos, load_rgb, answer):
    with OpenAiServer() as srv:
        srv.behaviour = lambda m: answer
        refine_pipeline.llm = ChatLlm("m", base_url=srv.base_url, api_key=None, timeout_s=3.0)
        try:
            res = refine_pipeline.run(load_rgb(photos / "dog.jpg"), "the dog")
        finally:
            refine_pipeline.llm = None
        assert srv.requests, "the LLM was not asked"
    assert res.valid and res.grounding.source.startswith("local_fallback"), res.grounding.source
    mask_in_box(res.mask, DOG)


@pytest.mark.parametrize("answer", [DEEP, '[{"bbox_2d": [0, 0, ' + HUGE_INT + ", 10]}]",
                                    '<answer>{"bbox": ' + DEEP + "}</answer>"])
def test_vlm_answer_that_breaks_json_is_an_answer_error(answer):
    with pytest.raises(MllmAnswerError):
        parse_answer(answer, sent_size=(320, 240), frame_size=(640, 480))


def test_any_failure_of_the_llm_step_ends_in_the_local_resolver(refine_pipeline, photos, load_rgb):
    """Whatever the exception type out of the answer handling, refine's next stage answers."""

    class Surprising(ChatLlm):
        def pre_refine(self, instruction, tags, allowed):
            raise KeyError("a key the answer handling did not expect")

    refine_pipeline.llm = Surprising("m", base_url="http://127.0.0.1:9/v1", api_key=None, timeout_s=1.0)
    try:
        res = refine_pipeline.run(load_rgb(photos / "dog.jpg"), "the dog")
    finally:
        refine_pipeline.llm = None
    assert res.valid and res.grounding.source.startswith("local_fallback") and "KeyError" in res.grounding.source
    mask_in_box(res.mask, DOG)


# -- 12. control characters from a model ---------------------------------------------------------------------
HOSTILE = "\x1b[31mdog\x1b[0m\x1b]0;owned\x07\r\n[ERROR] reasonseg: forged line\u202egod\u2066\x9b2J\x00"


def _hostile_vlm(messages: list[dict]) -> str:
    good = json.loads(scripted_vlm({"dog": _rel(DOG)})(messages).strip("`json\n"))
    good[0]["label"] = HOSTILE
    return f"<think>{HOSTILE} because\r\n[ERROR] x</think><answer>{json.dumps(good)}</answer>"


def test_control_characters_from_the_vlm_never_reach_the_result(photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = _hostile_vlm
        res = build_pipeline(_served(srv.base_url)).run(load_rgb(photos / "dog.jpg"), "the dog")
    g = res.grounding
    texts = [*res.labels, *g.labels, g.reasoning, g.source, *(t.label for t in g.targets),
             *(i.label for i in res.instances)]
    assert res.valid and all(_clean(t) for t in texts), texts
    assert "dog" in res.labels[0] and "[ERROR]" in res.labels[0]  # kept as text on one line, not as a log line


def test_control_characters_from_the_text_llm_never_reach_the_source(refine_pipeline, photos, load_rgb):
    with OpenAiServer() as srv:
        srv.behaviour = lambda m: json.dumps({"labels": [HOSTILE], "reference_labels": []})
        refine_pipeline.llm = ChatLlm("m", base_url=srv.base_url, api_key=None, timeout_s=3.0)
        try:
            res = refine_pipeline.run(load_rgb(photos / "dog.jpg"), "the dog")
        finally:
            refine_pipeline.llm = None
    assert res.grounding.source.startswith("local_fallback") and _clean(res.grounding.source), res.grounding.source
    assert "\\x1b" not in res.grounding.source


def test_control_characters_from_the_vlm_never_reach_cli_stdout(photos, tmp_path):
    """Several images: the CLI prints its summary table with each label."""
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(photos / "dog.jpg", tmp_path / name)
    with OpenAiServer() as srv:
        srv.behaviour = _hostile_vlm
        proc = subprocess.run(
            [sys.executable, "-m", "reasonseg.cli.main", "segment", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"),
             "the dog", "--out", str(tmp_path / "out"), "--pipeline", "mllm", "--set", "mllm.backend=openai",
             "--set", "mllm.model=scripted-vlm", "--set", f"mllm.base_url={srv.base_url}",
             "--set", "segmenter.kind=lite_sam"],
            capture_output=True, text=True, timeout=180, env={**os.environ, "OPENAI_API_KEY": ""})
    assert proc.returncode == 0, proc.stderr
    assert "dog" in proc.stdout
    for stream in (proc.stdout, proc.stderr):
        assert all(_clean(line) for line in stream.splitlines()), stream
        assert not any(line.lstrip().startswith("[ERROR]") for line in stream.splitlines())
    for path in (tmp_path / "out").rglob("*.json"):
        assert all(_clean(t) for t in _strings(json.loads(path.read_text()))), path


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [s for v in items for s in _strings(v)]
