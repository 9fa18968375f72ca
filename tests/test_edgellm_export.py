"""`reasonseg_export.edgellm`: a tiny Qwen2.5-VL through NVIDIA TensorRT Edge-LLM's exporter (its own
environment, `scripts/setup_edgellm.sh`; these tests skip where it is absent), and its engines on a GPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonseg.core.model_cache import sha256
from reasonseg_export import edgellm
from tiny_models import tiny_qwen25_vl

EXPECTED_FILES = {
    "llm/model.onnx", "llm/model.onnx.data", "llm/config.json", "llm/embedding.safetensors", "llm/tokenizer.json",
    "llm/tokenizer_config.json", "llm/chat_template.jinja",
    "visual/model.onnx", "visual/model.onnx.data", "visual/config.json", "visual/preprocessor_config.json",
}


def _env_or_skip() -> Path:
    try:
        return edgellm.edgellm_env(None)
    except ValueError as exc:
        pytest.skip(f"the Edge-LLM environment is absent: {exc}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """20 M-parameter Qwen2.5-VL, saved in fp32 (the exporter needs fp16 / bf16: export_edgellm casts a copy)."""
    return tiny_qwen25_vl(tmp_path_factory.mktemp("edgellm") / "tiny_qwen25_vl")


@pytest.fixture(scope="module")
def exported(tiny: Path, tmp_path_factory) -> tuple[Path, list[Path]]:
    env = _env_or_skip()
    out = tmp_path_factory.mktemp("edgellm") / "export"
    return out, edgellm.export_edgellm(tiny, out, env=env, target="orin")


def test_export_writes_the_edgellm_files_and_a_manifest_that_lists_them(tiny: Path, exported) -> None:
    out, written = exported
    assert written == [out / "llm" / "model.onnx"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == EXPECTED_FILES | {"llm/model.onnx.manifest.json"}
    manifest = json.loads((out / "llm" / "model.onnx.manifest.json").read_text())
    assert manifest["format"] == "edgellm" and manifest["precision"] == "fp16"
    assert manifest["parity"]["checked"] is False and "target GPU" in manifest["parity"]["why"]
    assert manifest["model_type"] == "qwen2_5_vl" and manifest["target_sm"] == 87
    assert manifest["sha256"] == sha256(written[0])
    assert set(manifest["files"]) == EXPECTED_FILES
    assert all(manifest["files"][name] == sha256(out / name) for name in EXPECTED_FILES)
    assert manifest["exporter"]["tensorrt-edgellm"].startswith("0.11.")
    assert manifest["exporter"]["transformers"] == "5.14.1"
    assert manifest["build_command"] == edgellm.build_command(out, "orin")
    assert edgellm.checkpoint_dtype(tiny) == "float32"  # the bf16 copy was a temporary one


def test_exported_graphs_hold_edgellm_plugin_ops(exported) -> None:
    import onnx

    out, _ = exported
    for graph, plugin in (("llm", "AttentionPlugin"), ("visual", "ViTAttentionPlugin")):
        model = onnx.load(str(out / graph / "model.onnx"), load_external_data=False)
        assert edgellm.PLUGIN_DOMAIN in {o.domain for o in model.opset_import}
        assert plugin in {n.op_type for n in model.graph.node if n.domain == edgellm.PLUGIN_DOMAIN}


def test_build_command_names_the_export(tmp_path: Path) -> None:
    line = edgellm.build_command(tmp_path, "thor")
    assert "\n" not in line
    assert f"--onnxDir {tmp_path / 'llm'}" in line and f"--onnxDir {tmp_path / 'visual'}" in line
    assert f"--engineDir {tmp_path / 'engines'}" in line
    direct = edgellm.direct_build_command(tmp_path / "ckpt", tmp_path / "engines", "orin")
    assert direct.startswith(f"tensorrt-edgellm-build --model-dir {tmp_path / 'ckpt'} --engine-dir {tmp_path}")
    with pytest.raises(ValueError, match="orin, thor"):
        edgellm.build_command(tmp_path, "xavier")


def test_a_checkpoint_that_is_not_qwen_vl_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError) as caught:
        edgellm.export_edgellm(tmp_path, tmp_path / "out", env=tmp_path / "no-env")
    message = str(caught.value)
    assert "\n" not in message and "qwen2_5_vl" in message and "'llama'" in message
    assert not (tmp_path / "out").exists()


def test_a_missing_environment_is_one_line_naming_the_setup_script(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    monkeypatch.setenv(edgellm.ENV_VARIABLE, str(tmp_path / "absent-env"))
    for env in (None, tmp_path / "other-absent-env"):
        with pytest.raises(ValueError) as caught:
            edgellm.export_edgellm(tmp_path, tmp_path / "out", env=env)
        message = str(caught.value)
        assert "\n" not in message and "scripts/setup_edgellm.sh" in message
        assert str(env or tmp_path / "absent-env") in message


def test_engine_answers_on_an_nvidia_gpu(request, tmp_path: Path) -> None:
    reason = edgellm.engine_unavailable()
    if reason:
        with pytest.raises(RuntimeError) as caught:  # the same reason, one line, from run_engine itself
            edgellm.run_engine(tmp_path, "What is in the picture?")
        assert "\n" not in str(caught.value)
        pytest.skip(reason)
    from PIL import Image

    # the engines go on reading their weights from the checkpoint they were built from
    half = edgellm.half_copy(request.getfixturevalue("tiny"), tmp_path / "tiny_bf16")
    engines = edgellm.build_engine(half, tmp_path / "engines")
    assert (engines / "llm.engine").is_file() and (engines / "visual" / "visual.engine").is_file()
    image = tmp_path / "red.png"
    Image.new("RGB", (112, 112), (200, 30, 30)).save(image)
    text = edgellm.run_engine(engines, "What is in the picture?", checkpoint=half, image=image, max_tokens=8)
    assert isinstance(text, str)  # random weights: any text, but a whole generate round trip


def test_cli_export_without_the_environment_is_one_line(tiny: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from reasonseg_export.formats import main

    monkeypatch.setenv(edgellm.ENV_VARIABLE, str(tmp_path / "absent-env"))
    assert main(["edgellm", "--checkpoint", str(tiny), "--out", str(tmp_path / "out"), "--target", "thor"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scripts/setup_edgellm.sh" in err and err.startswith("reasonseg export:")
    assert main(["edgellm", "--checkpoint", str(tiny), "--out", str(tmp_path / "o"), "--precision", "int4"]) == 2


def test_cli_export_prints_the_engine_build_line(tiny: Path, tmp_path: Path, capsys) -> None:
    from reasonseg_export.formats import main

    _env_or_skip()
    out = tmp_path / "out"
    assert main(["edgellm", "--checkpoint", str(tiny), "--out", str(out), "--target", "thor"]) == 0
    printed = capsys.readouterr().out
    assert edgellm.build_command(out, "thor") in printed and (out / "llm/model.onnx.manifest.json").is_file()


def test_cli_exports_the_language_part_of_a_lens_checkpoint(tmp_path: Path) -> None:
    """A LENS checkpoint (release layout): its Qwen2.5-VL answer model goes to Edge-LLM; the second pass stays the
    ONNX graph `reasonseg export lens` writes."""
    from tiny_models import tiny_lens_release

    from reasonseg_export.formats import main

    _env_or_skip()
    ckpt, _ = tiny_lens_release(tmp_path / "lens", num_queries=4)
    out = tmp_path / "out"
    assert main(["edgellm", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    manifest = json.loads((out / "llm" / "model.onnx.manifest.json").read_text())
    assert manifest["model_type"] == "qwen2_5_vl" and set(manifest["files"]) == EXPECTED_FILES
