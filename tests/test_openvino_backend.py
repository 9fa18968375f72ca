"""segmenter.backend=openvino: the exported LiteSAM graphs in OpenVINO's CPU plugin (real compiled models), fp32
at parity with onnxruntime, bf16 judged by mask IoU where the CPU runs bf16 natively, `auto` choosing from the
manifest, and one clear line for what it cannot run."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed (the `cpu` extra brings it)")

from reasonseg import openvino_graph  # noqa: E402
from reasonseg.config import SegmenterSettings  # noqa: E402
from reasonseg.errors import CheckpointError, ConfigError, ModelCacheError  # noqa: E402
from reasonseg.export.formats import read_photos  # noqa: E402
from reasonseg.export.lite_sam import ENCODER, FP32_MAX_REL, export_bf16, to_openvino_ir  # noqa: E402
from reasonseg.export.manifest import manifest_path, read_manifest, write_manifest  # noqa: E402
from reasonseg.export.parity import require_close  # noqa: E402
from reasonseg.model_cache import read_manifest as read_cache_manifest, record_files  # noqa: E402
from reasonseg.model_cache import write_manifest as write_cache_manifest  # noqa: E402
from reasonseg.onnx_session import open_session  # noqa: E402
from reasonseg.openvino_graph import OvGraph, native_bf16  # noqa: E402
from reasonseg.prompt import Prompt  # noqa: E402
from reasonseg.segmenter_factory import auto_backend, build_segmenter, openvino_encoder  # noqa: E402
from reasonseg.segmenters import DECODER_FILE, DECODER_INPUTS, OnnxLiteSam  # noqa: E402
from test_lite_sam import TINY  # noqa: E402

needs_native_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (AVX512_BF16 / AMX)")


def test_fp32_graphs_match_onnxruntime(tiny_export: Path) -> None:
    rng = np.random.default_rng(0)
    s = TINY.img_size
    enc_feed = {"image": rng.standard_normal((1, 3, s, s)).astype(np.float32)}
    (emb,) = open_session(tiny_export / ENCODER, "enc").run(None, enc_feed)
    dec_feed = dict(zip(DECODER_INPUTS, (emb, (rng.random((1, 3, 2)) * s).astype(np.float32),
                                         np.array([[1.0, 2.0, 3.0]], np.float32))))
    for name, feed in ((ENCODER, enc_feed), (DECODER_FILE, dec_feed)):
        ours = OvGraph(tiny_export / name, name).run(None, feed)
        ref = open_session(tiny_export / name, name).run(None, feed)
        assert len(ours) == len(ref)
        for a, b in zip(ref, ours):
            require_close(name, a, b, FP32_MAX_REL)


@needs_native_bf16
def test_bf16_export_is_an_ir_judged_by_mask_iou_and_runs(tiny_weights, tiny_export, photos, tmp_path,
                                                           load_rgb) -> None:
    shutil.copytree(tiny_export, tmp_path, dirs_exist_ok=True)
    ir = export_bf16(tmp_path, read_photos(photos, limit=2), tiny_weights)
    assert ir.name == "encoder.bf16.xml" and ir.with_suffix(".bin").is_file()
    record = read_manifest(ir)
    assert record["precision"] == "bf16" and record["runtime"].startswith("openvino ")
    assert record["parity"]["prompts"] == 12 and 0.0 <= record["parity"]["mask_iou_mean"] <= 1.0
    seg = OnnxLiteSam(OvGraph(ir, "enc", precision="bf16"), OvGraph(tmp_path / DECODER_FILE, "dec", precision="bf16"))
    image = load_rgb(photos / "dog.jpg")
    assert seg.predict(seg.encode(image), Prompt(box=(100, 100, 400, 400))).mask.shape == image.shape[:2]


def test_bf16_is_refused_where_the_cpu_would_not_run_it(tiny_export, photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="no native bf16"):
        export_bf16(tmp_path, read_photos(photos, limit=1))
    with pytest.raises(ConfigError, match="LiteSAM encoder: this CPU has no native bf16"):
        OvGraph(tiny_export / ENCODER, "LiteSAM encoder", precision="bf16")


def _cache_with_bf16(tiny_export: Path, tmp_path: Path, iou: float | None) -> Path:
    """A model cache holding the tiny export and an IR whose manifest claims `iou` (None: no IR)."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_export, cache / "lite_sam")
    if iou is not None:
        ir = to_openvino_ir(cache / "lite_sam" / ENCODER, cache / "lite_sam" / "encoder.bf16.xml")
        write_manifest(ir, format="lite-sam", precision="bf16", source=None, parity={"mask_iou_mean": iou})
    manifest = read_cache_manifest(cache)
    record_files(cache, manifest, ["lite_sam"])
    write_cache_manifest(cache, manifest)
    return cache


@pytest.mark.parametrize("native, iou, chosen", [(True, 0.99, "encoder.bf16.xml"), (True, 0.90, "encoder.onnx"),
                                                 (True, None, "encoder.onnx"), (False, 0.99, "encoder.onnx")])
def test_auto_takes_bf16_only_on_a_native_cpu_where_its_manifest_keeps_the_masks(tiny_export, tmp_path, monkeypatch,
                                                                                native, iou, chosen) -> None:
    cache = _cache_with_bf16(tiny_export, tmp_path, iou)
    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: native)
    path, why, precision = openvino_encoder(SegmenterSettings(backend="openvino"), cache)
    assert path.name == chosen and precision == ("bf16" if chosen.endswith(".xml") else "fp32")
    assert why.startswith(f"{precision} (auto: ")
    if not native:
        assert "no native bf16" in why
    monkeypatch.undo()  # this CPU as it is: the segmenter runs what the rule picks here
    here = openvino_encoder(SegmenterSettings(backend="openvino"), cache)[2]
    seg = build_segmenter(SegmenterSettings(backend="openvino"), cache)
    assert isinstance(seg.encoder, OvGraph) and seg.encoder.precision == seg.decoder.precision == here


def test_an_edited_bf16_manifest_is_not_believed(tiny_export, tmp_path, monkeypatch) -> None:
    cache = _cache_with_bf16(tiny_export, tmp_path, 0.99)
    ir = cache / "lite_sam" / "encoder.bf16.xml"
    record = json.loads(manifest_path(ir).read_text())
    manifest_path(ir).write_text(json.dumps({**record, "sha256": "0" * 64}))  # no longer this file's
    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: True)
    path, why, precision = openvino_encoder(SegmenterSettings(backend="openvino"), cache)
    assert (path.name, precision) == (ENCODER, "fp32") and "no bf16 encoder with a manifest" in why


def test_missing_corrupt_or_misfed_graphs_are_one_clear_line(tiny_export, tmp_path) -> None:
    with pytest.raises(ModelCacheError, match="LiteSAM encoder: model file not found"):
        OvGraph(tmp_path / "nope.onnx", "LiteSAM encoder")
    bad = tmp_path / "encoder.onnx"
    bad.write_bytes((tiny_export / ENCODER).read_bytes()[:5000])  # a truncated download
    with pytest.raises(CheckpointError, match="LiteSAM encoder: cannot load .* in OpenVINO") as err:
        OvGraph(bad, "LiteSAM encoder")
    assert "\n" not in str(err.value)
    graph = OvGraph(tiny_export / ENCODER, "LiteSAM encoder")
    with pytest.raises(ValueError, match="LiteSAM encoder: ") as err:
        graph.run(None, {"image": np.zeros((1, 3, 32, 32), np.float32)})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="LiteSAM encoder: missing input 'image'"):
        graph.run(None, {"pixels": np.zeros((1, 3, TINY.img_size, TINY.img_size), np.float32)})


def test_without_openvino_the_backend_says_how_to_get_it(tiny_export, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` meets where it is not installed
    openvino_graph._core.cache_clear()
    try:
        with pytest.raises(ConfigError, match="needs the openvino package; install it with `pip install openvino`"):
            build_segmenter(SegmenterSettings(backend="openvino"), tmp_path)
    finally:
        openvino_graph._core.cache_clear()


@pytest.mark.parametrize("native, precision, backend", [(True, "auto", "openvino"), (False, "auto", "onnxruntime"),
                                                        (True, "int8", "onnxruntime"), (True, "fp32", "onnxruntime")])
def test_auto_backend_runs_openvino_only_where_it_would_run_bf16(tiny_export, tmp_path, monkeypatch, native,
                                                                 precision, backend) -> None:
    cache = _cache_with_bf16(tiny_export, tmp_path, 0.99)
    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: native)
    chosen, why = auto_backend(SegmenterSettings(backend="auto", precision=precision, device="cpu"), cache)
    assert chosen == backend, why
    if backend == "onnxruntime" and precision == "auto":
        assert "no native bf16" in why
        seg = build_segmenter(SegmenterSettings(backend="auto", device="cpu"), cache)  # the int8 rule, as before
        assert not isinstance(seg.encoder, OvGraph) and seg.encoder.get_inputs()[0].name == "image"


def test_auto_backend_without_openvino_is_onnxruntime(tiny_export, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    openvino_graph._core.cache_clear()
    try:
        chosen, why = auto_backend(SegmenterSettings(backend="auto", device="cpu"), tmp_path)
    finally:
        openvino_graph._core.cache_clear()
    assert chosen == "onnxruntime" and "needs the openvino package" in why


def test_auto_backend_for_sam2_follows_what_segmenter_model_is(tmp_path) -> None:
    exported = tmp_path / "sam2_onnx"
    exported.mkdir()
    (exported / "sam2_encoder.onnx").write_bytes(b"")
    assert auto_backend(SegmenterSettings(kind="sam2", backend="auto", model=str(exported)), tmp_path)[0] == \
        "onnxruntime"
    assert auto_backend(SegmenterSettings(kind="sam2", backend="auto", model="facebook/sam2.1-hiera-tiny"),
                        tmp_path)[0] == "torch"


def test_set_up_step_skips_bf16_where_the_cpu_has_none(tmp_path, monkeypatch, capsys) -> None:
    from reasonseg import assets

    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: False)
    assets.prepare_lite_sam_bf16(tmp_path)  # nothing read: the photos and encoder are not even there
    assert "skipped: this CPU has no native bf16" in capsys.readouterr().out
    assert not list(tmp_path.rglob("*"))
