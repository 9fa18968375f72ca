"""segmenter.backend=openvino: the exported LiteSAM graphs in OpenVINO's CPU plugin (real compiled models), fp32
at parity with onnxruntime, bf16 and int8 (NNCF) judged by mask IoU as OpenVINO runs them, `auto` choosing from
the manifests, and one clear line for what it cannot run."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed (the `cpu` extra brings it)")

from reasonseg.backends import openvino_graph  # noqa: E402
from reasonseg.core.settings import SegmenterSettings  # noqa: E402
from reasonseg.core.errors import CheckpointError, ConfigError, ModelCacheError  # noqa: E402
from reasonseg_export.formats import read_photos  # noqa: E402
from reasonseg_export.lite_sam import export_openvino, to_openvino_ir
from reasonseg.segmenters.lite_sam.graphs import ENCODER
from reasonseg_export.manifest import write_manifest
from reasonseg.core.graph_manifest import manifest_path, read_manifest
from reasonseg_export.openvino_speed import time_encoders
from reasonseg.segmenters.lite_sam.precision import SPEED_FILE, cpu_signature, read_speed
from reasonseg_export.parity import FP32_MAX_REL, require_close  # noqa: E402
from reasonseg.core.model_cache import read_manifest as read_cache_manifest, record_files  # noqa: E402
from reasonseg.core.model_cache import write_manifest as write_cache_manifest  # noqa: E402
from reasonseg.backends.onnxruntime_graph import open_session  # noqa: E402
from reasonseg.backends.openvino_graph import OvGraph, inner_precision, native_bf16  # noqa: E402
from reasonseg.core.prompt import Prompt  # noqa: E402
from reasonseg.segmenters.registry import auto_backend, build_segmenter
from reasonseg.segmenters.lite_sam.precision import openvino_encoder
from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam
from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE, DECODER_INPUTS
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
    ir = export_openvino(tmp_path, read_photos(photos, limit=2), "bf16", tiny_weights)
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
        export_openvino(tmp_path, read_photos(photos, limit=1), "bf16")
    with pytest.raises(ConfigError, match="LiteSAM encoder: this CPU has no native bf16"):
        OvGraph(tiny_export / ENCODER, "LiteSAM encoder", precision="bf16")


def _cache_with_ov(tiny_export: Path, tmp_path: Path, bf16: float | None, int8: float | None = None,
                   int8_inside: str = "bf16", timed_ms: dict[str, float] | None = None,
                   timed_on: dict | None = None) -> Path:
    """A model cache holding the tiny export and OpenVINO IRs whose manifests claim these IoUs (None: no IR);
    the int8 one judged with `int8_inside` around it; `timed_ms` (precision -> ms): a set-up timing of these IRs
    on this CPU, or as `timed_on` changes its signature. Only the manifests and the timing matter to the choice."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_export, cache / "lite_sam")
    for precision, iou in (("bf16", bf16), ("int8", int8)):
        if iou is not None:
            ir = to_openvino_ir(cache / "lite_sam" / ENCODER, cache / "lite_sam" / f"encoder.{precision}.xml")
            extra = {"inner_precision": int8_inside} if precision == "int8" else {}
            write_manifest(ir, format="lite-sam", precision=precision, source=None, parity={"mask_iou_mean": iou},
                           judged_on={"int8_kernels": "exact"}, **extra)
    if timed_ms is not None:
        irs = {p: read_manifest(cache / "lite_sam" / f"encoder.{p}.xml") for p in timed_ms}
        record = {"measured_on": {**cpu_signature(), **(timed_on or {})}, "encoders": {
            p: {"file": irs[p]["file"], "sha256": irs[p]["sha256"], "median_ms": ms} for p, ms in timed_ms.items()}}
        (cache / "lite_sam" / SPEED_FILE).write_text(json.dumps(record))
    manifest = read_cache_manifest(cache)
    record_files(cache, manifest, ["lite_sam"])
    write_cache_manifest(cache, manifest)
    return cache


def _pretend_cpu(monkeypatch, native: bool) -> None:
    """The CPU these choices are about: native bf16 or not, and exact int8 kernels (VNNI), whatever this one has
    (on a CPU without VNNI the full-range int8 IRs are passed over before any of the rules tested here)."""
    from reasonseg.backends import cpu_int8

    real = cpu_int8.this_cpu()
    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: native)
    monkeypatch.setattr(cpu_int8, "this_cpu", lambda: {**real, "int8_kernels": "exact"})


@pytest.mark.parametrize("native, iou, chosen", [(True, 0.99, "encoder.bf16.xml"), (True, 0.90, "encoder.onnx"),
                                                 (True, None, "encoder.onnx"), (False, 0.99, "encoder.onnx")])
def test_auto_takes_bf16_only_on_a_native_cpu_where_its_manifest_keeps_the_masks(tiny_export, tmp_path, monkeypatch,
                                                                                native, iou, chosen) -> None:
    cache = _cache_with_ov(tiny_export, tmp_path, iou)
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


@pytest.mark.parametrize("native, int8, inside, chosen", [
    (True, 0.97, "bf16", "int8"),  # judged, with what this CPU runs around it: ahead of bf16
    (True, 0.90, "bf16", "bf16"),  # loses the masks: bf16
    (True, 0.97, "fp32", "bf16"),  # judged with fp32 around it, this CPU would run bf16 around it
    (False, 0.97, "fp32", "int8"),  # a CPU without bf16 that judged its own int8
    (False, 0.97, "bf16", "fp32"),  # judged on a bf16 CPU: neither holds here
    (True, None, "bf16", "bf16")])
def test_auto_takes_int8_where_judged_as_this_cpu_runs_it(tiny_export, tmp_path, monkeypatch, native, int8, inside,
                                                          chosen) -> None:
    cache = _cache_with_ov(tiny_export, tmp_path, 0.99, int8=int8, int8_inside=inside)
    _pretend_cpu(monkeypatch, native)
    path, why, precision = openvino_encoder(SegmenterSettings(backend="openvino"), cache)
    assert precision == chosen and path.name == (ENCODER if chosen == "fp32" else f"encoder.{chosen}.xml"), why
    if chosen == "int8":
        assert why == f"int8 (auto: {inside} around it, mean mask IoU 0.970 vs fp32 >= 0.95)"
    elif int8 is not None:  # why int8 was passed over is in the log line
        assert ("< 0.95" if int8 < 0.95 else f"judged with {inside} around it") in why
    chosen_backend, _ = auto_backend(SegmenterSettings(backend="auto", device="cpu"), cache)
    assert chosen_backend == ("onnxruntime" if chosen == "fp32" else "openvino")
    assert inner_precision("int8") == ("bf16" if native else "fp32")


@pytest.mark.parametrize("int8_ms, bf16_ms, chosen", [
    (153.0, 145.0, "bf16"),  # AMX: bf16 tiles as fast as int8's
    (140.0, 145.0, "bf16"),  # faster by less than INT8_MIN_SPEEDUP: not worth the masks
    (216.0, 288.0, "int8")])  # AVX-512 BF16 without AMX: int8 products ahead
def test_auto_takes_int8_only_where_the_set_up_timed_it_faster_on_this_cpu(tiny_export, tmp_path, monkeypatch,
                                                                          int8_ms, bf16_ms, chosen) -> None:
    _pretend_cpu(monkeypatch, True)  # first: the timing is this (pretended) CPU's
    cache = _cache_with_ov(tiny_export, tmp_path, 0.99, int8=0.97, timed_ms={"int8": int8_ms, "bf16": bf16_ms})
    path, why, precision = openvino_encoder(SegmenterSettings(backend="openvino"), cache)
    assert precision == chosen and path.name == f"encoder.{chosen}.xml", why
    if chosen == "bf16":
        assert f"int8 timed {int8_ms:.0f} ms vs bf16 {bf16_ms:.0f} ms per encoder on this CPU" in why


def test_a_timing_from_another_cpu_or_of_other_files_is_not_believed(tiny_export, tmp_path, monkeypatch) -> None:
    from reasonseg.cli import prepare_models

    _pretend_cpu(monkeypatch, True)
    slow_int8 = {"int8": 200.0, "bf16": 100.0}
    for i, other in enumerate(({"cpu": "Other CPU"}, {"isa": ["avx512_bf16"]}, {"isa": ["amx_bf16", "amx_int8"]})):
        if other == {"isa": cpu_signature()["isa"]}:
            continue  # that one is this CPU
        elsewhere = _cache_with_ov(tiny_export, tmp_path / str(i), 0.99, int8=0.97, timed_ms=slow_int8, timed_on=other)
        assert read_speed(elsewhere / "lite_sam") is None and prepare_models._speed_timing_stale(elsewhere)
        assert openvino_encoder(SegmenterSettings(backend="openvino"), elsewhere)[2] == "int8"
    here = _cache_with_ov(tiny_export, tmp_path / "b", 0.99, int8=0.97, timed_ms=slow_int8)
    assert read_speed(here / "lite_sam") == slow_int8 and not prepare_models._speed_timing_stale(here)
    ir = here / "lite_sam" / "encoder.int8.xml"  # re-made since the timing: another file
    ir.write_text(ir.read_text() + "\n")
    write_manifest(ir, format="lite-sam", precision="int8", source=None, parity={"mask_iou_mean": 0.97},
                   judged_on={"int8_kernels": "exact"}, inner_precision="bf16")
    assert read_speed(here / "lite_sam") is None and prepare_models._speed_timing_stale(here)


def test_an_edited_timing_is_a_clear_error(tiny_export, tmp_path, monkeypatch) -> None:
    cache = _cache_with_ov(tiny_export, tmp_path, 0.99, int8=0.97, timed_ms={"int8": 200.0, "bf16": 100.0})
    _pretend_cpu(monkeypatch, True)
    speed = cache / "lite_sam" / SPEED_FILE
    speed.write_text(speed.read_text().replace("200.0", "100.0"))  # same size, other bytes
    with pytest.raises(ModelCacheError, match="model file damaged: .*openvino_speed.json does not match its sha256"):
        openvino_encoder(SegmenterSettings(backend="openvino"), cache)


@needs_native_bf16
def test_set_up_times_both_encoders_side_by_side_on_this_cpu(tiny_export, photos, tmp_path, capsys) -> None:
    from reasonseg.cli import prepare_models

    cache = _cache_with_ov(tiny_export, tmp_path, 0.99, int8=0.97)
    shutil.copytree(photos, cache / "images")
    prepare_models.time_lite_sam_openvino(cache)
    assert f"wrote {cache / 'lite_sam' / SPEED_FILE}" in capsys.readouterr().out
    record = json.loads((cache / "lite_sam" / SPEED_FILE).read_text())
    assert record["measured_on"] == cpu_signature() and record["threads"] >= 1
    for precision in ("int8", "bf16"):
        timed, ir = record["encoders"][precision], read_manifest(cache / "lite_sam" / f"encoder.{precision}.xml")
        assert timed["sha256"] == ir["sha256"] and timed["median_ms"] > 0
    assert read_speed(cache / "lite_sam") == {p: record["encoders"][p]["median_ms"] for p in ("int8", "bf16")}
    only_bf16 = _cache_with_ov(tiny_export, tmp_path / "one", 0.99)
    assert time_encoders(only_bf16 / "lite_sam", np.zeros((64, 64, 3), np.uint8)) is None  # nothing to compare


def test_explicit_int8_on_openvino_runs_the_ir_or_says_how_to_make_it(tiny_export, tmp_path) -> None:
    with pytest.raises(ModelCacheError, match="encoder.int8.xml is missing .* `reasonseg export lite-sam --precision "
                                              "int8 --int8-method openvino`"):
        build_segmenter(SegmenterSettings(backend="openvino", precision="int8"), _cache_with_ov(tiny_export, tmp_path,
                                                                                                None))
    cache = _cache_with_ov(tiny_export, tmp_path / "with", None, int8=0.5)  # set explicitly: no IoU bar
    seg = build_segmenter(SegmenterSettings(backend="openvino", precision="int8"), cache)
    assert seg.encoder.precision == "int8" and seg.encoder.what == "LiteSAM encoder"


def test_int8_judged_on_exact_kernels_is_not_used_where_products_saturate(tiny_export, tmp_path,
                                                                          monkeypatch) -> None:
    from reasonseg.segmenters.lite_sam import precision as lite_sam_precision
    from reasonseg.backends import cpu_int8

    cache = _cache_with_ov(tiny_export, tmp_path, 0.99, int8=0.97)
    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: True)
    monkeypatch.setattr(cpu_int8, "this_cpu", lambda: {"int8_kernels": "saturating"})
    assert lite_sam_precision.openvino_encoder(SegmenterSettings(backend="openvino"), cache)[2] == "bf16"


def test_int8_export_quantizes_matrix_products_keeps_early_convolutions_and_runs(tiny_weights, tiny_export, photos,
                                                                                tmp_path, load_rgb) -> None:
    pytest.importorskip("nncf", reason="nncf is not installed (the `export` extra brings it)")
    shutil.copytree(tiny_export, tmp_path, dirs_exist_ok=True)
    ir = export_openvino(tmp_path, read_photos(photos, limit=2), "int8", tiny_weights)
    assert ir.name == "encoder.int8.xml" and ir.with_suffix(".bin").is_file()
    assert not list(tmp_path.glob(".*tmp*"))  # the pair was renamed into place
    record = read_manifest(ir)
    assert record["precision"] == "int8" and record["int8_method"].startswith("nncf ")
    assert record["inner_precision"] == inner_precision("int8") and record["parity"]["prompts"] == 12
    model = openvino_graph._core().read_model(str(ir))
    quantized = {(t.get_node().get_type_name(), t.get_node().get_friendly_name())
                 for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
                 for out in op.outputs() for t in out.get_target_inputs()}
    assert sum(kind == "MatMul" for kind, _ in quantized) >= 2 * sum(TINY.depths[1:])  # qkv, proj, mlp per block
    convs = [name for kind, name in quantized if kind in ("Convolution", "GroupConvolution")]
    assert convs and all("/neck/" in name for name in convs)  # only the neck's convolutions are int8
    seg = OnnxLiteSam(OvGraph(ir, "enc", precision="int8"), OvGraph(tmp_path / DECODER_FILE, "dec", precision="int8"))
    image = load_rgb(photos / "dog.jpg")
    assert seg.predict(seg.encode(image), Prompt(box=(100, 100, 400, 400))).mask.shape == image.shape[:2]


def test_without_nncf_the_int8_export_says_how_to_get_it(tiny_export, photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)
    shutil.copytree(tiny_export, tmp_path, dirs_exist_ok=True)
    with pytest.raises(ConfigError, match="int8 for openvino needs the nncf package; install it with `pip install nncf`"):
        export_openvino(tmp_path, read_photos(photos, limit=1), "int8")
    assert not (tmp_path / "encoder.int8.xml").exists()


def test_an_edited_bf16_manifest_is_not_believed(tiny_export, tmp_path, monkeypatch) -> None:
    cache = _cache_with_ov(tiny_export, tmp_path, 0.99)
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
def test_auto_backend_runs_openvino_only_where_it_would_run_bf16_or_int8(tiny_export, tmp_path, monkeypatch, native,
                                                                 precision, backend) -> None:
    cache = _cache_with_ov(tiny_export, tmp_path, 0.99)
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


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_set_up_steps_skip_the_openvino_encoders_where_the_cpu_has_no_bf16(tmp_path, monkeypatch, capsys,
                                                                           precision) -> None:
    from reasonseg.cli import prepare_models

    monkeypatch.setattr(openvino_graph, "native_bf16", lambda: False)
    prepare_models.prepare_lite_sam_openvino(precision)(tmp_path)  # nothing read: the photos and encoder are not there
    out = capsys.readouterr().out
    assert "skipped: this CPU has no native bf16" in out or "skipped: int8 for openvino needs the nncf" in out
    assert not list(tmp_path.rglob("*"))
