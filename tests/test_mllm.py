"""`mllm` pipeline: answer formats, the resize -> answer -> frame mapping, a scripted VLM behind a real
OpenAI-compatible HTTP server on 127.0.0.1, and every fallback of `auto` with its reason."""
from __future__ import annotations

import dataclasses

import json
import socket

import numpy as np
import pytest

from openai_server import OpenAiServer, scripted_vlm
from reasonseg.core.settings import Settings
from reasonseg.settings.loading import with_overrides
from reasonseg.core.errors import ConfigError
from reasonseg.grounding.vlm.answer import MllmAnswerError, parse_answer, smart_resize
from targets import BOXES, mask_in_box

FRAME = (768, 576)  # dog.jpg (width, height)


def _rel(photo: str, target: str, size=FRAME) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = BOXES[(photo, target)]
    return x0 / size[0], y0 / size[1], x1 / size[0], y1 / size[1]


@pytest.mark.parametrize("text, box, points, label", [
    ('[{"bbox_2d": [10, 20, 110, 220], "point_2d": [60, 120], "label": "dog"}]', (10, 20, 110, 220), ((60, 120),), "dog"),
    ('```json\n[{"bbox_2d": [10, 20, 110, 220], "label": "dog"}]\n```', (10, 20, 110, 220), (), "dog"),
    ('<think>left one</think><answer>{"bbox": [10, 20, 110, 220], "points_1": [30, 40], "points_2": [50, 60]}</answer>',
     (10, 20, 110, 220), ((30, 40), (50, 60)), ""),
    ("<think>hm</think> The box is [10, 20, 110, 220] I believe.", (10, 20, 110, 220), (), ""),
    ("(10, 20, 110, 220)", (10, 20, 110, 220), (), ""),
    ("the dog(10,20),(110,220)", (10, 20, 110, 220), (), ""),  # Qwen's native form, box tokens dropped
    ("first (10, 20), (110, 220) then (1, 2, 3, 4)", (10, 20, 110, 220), (), ""),  # the first box wins
    ('Sure! {"bbox_2d": [-5, 20, 330, 220]}', (0, 20, 320, 220), (), ""),  # mostly inside: clamped to the 320x240 image
])
def test_answer_formats(text, box, points, label):
    ans = parse_answer(text, sent_size=(320, 240), frame_size=(320, 240))
    (obj,) = ans.objects
    assert obj.box == box and obj.points == points and obj.label == label
    assert ans.reasoning in ("", "left one", "hm")


@pytest.mark.parametrize("text, match", [
    ("", "empty"), ("I cannot tell.", "unparseable"), ('[{"bbox_2d": [1, 2, "x", 4]}]', "4 numbers"),
    ('[{"bbox_2d": [NaN, 2, 3, 4]}]', "non-finite"), ('[{"bbox_2d": [400, 300, 500, 400]}]', "outside"),
    ('[{"bbox_2d": [50, 50, 10, 10]}]', "x1 <= x2"), ('[{"point_2d": [1, 2]}]', "no bbox"),
    (json.dumps([{"bbox_2d": [0, 0, 10, 10]}] * 9), "max_instances"), ('["dog"]', "JSON objects"),
    ("x" * 30_000, "too long"), ("[" * 15_000, "unparseable"), ("{" * 5_000 + "]" * 5_000, "unparseable"),
])
def test_bad_answers_are_unparseable_not_crashes(text, match):
    with pytest.raises(MllmAnswerError, match=match):
        parse_answer(text, sent_size=(320, 240), frame_size=(320, 240), max_instances=8)


def test_empty_list_means_not_in_the_image():
    assert parse_answer("[]", sent_size=(320, 240), frame_size=(640, 480)).objects == ()


def test_labels_are_data_and_bounded():
    text = json.dumps([{"bbox_2d": [1, 2, 30, 40], "label": "dog\n" + "x" * 500}])
    (obj,) = parse_answer(text, sent_size=(320, 240), frame_size=(320, 240)).objects
    assert obj.label.startswith("dog x") and len(obj.label) == 80
    # a lone surrogate as the HTTP body's JSON decodes "\\udcff", and one as an escape inside the answer's JSON
    text = "<think>bad \udcff bytes</think>" + '[{"bbox_2d": [1, 2, 30, 40], "label": "d\\ud800g"}]'
    ans = parse_answer(text, sent_size=(320, 240), frame_size=(320, 240))
    assert ans.objects[0].label == "d?g" and ans.reasoning == "bad ? bytes"  # lone surrogates: not encodable
    (ans.objects[0].label + ans.reasoning).encode("utf-8")


@pytest.mark.parametrize("width, height", [(640, 480), (1920, 1080), (500, 1500), (333, 777), (4000, 300)])
def test_resize_answer_frame_mapping_on_non_square_frames(width, height):
    h, w = smart_resize(height, width, min_pixels=56 * 56, max_pixels=1280 * 28 * 28)
    assert h % 28 == 0 and w % 28 == 0 and 56 * 56 <= h * w <= 1280 * 28 * 28
    assert abs((w / h) / (width / height) - 1) < 0.2  # aspect ratio kept as far as 28-px rounding allows
    rel = (0.25, 0.1, 0.75, 0.6)  # an object at fixed relative coordinates, answered in the sent image's pixels
    sent_box = [round(rel[0] * w), round(rel[1] * h), round(rel[2] * w), round(rel[3] * h)]
    (obj,) = parse_answer(json.dumps([{"bbox_2d": sent_box}]), sent_size=(w, h), frame_size=(width, height)).objects
    expected = (rel[0] * width, rel[1] * height, rel[2] * width, rel[3] * height)
    assert np.allclose(obj.box, expected, atol=0.6 * max(width / w, height / h) + 1e-6), (obj.box, expected)


@pytest.fixture()
def vlm_server():
    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"dog": _rel("dog.jpg", "dog"), "truck": _rel("dog.jpg", "truck")})
        yield srv


def _settings(url: str, pipeline: str = "mllm", **mllm) -> Settings:
    sets = [f"pipeline={pipeline}", "mllm.backend=openai", "mllm.model=scripted-vlm", f"mllm.base_url={url}",
            "mllm.timeout_s=2.0",
            *[f"mllm.{k}={v}" for k, v in mllm.items()]]
    return with_overrides(Settings(), sets)


@pytest.mark.parametrize("style", ["qwen", "seg_zero"])
def test_mllm_pipeline_masks_the_named_object(vlm_server, photos, load_rgb, style):
    from reasonseg.pipelines.registry import build_pipeline

    vlm_server.behaviour = scripted_vlm({"dog": _rel("dog.jpg", "dog"), "truck": _rel("dog.jpg", "truck")}, style=style)
    pipeline = build_pipeline(_settings(vlm_server.base_url, chain_of_thought=style == "seg_zero"))
    image = load_rgb(photos / "dog.jpg")
    for target in ("dog", "truck"):
        res = pipeline.run(image, f"the {target} in this picture")
        assert res.valid and res.grounding.pipeline == "mllm" and res.grounding.source == "mllm:openai"
        mask_in_box(res.mask, BOXES[("dog.jpg", target)])
        x0, y0, x1, y1 = res.box
        bx0, by0, bx1, by1 = BOXES[("dog.jpg", target)]
        assert abs(x0 - bx0) < 6 and abs(y1 - by1) < 6  # the answer mapped back to frame pixels
    sent = json.loads(json.dumps(vlm_server.requests[-1]["body"]))
    content = sent["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert ("<think>" in content[1]["text"]) == (style == "seg_zero")
    res = pipeline.run(image, "the giraffe")  # not named by the scripted VLM: honestly not found
    assert not res.valid and not res.mask.any() and "not in the image" in res.note


@pytest.mark.parametrize("behaviour, reason", [
    ("down", "unreachable"), ("slow", "timed out"), ("http500", "HTTP 500"),
    (lambda m: "I see a dog somewhere.", "unparseable"),
    (lambda m: '[{"bbox_2d": [5000, 5000, 6000, 6000]}]', "outside"),
])
def test_auto_falls_back_to_refine_and_says_why(vlm_server, photos, load_rgb, behaviour, reason):
    from reasonseg.pipelines.registry import build_pipeline

    url = vlm_server.base_url
    if behaviour == "down":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    else:
        vlm_server.behaviour, vlm_server.slow_s = behaviour, 4.0
    pipeline = build_pipeline(_settings(url, pipeline="auto"))
    assert pipeline.name == "auto(mllm>refine)"
    res = pipeline.run(load_rgb(photos / "dog.jpg"), "the dog")
    assert res.valid and res.grounding.pipeline == "refine", res.grounding
    assert "mllm failed" in res.grounding.source and reason in res.grounding.source, res.grounding.source
    mask_in_box(res.mask, BOXES[("dog.jpg", "dog")])


def test_mllm_needs_a_model_and_an_endpoint(monkeypatch):
    from reasonseg.pipelines.registry import build_pipeline

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="needs mllm.model"):
        build_pipeline(with_overrides(Settings(), ["pipeline=mllm"]))
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        build_pipeline(with_overrides(Settings(), ["pipeline=mllm", "mllm.backend=openai", "mllm.model=x"]))
    # auto: a configured mllm that cannot load is skipped, refine serves
    assert build_pipeline(with_overrides(Settings(), ["mllm.backend=openai", "mllm.model=x"])).name == "refine"


def test_node_with_mllm_pipeline_over_dds(tmp_path, photos, load_rgb, sam2_dir):
    """The shipped served-VLM YAML in the node (a tiny random SAM2 for sam2.1-hiera-tiny): the named object is
    grounded, SAM2 tracks it, and a slow re-grounding never stalls the masks."""
    import yaml

    from rosnode_harness import Client, mask_array, stamp_of, start_node, stop_node, unique_domain_id
    from reasonseg_perception.launch_runner import bringup_share

    pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"truck": _rel("dog.jpg", "truck")})
        data = yaml.safe_load((bringup_share() / "config" / "mllm_served.yaml").read_text())
        params = data["/**"]["ros__parameters"]
        params["mllm"].update(base_url=srv.base_url, timeout_s=6.0)
        params["segmenter"].update(model=str(sam2_dir), device="cpu")
        params["runtime"]["reground_period_s"] = 1.0
        path = tmp_path / "mllm.yaml"
        path.write_text(yaml.safe_dump(data))
        domain = unique_domain_id()
        proc, log = start_node(tmp_path, domain, params_file=path)
        client = Client(domain)
        try:
            client.wait_node_ready(proc)
            bgr = load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()
            client.instruct("the white truck")

            def valid():
                return client.results_of("mllm", valid_only=True)

            client.pump(bgr, lambda: bool(valid()), period=0.2)
            (first, *_) = valid()
            assert list(first.labels) == ["truck"] and first.grounding_source == "mllm:openai"
            assert client.wait_for(lambda: any(stamp_of(m) == stamp_of(first) for _, m in client.masks), 5)
            mask = next(m for _, m in client.masks if stamp_of(m) == stamp_of(first))
            assert mask_array(mask).shape == bgr.shape[:2] and mask_array(mask).any()  # random weights: any shape
            srv.behaviour, srv.slow_s = "slow", 4.0  # every re-grounding now takes 4 s
            n_requests = len(srv.requests)
            client.clear()
            client.stream(bgr, 5.0)
            assert len(srv.requests) > n_requests, "no re-grounding was asked for"
            assert len(valid()) >= 3, "masks stalled behind the slow re-grounding"
            assert "Traceback" not in log.read_text()
        finally:
            client.close()
            stop_node(proc)


@pytest.mark.parametrize("behaviour", ["hang", "drip", "huge", "huge_chunked", "gzip_bomb", "cut"])
def test_hostile_vlm_endpoint_is_cut_at_the_deadline_and_size_bound(vlm_server, photos, load_rgb, behaviour,
                                                                    monkeypatch):
    """A 50 MB answer, a never-ending drip or a hang: the grounding ends within mllm.timeout_s, refine answers,
    and the key never shows in the result."""
    import time

    from reasonseg.pipelines.registry import build_pipeline

    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostile-vlm-secret")
    vlm_server.behaviour = behaviour
    settings = _settings(vlm_server.base_url, pipeline="auto")
    pipeline = build_pipeline(settings)
    image = load_rgb(photos / "dog.jpg")
    t0 = time.monotonic()  # the fallback's own cost on this machine, now (a shared CPU can be slow)
    build_pipeline(dataclasses.replace(settings, pipeline="refine")).run(image, "the dog")
    refine_s = time.monotonic() - t0
    t0 = time.monotonic()
    res = pipeline.run(image, "the dog")
    assert time.monotonic() - t0 < settings.mllm.timeout_s + refine_s + 2.0  # cut at the deadline, then refine
    assert res.grounding.pipeline == "refine" and "mllm failed" in res.grounding.source
    assert vlm_server.requests[-1]["auth"] == "Bearer sk-hostile-vlm-secret"  # sent to the endpoint only
    assert "sk-hostile" not in repr(res.grounding) + res.note
    mask_in_box(res.mask, BOXES[("dog.jpg", "dog")])
