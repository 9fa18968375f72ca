"""The export tree: every format of `reasonseg export --list` through onnxruntime, parity recorded in a
manifest, precisions chosen from manifests, and one clear error for a graph the runtime cannot use."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from reasonseg.cli.main import main as cli
from reasonseg.core.settings import SegmenterSettings
from reasonseg.core.errors import CheckpointError, ConfigError, ModelCacheError
from reasonseg.backends import cpu_int8
from reasonseg.backends.cpu_int8 import this_cpu
from reasonseg_export.formats import FORMATS, read_photos
from reasonseg_export.lite_sam import export_lite_sam
from reasonseg.segmenters.lite_sam.graphs import ENCODER
from reasonseg.core.graph_manifest import manifest_path, read_manifest
from reasonseg_export.parity import FP32_MAX_REL, ParityError, errors, mask_iou, require_close
from reasonseg.core.model_cache import read_manifest as read_cache_manifest, record_files, write_manifest
from reasonseg.backends.onnxruntime_graph import check_feeds, open_session
from reasonseg.core.prompt import Prompt
from reasonseg.segmenters.registry import build_segmenter
from reasonseg.segmenters.lite_sam.precision import AUTO_INT8_MIN_IOU, lite_sam_encoder
from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam
from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE
from test_cpu_int8 import SKYLAKE, ZEN4
from test_lite_sam import TINY


def test_list_prints_every_format(capsys) -> None:
    assert cli(["export", "--list"]) == 0
    table = capsys.readouterr().out
    for name in FORMATS:
        assert f"| {name} |" in table


def test_fp32_export_meets_its_tolerance_and_says_so(tiny_export: Path, tiny_weights: Path) -> None:
    record = read_manifest(tiny_export / ENCODER)
    assert record is not None and record["precision"] == "fp32" and record["opset"] == 17
    assert record["source"] == str(tiny_weights) and len(record["source_sha256"]) == 64
    assert record["inputs"] == {"image": [1, 3, TINY.img_size, TINY.img_size]}
    for output in ("image_embeddings", "low_res_masks", "iou_predictions"):
        assert 0 <= record["parity"][output]["max_rel"] <= FP32_MAX_REL
    dec = read_manifest(tiny_export / DECODER_FILE)
    assert dec["inputs"]["point_coords"] == [1, "num_points", 2]  # any number of points and boxes


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_is_judged_by_mask_iou_and_runs(tiny_export: Path, precision: str, photos: Path,
                                                           load_rgb) -> None:
    path = tiny_export / f"encoder.{precision}.onnx"
    parity = read_manifest(path)["parity"]
    assert parity["prompts"] == 12 and 0.0 <= parity["mask_iou_min"] <= parity["mask_iou_mean"] <= 1.0
    seg = OnnxLiteSam(path, tiny_export / DECODER_FILE)
    image = load_rgb(photos / "dog.jpg")
    mask = seg.predict(seg.encode(image), Prompt(box=(100, 100, 400, 400))).mask
    assert mask.shape == image.shape[:2]
    if precision == "fp16":  # fp16 keeps masks of even a random tiny model
        assert parity["mask_iou_mean"] > 0.95


def test_static_int8_is_qdq_calibrated_on_photos(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    import onnx

    export_lite_sam(tiny_weights, tmp_path, precisions=("int8",), photos=read_photos(photos, limit=2),
                    int8_method="static", cfg=TINY)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "encoder.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # explicit quantization TensorRT reads
    assert read_manifest(tmp_path / "encoder.int8.onnx")["int8_method"] == "static"


def test_a_stale_or_edited_manifest_is_not_believed(tiny_export: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_export / ENCODER, tmp_path / ENCODER)
    shutil.copy(manifest_path(tiny_export / ENCODER), manifest_path(tmp_path / ENCODER))
    assert read_manifest(tmp_path / ENCODER) is not None
    with open(tmp_path / ENCODER, "ab") as f:
        f.write(b"\0")  # the file changed after its manifest was written
    assert read_manifest(tmp_path / ENCODER) is None


def test_parity_helpers_fail_beyond_tolerance() -> None:
    ref = np.array([[-4.0, 2.0], [1.0, 0.5]])
    assert errors(ref, ref + 4e-3) == pytest.approx({"max_abs": 4e-3, "max_rel": 1e-3})
    with pytest.raises(ParityError, match="1.00e-03 relative"):
        require_close("decoder", ref, ref + 4e-3, 1e-4)
    with pytest.raises(ParityError, match="shape"):
        errors(ref, ref[:1])
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12) and mask_iou(a & False, b & False) == 1.0


def _cache_with(tiny_export: Path, tmp_path: Path, iou: float | None, **claims) -> Path:
    """A model cache holding the tiny export, the int8 manifest claiming `iou` and `claims` (None: no int8)."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_export, cache / "lite_sam")
    int8 = cache / "lite_sam" / "encoder.int8.onnx"
    if iou is None:
        int8.unlink()
        manifest_path(int8).unlink()
    else:
        record = json.loads(manifest_path(int8).read_text())
        record["parity"]["mask_iou_mean"] = iou
        manifest_path(int8).write_text(json.dumps({**record, **claims}))
    manifest = read_cache_manifest(cache)
    record_files(cache, manifest, ["lite_sam"])
    write_manifest(cache, manifest)
    return cache


@pytest.mark.parametrize("iou, chosen", [(0.97, "encoder.int8.onnx"), (0.90, "encoder.onnx"), (None, "encoder.onnx")])
def test_auto_precision_takes_int8_only_where_its_manifest_keeps_the_masks(tiny_export, tmp_path, iou, chosen):
    cache = _cache_with(tiny_export, tmp_path, iou)
    path, why = lite_sam_encoder(SegmenterSettings(precision="auto"), cache)
    assert path.name == chosen and why.startswith("int8" if iou and iou >= AUTO_INT8_MIN_IOU else "fp32")
    seg = build_segmenter(SegmenterSettings(precision="auto"), cache)
    assert seg.input_size == TINY.img_size


def test_a_precision_that_was_not_exported_is_one_clear_error(tiny_export, tmp_path) -> None:
    cache = _cache_with(tiny_export, tmp_path, None)
    with pytest.raises(ModelCacheError, match="reasonseg export lite-sam --precision int8"):
        build_segmenter(SegmenterSettings(precision="int8"), cache)


@pytest.mark.parametrize("kind, backend", [("lite_sam", "torch"), ("sam2", "torch"), ("sam2", "onnxruntime")])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_where_only_fp32_runs_is_refused_not_ignored(tmp_path, kind, backend, precision) -> None:
    """An explicit fp16 / int8 on a backend that runs fp32 would silently run fp32: one line instead, before
    any file is read (the cache here is empty)."""
    seg = SegmenterSettings(kind=kind, backend=backend, precision=precision, model=str(tmp_path))
    with pytest.raises(ConfigError, match=f"segmenter.precision={precision}: .* runs fp32 only"):
        build_segmenter(seg, tmp_path)
    with pytest.raises((ModelCacheError, ConfigError)) as missing:  # fp32 passes, then the model is looked for
        build_segmenter(SegmenterSettings(kind=kind, backend=backend, precision="fp32", model=str(tmp_path / "x")),
                        tmp_path)
    assert "segmenter.precision" not in str(missing.value)


@pytest.mark.parametrize("backend, precision, runs", [("openvino", "fp16", "fp32 / bf16 / int8"),
                                                      ("onnxruntime", "bf16", "fp32 / fp16 / int8"),
                                                      ("tensorrt", "bf16", "fp32 / fp16 / int8")])
def test_a_precision_of_another_backend_is_refused_naming_where_it_runs(tmp_path, backend, precision, runs) -> None:
    with pytest.raises(ConfigError, match=f"lite_sam on {backend} runs {runs} .*{precision} is for lite_sam on "):
        build_segmenter(SegmenterSettings(backend=backend, precision=precision), tmp_path)


def test_the_set_up_cache_follows_its_own_manifest(cache_dir: Path) -> None:
    """The embedded weights as the set-up step exported them: auto takes int8 exactly when its measured
    IoU clears the bar, and the fp32 graphs met PyTorch parity on the real LiteMedSAM."""
    record = read_manifest(cache_dir / "lite_sam" / "encoder.int8.onnx")
    assert record is not None and record["parity"]["photos"] >= 6
    path, _ = lite_sam_encoder(SegmenterSettings(precision="auto"), cache_dir)
    wants_int8 = record["parity"]["mask_iou_mean"] >= AUTO_INT8_MIN_IOU
    assert path.name == ("encoder.int8.onnx" if wants_int8 else ENCODER)
    fp32 = read_manifest(cache_dir / "lite_sam" / ENCODER)["parity"]
    assert fp32["image_embeddings"]["max_rel"] <= FP32_MAX_REL and fp32["low_res_masks"]["max_rel"] <= FP32_MAX_REL


def test_dynamic_int8_weights_are_7_bit_so_no_pair_saturates(tiny_export: Path) -> None:
    """x86 without VNNI adds adjacent u8 x s8 products in a saturating int16: with |w| <= 64 no pair can pass
    2 * 255 * 64 = 32640 < 32767. The manifest says so, and on which CPU the masks were judged."""
    import onnx
    from onnx import numpy_helper

    path = tiny_export / "encoder.int8.onnx"
    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    quantized = [weights[n.input[1]] for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert quantized and all(w.dtype == np.int8 for w in quantized)
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in quantized) <= 64
    assert 2 * 255 * 64 <= np.iinfo(np.int16).max
    record = read_manifest(path)
    assert record["reduce_range"] is True and record["int8_method"] == "dynamic"
    assert record["judged_on"] == this_cpu()
    assert record["judged_on"]["int8_kernels"] in ("exact", "saturating", "unknown")


@pytest.mark.parametrize("reduce_range, judged, here, chosen", [
    (False, "exact", SKYLAKE, "encoder.onnx"),  # full-range, judged exact, run saturating: not believed
    (True, "exact", SKYLAKE, "encoder.int8.onnx"),  # 7-bit weights cannot saturate
    (False, "saturating", SKYLAKE, "encoder.int8.onnx"),  # judged under the same kernels
    (False, "exact", ZEN4, "encoder.int8.onnx"),
    (False, "saturating", ZEN4, "encoder.int8.onnx"),  # exact kernels only remove error
])
def test_auto_takes_int8_only_where_its_judgement_carries_over(tiny_export, tmp_path, monkeypatch,
                                                              reduce_range, judged, here, chosen) -> None:
    cache = _cache_with(tiny_export, tmp_path, 0.98, reduce_range=reduce_range,
                        judged_on={"cpu": "test", "arch": "x86_64", "int8_kernels": judged})
    info = tmp_path / "cpuinfo"
    info.write_text(here)
    monkeypatch.setattr(cpu_int8, "CPUINFO", info)
    monkeypatch.setattr(cpu_int8, "ARCH", "x86_64")
    path, why = lite_sam_encoder(SegmenterSettings(precision="auto"), cache)
    assert path.name == chosen
    if chosen == "encoder.onnx":
        assert why.startswith("fp32 (auto: int8 not used:") and "no VNNI" in why and "\n" not in why
        assert "reasonseg export lite-sam --precision fp32 int8" in why


def test_corrupt_foreign_or_misfed_graphs_are_one_clear_line(tiny_export: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 64)
    with pytest.raises(CheckpointError, match="corrupt.onnx") as err:
        open_session(corrupt, "LiteSAM encoder")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelCacheError, match="absent.onnx"):
        open_session(tmp_path / "absent.onnx", "LiteSAM encoder")
    with pytest.raises(ValueError, match="not a LiteSAM graph"):  # the decoder where the encoder belongs
        OnnxLiteSam(tiny_export / DECODER_FILE, tiny_export / DECODER_FILE)
    seg = OnnxLiteSam(tiny_export / ENCODER, tiny_export / DECODER_FILE)
    emb = seg.encode(np.zeros((20, 20, 3), np.uint8))
    foreign = type(emb)(np.zeros((1, 8, 4, 4), np.float32), emb.original_size, emb.resized_size, emb.input_size)
    with pytest.raises(ValueError, match="input 'image_embeddings' has shape \\[1, 8, 4, 4\\]"):
        seg.predict(foreign, Prompt(box=(2, 2, 10, 10)))  # an embedding from another model
    session = open_session(tiny_export / ENCODER, "LiteSAM encoder")
    with pytest.raises(ValueError, match=r"input 'image' has shape \[1, 3, 32, 32\], the graph takes \[1, 3, 64, 64\]"):
        check_feeds(session, {"image": np.zeros((1, 3, 32, 32), np.float32)}, "LiteSAM encoder")


def test_sessions_are_tuned_for_latency_with_sleeping_pool_threads(tiny_export: Path) -> None:
    """A frame runs several sessions back to back: spinning pool threads of one would take the next one's cores
    (bench/bench_pipeline.py, frame_sequence)."""
    opts = open_session(tiny_export / ENCODER, "LiteSAM encoder").get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level.name == "ORT_ENABLE_ALL"


@pytest.fixture(scope="module")
def sam2_export(tmp_path_factory) -> tuple[Path, Path]:
    from tiny_models import tiny_sam2

    root = tmp_path_factory.mktemp("sam2")
    ckpt = tiny_sam2(root / "ckpt", presence_logit=10.0)  # the object head says "present": masks are not empty
    assert cli(["export", "sam2", "--checkpoint", str(ckpt), "--out", str(root / "onnx")]) == 0
    return ckpt, root / "onnx"


def test_sam2_graphs_give_the_pytorch_segmenters_masks_for_every_prompt_kind(sam2_export, photos, load_rgb):
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    ckpt, onnx_dir = sam2_export
    parity = read_manifest(onnx_dir / "sam2_decoder.onnx")["parity"]
    assert all(v["max_rel"] <= 1e-4 for k, v in parity.items() if isinstance(v, dict)) and len(parity) == 16
    torch_seg = Sam2Segmenter(str(ckpt), device="cpu")
    onnx_seg = build_segmenter(SegmenterSettings(kind="sam2", backend="onnxruntime", model=str(onnx_dir)), Path("."))
    image = load_rgb(photos / "dog.jpg")
    et, eo = torch_seg.encode(image), onnx_seg.encode(image)
    rng = np.random.default_rng(0)
    prompts = [Prompt(box=(120, 130, 560, 470)),
               Prompt(box=(120, 130, 560, 470), points=((200, 300), (400, 200)), point_labels=(1, 0)),
               Prompt(points=((300, 300),)),  # one click: SAM2's multimask choice
               Prompt(sparse_embeddings=rng.standard_normal((1, torch_seg.prompt_dim)).astype(np.float32)),  # LENS
               Prompt(mask_logits=rng.standard_normal((64, 64)).astype(np.float32))]
    for prompt in prompts:
        a, b = torch_seg.predict(et, prompt), onnx_seg.predict(eo, prompt)
        assert a.mask.any() and a.logits.shape == b.logits.shape
        assert np.abs(a.logits - b.logits).max() <= 1e-4 * np.abs(a.logits).max()
        assert mask_iou(a.mask, b.mask) > 0.999 and b.score == pytest.approx(a.score, abs=1e-5)


@pytest.mark.parametrize("memory_frames, n_frames", [(3, 8), (20, 18)])
def test_sam2_tracking_graphs_give_the_pytorch_streams_masks(sam2_export, photos, load_rgb, memory_frames, n_frames):
    """A whole stream on onnxruntime (memory bank held in numpy) against transformers' streaming session:
    a box and an ambiguous click, a bank that fills up (20: all 6 past memories, all 15 past pointers by
    frame 16) and one pruned to the last 3 frames."""
    from reasonseg.core.results import Grounding, Target
    from reasonseg.pipelines.memory_track import MemoryTrack
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    ckpt, onnx_dir = sam2_export
    step = read_manifest(onnx_dir / "sam2_track_step.onnx")
    assert step["num_maskmem"] == 7 and step["max_pointers"] == 16
    assert all(v["max_rel"] <= 1e-4 for k, v in step["parity"].items() if isinstance(v, dict)
               and not k.endswith("maskmem_features")) and "step/full/low_res_masks" in step["parity"]
    torch_seg = Sam2Segmenter(str(ckpt), device="cpu")
    onnx_seg = build_segmenter(SegmenterSettings(kind="sam2", backend="onnxruntime", model=str(onnx_dir)), Path("."))
    assert onnx_seg.can_track
    image = cv2.resize(load_rgb(photos / "dog.jpg"), (160, 120))
    frames = [np.roll(image, (i % 5 - 2, 2 * i), axis=(0, 1)) for i in range(n_frames)]  # a panning camera
    yy, xx = np.mgrid[:64, :64]
    disc = np.where((yy - 30) ** 2 + (xx - 20) ** 2 < 100, 8.0, -8.0).astype(np.float32)
    token = np.random.default_rng(3).standard_normal((1, torch_seg.prompt_dim)).astype(np.float32)
    # a box, an ambiguous click, and what LENS / CORA give: a mask and a raw prompt token (mask start graph)
    prompts = [Prompt(box=(20, 40, 70, 110)), Prompt(points=((120, 60),)), Prompt(mask_logits=disc),
               Prompt(sparse_embeddings=token)]
    a = torch_seg.start_stream(frames[0], prompts, memory_frames)
    b = onnx_seg.start_stream(frames[0], prompts, memory_frames)
    for i, frame in enumerate(frames):
        pa, pb = (a.last, b.last) if i == 0 else (a.step(frame), b.step(frame))
        for x, y in zip(pa, pb, strict=True):
            assert np.abs(x.logits - y.logits).max() <= 1e-4 * np.abs(x.logits).max(), f"frame {i}"
            assert y.score == pytest.approx(x.score, abs=1e-5) and mask_iou(x.mask, y.mask) > 0.999
    assert b.stored_frames() == 4 * (1 + min(memory_frames + 1, n_frames - 1))  # conditioning + the last frames
    assert a.last[2].mask.any()  # the mask-conditioned object is a real one
    g = Grounding("the dog", ("dog",), (Target("dog", 1.0, prompts[0]),), "", "test", "mllm")
    track = MemoryTrack(onnx_seg, g, frames[0], memory_frames=memory_frames, min_score=0.5)
    assert track.step(frames[1]).note == "tracked"
    old = onnx_dir.parent / "before-mask-start"  # an export made before the mask start graph
    shutil.copytree(onnx_dir, old, dirs_exist_ok=True)
    (old / "sam2_track_start_mask.onnx").unlink()
    older = build_segmenter(SegmenterSettings(kind="sam2", backend="onnxruntime", model=str(old)), Path("."))
    with pytest.raises(ValueError, match="tracker takes box, points prompts, not mask.*export it again"):
        older.start_stream(image, [Prompt(mask_logits=np.ones((8, 8), np.float32))], 4)


def test_io_binding_keeps_features_on_the_device_and_gives_the_same_masks(tiny_export, sam2_export, photos,
                                                                          load_rgb) -> None:
    """What runs on a GPU (outputs allocated on the session's device, the encoder's output fed to the decoder and
    the tracking graphs as an OrtValue, no host round trip), run here on the CPU device: same numbers."""
    from reasonseg.backends.onnxruntime_graph import BoundSession, host, is_device_value
    from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter

    image = load_rgb(photos / "dog.jpg")
    plain = OnnxLiteSam(tiny_export / ENCODER, tiny_export / DECODER_FILE)
    bound = OnnxLiteSam(tiny_export / ENCODER, tiny_export / DECODER_FILE, io_binding=True)
    assert isinstance(bound.encoder, BoundSession) and not isinstance(plain.encoder, BoundSession)
    ep, eb = plain.encode(image), bound.encode(image)
    assert is_device_value(eb.embedding) and eb.embedding.device_name().lower() == "cpu"
    assert np.array_equal(ep.embedding, host(eb.embedding))
    for box in ((100, 100, 400, 400), (0, 0, image.shape[1], image.shape[0])):
        for emb, seg in ((eb, bound), (eb, plain)):  # a device embedding also feeds an unbound decoder
            got, want = seg.decode_all(emb, box), plain.decode_all(ep, box)
            assert all(np.array_equal(m1, m2) and i1 == pytest.approx(i2, abs=1e-6)
                       for (m1, i1), (m2, i2) in zip(got, want, strict=True))

    _, onnx_dir = sam2_export
    plain2, bound2 = OnnxSam2Segmenter(onnx_dir), OnnxSam2Segmenter(onnx_dir, io_binding=True)
    ep2, eb2 = plain2.encode(image), bound2.encode(image)
    assert all(is_device_value(f) for f in eb2.features)
    for prompt in (Prompt(box=(120, 130, 560, 470)), Prompt(points=((300, 300),))):
        a, b = plain2.predict(ep2, prompt), bound2.predict(eb2, prompt)
        assert np.array_equal(a.logits, b.logits) and a.score == pytest.approx(b.score, abs=1e-6)
    small = cv2.resize(image, (160, 120))
    frames = [np.roll(small, 3 * i, axis=1) for i in range(10)]  # 9 steps: the 7-slot bank fills, then slides
    sa, sb = (s.start_stream(frames[0], [Prompt(box=(20, 40, 70, 110))], 16) for s in (plain2, bound2))
    for frame in frames[1:]:
        (x,), (y,) = sa.step(frame), sb.step(frame)
        assert np.array_equal(x.logits, y.logits)
    # the bank stays on the device: every frame's memory is an OrtValue, stacked there for the next step
    bank = [sb.objects[0]["cond"], *sb.objects[0]["past"].values()]
    assert all(is_device_value(m["maskmem_features"]) for m in bank) and len(bank) == 10
    stacked = bound2.stack_memory([m["maskmem_features"] for m in bank[:3]])
    assert is_device_value(stacked) and np.array_equal(
        host(stacked), np.stack([host(m["maskmem_features"]) for m in bank[:3]]))
    with pytest.raises(ValueError, match="cannot stack 8 values in 7 slots"):
        bound2.stack_memory([m["maskmem_features"] for m in bank[:8]])


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="this onnxruntime has no CUDA provider (onnxruntime-gpu on an NVIDIA GPU machine)")
def test_cuda_sessions_are_io_bound_and_keep_the_masks(tiny_export, sam2_export, photos, load_rgb) -> None:
    from reasonseg.backends.onnxruntime_graph import BoundSession
    from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter

    image = load_rgb(photos / "dog.jpg")
    cpu = OnnxLiteSam(tiny_export / ENCODER, tiny_export / DECODER_FILE)
    gpu = OnnxLiteSam(tiny_export / ENCODER, tiny_export / DECODER_FILE, device="cuda")
    assert isinstance(gpu.encoder, BoundSession) and gpu.encoder.device_type == "cuda"
    emb = gpu.encode(image)
    assert emb.embedding.device_name().lower() == "cuda"
    box = (100, 100, 400, 400)
    assert mask_iou(gpu.predict(emb, Prompt(box=box)).mask, cpu.predict(cpu.encode(image), Prompt(box=box)).mask) > 0.99
    frames = [np.roll(cv2.resize(image, (160, 120)), 3 * i, axis=1) for i in range(10)]
    streams = [OnnxSam2Segmenter(sam2_export[1], device=d).start_stream(frames[0], [Prompt(box=(20, 40, 70, 110))], 16)
               for d in ("cpu", "cuda")]
    for frame in frames[1:]:
        (x,), (y,) = (s.step(frame) for s in streams)
        assert mask_iou(x.mask, y.mask) > 0.99
    assert all(m["maskmem_features"].device_name().lower() == "cuda" for m in streams[1].objects[0]["past"].values())


def test_a_stale_sam2_export_is_refused(sam2_export, tmp_path) -> None:
    _, onnx_dir = sam2_export
    copy = tmp_path / "onnx"
    shutil.copytree(onnx_dir, copy)
    with open(copy / "sam2_decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="stale"):
        build_segmenter(SegmenterSettings(kind="sam2", backend="onnxruntime", model=str(copy)), Path("."))


def test_lens_connector_graph_matches_the_head(tmp_path) -> None:
    import torch

    from reasonseg.models.lens import LensModel
    from tiny_models import tiny_lens_release

    ckpt, _ = tiny_lens_release(tmp_path / "lens")
    assert cli(["export", "lens-connector", "--checkpoint", str(ckpt), "--out", str(tmp_path / "onnx")]) == 0
    record = read_manifest(tmp_path / "onnx" / "lens_connector.onnx")
    assert record["parity"]["prompt_token"]["max_rel"] <= 1e-4 and record["inputs"]["query_states"][0] == "batch"
    head = LensModel.from_pretrained(ckpt, dtype=torch.float32).head
    states = np.random.default_rng(5).standard_normal((1, head.num_queries, record["hidden_size"])).astype(np.float32)
    (token,) = open_session(tmp_path / "onnx" / "lens_connector.onnx", "LENS connector").run(None, {"query_states": states})
    with torch.inference_mode():
        ref = head(torch.from_numpy(states)).numpy()
    assert token.shape == (1, 1, head.proj_to_sam[-1].out_features)
    assert np.abs(token - ref).max() <= 1e-4 * np.abs(ref).max()


def test_export_errors_are_one_line(tmp_path, capsys) -> None:
    assert cli(["export", "sam2", "--out", str(tmp_path)]) == 2
    assert cli(["export", "lite-sam", "--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("reasonseg: error: export ") for line in err)
    assert "--checkpoint" in err[0] and "none.safetensors" in err[1]


def test_calibration_photos_skip_unreadable_files_and_a_file_is_not_a_folder(tmp_path, photos, capsys) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "0_broken.jpg").write_bytes(b"not a jpeg")  # sorts first: skipped, not counted against the limit
    (folder / "1_empty.png").write_bytes(b"")
    for path in sorted(photos.glob("*.jpg"))[:2]:
        shutil.copy(path, folder / path.name)
    assert len(read_photos(folder, limit=2)) == 2
    with pytest.raises(ValueError, match="is not a folder of photos"):
        read_photos(folder / "0_broken.jpg")
    assert cli(["export", "lite-sam", "--precision", "int8", "--photos", str(folder / "0_broken.jpg"),
                "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == \
        f"reasonseg: error: export lite-sam: {folder / '0_broken.jpg'} is not a folder of photos"


@pytest.mark.parametrize("fmt", ["sam2", "lens-connector", "cora-projection", "l2l"])
@pytest.mark.parametrize("config", ['{"model_type": ', '{"model_type": "sam2"}'])  # broken JSON; weights garbage
def test_unreadable_checkpoints_are_one_line_naming_them(tmp_path, capsys, fmt, config) -> None:
    """The loaders' own errors (JSON, safetensors header, transformers OSError) once escaped as tracebacks."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(config)
    (ckpt / "model.safetensors").write_bytes(b"\xff" * 64)
    assert cli(["export", fmt, "--checkpoint", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reasonseg: error: ") and str(ckpt) in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("fmt", ["sam2", "lens-connector", "cora-projection"])
@pytest.mark.parametrize("ref", ["{tmp}/no-such-dir", "runs/no_run/model", "./no-such-dir"])
def test_a_checkpoint_path_that_does_not_exist_is_said_to_be_missing(tmp_path, capsys, monkeypatch, fmt, ref) -> None:
    """transformers reported a missing path as a malformed HF repo id ("Repo id must use alphanumeric chars")."""
    monkeypatch.chdir(tmp_path)
    ref = ref.format(tmp=tmp_path)
    assert cli(["export", fmt, "--checkpoint", ref, "--out", str(tmp_path / "out")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert f"checkpoint {ref}: no such file or folder; the model must be a local dir" in err, err


def test_tensorrt_backend_without_tensorrt_is_one_clear_line(cache_dir, tmp_path, capsys) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here: the engine tests below run instead")
    except ImportError:
        pass
    from reasonseg.core.errors import ConfigError

    with pytest.raises(ConfigError, match="`tensorrt` Python package is not installed"):
        build_segmenter(SegmenterSettings(backend="tensorrt"), cache_dir)
    assert cli(["export", "tensorrt", "--out", str(tmp_path)]) == 2
    assert "tensorrt" in capsys.readouterr().err


def test_tensorrt_engine_matches_onnxruntime_and_refuses_foreign_engines(tiny_export, tmp_path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it needs an NVIDIA GPU machine)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: TensorRT engines cannot be built or run")
    from reasonseg_export.tensorrt import build_engine
    from reasonseg.backends.tensorrt_graph import TrtGraph

    enc = build_engine(tiny_export / ENCODER, tmp_path, precision="fp32")
    assert build_engine(tiny_export / ENCODER, tmp_path, precision="fp32") == enc  # cached under its key
    x = np.random.default_rng(0).random((1, 3, TINY.img_size, TINY.img_size), dtype=np.float32)
    (ref,) = open_session(tiny_export / ENCODER, "encoder").run(None, {"image": x})
    (got,) = TrtGraph(enc).run(None, {"image": x})
    assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max()
    foreign = tmp_path / "foreign.engine"
    foreign.write_bytes(b"not an engine" * 100)
    with pytest.raises(CheckpointError, match="foreign or corrupt"):
        TrtGraph(foreign)
    with pytest.raises(ModelCacheError, match="never on the camera path"):
        TrtGraph(tmp_path / "missing.engine")
