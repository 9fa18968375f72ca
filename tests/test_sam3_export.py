"""`reasonseg export sam3` (issue 32): SAM 3's tracker encoder + decoder as ONNX, parity with PyTorch in the
manifest, the ViT's real-arithmetic RoPE against Meta's complex one, and the `sam3` onnxruntime backend giving the
torch backend's masks through the registry, on tiny random-weight checkpoints (real configs, `save_pretrained`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reasonseg.core.errors import CheckpointError, ConfigError
from reasonseg.core.graph_manifest import manifest_path, read_manifest
from reasonseg.core.model_cache import sha256
from reasonseg.core.prompt import Prompt
from reasonseg.core.settings import Settings
from reasonseg.segmenters.sam3.graphs import DECODER, ENCODER, START, START_MASK, STEP
from reasonseg.settings.loading import with_overrides
from reasonseg_export.parity import FP32_MAX_REL, mask_iou
from tiny_models import tiny_sam3_tracker

ROOT = Path(__file__).resolve().parents[1]


def _segmenter(model, *sets: str):
    from reasonseg.segmenters.registry import build_segmenter

    s = with_overrides(Settings(), ["segmenter.kind=sam3", "segmenter.device=cpu", f"segmenter.model={model}", *sets])
    return build_segmenter(s.segmenter, s.cache_path)


@pytest.fixture(scope="module")
def sam3_export(tmp_path_factory) -> tuple[Path, Path]:
    """A sam3_tracker_video checkpoint (what facebook/sam3's tracker loads as), exported as users run it."""
    root = tmp_path_factory.mktemp("sam3x")
    ckpt = tiny_sam3_tracker(root / "ckpt", presence_logit=6.0)  # the object head says "present"
    run = subprocess.run([sys.executable, "-m", "reasonseg.cli.main", "export", "sam3", "--checkpoint", str(ckpt),
                          "--out", str(root / "onnx")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"wrote {root / 'onnx' / ENCODER}" in run.stdout and f"wrote {root / 'onnx' / DECODER}" in run.stdout
    return ckpt, root / "onnx"


def test_the_manifests_record_parity_within_1e_4(sam3_export) -> None:
    ckpt, onnx_dir = sam3_export
    for name in (ENCODER, DECODER):
        record = read_manifest(onnx_dir / name)
        assert record is not None and record["format"] == "sam3" and record["precision"] == "fp32"
        assert record["opset"] == 17 and record["source_sha256"] == sha256(ckpt / "model.safetensors")
        assert record["input_size"] == 112 and record["mean"] == record["std"] == [0.5] * 3
        parity = record["parity"]
        measured = {k: v for k, v in parity.items() if isinstance(v, dict)}
        # 3 feature levels + 4 prompt kinds x (mask, IoU, object score)
        assert len(measured) == 15 and parity["max_rel_tolerance"] == FP32_MAX_REL
        assert all(0 <= v["max_rel"] <= FP32_MAX_REL for v in measured.values()), measured
    enc = read_manifest(onnx_dir / ENCODER)
    assert enc["inputs"] == {"pixel_values": [1, 3, 112, 112]}
    assert list(enc["outputs"]) == ["high_res_feats_0", "high_res_feats_1", "image_embeddings"]
    assert read_manifest(onnx_dir / DECODER)["inputs"]["point_coords"] == [1, "num_points", 2]


def test_an_image_only_checkpoint_exports_too(tmp_path) -> None:
    from reasonseg.cli.main import main as cli

    ckpt = tiny_sam3_tracker(tmp_path / "ckpt", video=False, seed=3)
    assert cli(["export", "sam3", "--checkpoint", str(ckpt), "--out", str(tmp_path / "onnx")]) == 0
    assert all(read_manifest(tmp_path / "onnx" / n) is not None for n in (ENCODER, DECODER))
    assert not any((tmp_path / "onnx" / n).exists() for n in (START, STEP, START_MASK))  # no memory modules
    seg = _segmenter(tmp_path / "onnx", "segmenter.backend=onnxruntime")
    assert not seg.can_track
    with pytest.raises(ValueError, match="no tracking graphs"):
        seg.start_stream(np.zeros((64, 80, 3), np.uint8), [Prompt(box=(10.0, 10.0, 50.0, 40.0))], 4)


# -- RoPE: Meta's complex form (facebookresearch/sam3 sam3/model/vitdet.py), the reference checked against -----

def _meta_axial_cis(dim: int, end_x: int, end_y: int, theta: float = 10000.0, scale_pos: float = 1.0):
    """`compute_axial_cis`: per token, dim / 4 x-frequencies then dim / 4 y-frequencies, as unit complex numbers."""
    import torch

    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x, t_y = (t % end_x) * scale_pos, torch.div(t, end_x, rounding_mode="floor") * scale_pos
    fx, fy = torch.outer(t_x, freqs), torch.outer(t_y, freqs)
    return torch.cat([torch.polar(torch.ones_like(fx), fx), torch.polar(torch.ones_like(fy), fy)], dim=-1)


def _meta_apply_rotary_enc(xq, xk, freqs_cis):
    """`apply_rotary_enc`: adjacent channel pairs as complex numbers, multiplied by the token's frequencies."""
    import torch

    q = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    k = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    f = freqs_cis.view(*[1] * (q.ndim - 2), *freqs_cis.shape)
    return torch.view_as_real(q * f).flatten(-2).type_as(xq), torch.view_as_real(k * f).flatten(-2).type_as(xk)


def _vit_layer(window: int):
    """A facebook/sam3-geometry ViT layer (1008 px, patch 14: a 72x72 grid; 24-token windows; head dim 64)."""
    from transformers.models.sam3.configuration_sam3 import Sam3ViTConfig
    from transformers.models.sam3.modeling_sam3 import Sam3ViTLayer

    config = Sam3ViTConfig(hidden_size=128, intermediate_size=256, num_attention_heads=2, image_size=1008,
                           patch_size=14, window_size=24)
    return Sam3ViTLayer(config, window_size=window).eval()


@pytest.mark.parametrize("window, grid", [(0, 72), (24, 24)])  # global layers; windowed layers
def test_the_vits_real_rope_equals_metas_complex_rope(window, grid) -> None:
    import torch
    from transformers.models.sam3.modeling_sam3 import apply_rotary_pos_emb_2d

    layer = _vit_layer(window)
    g = torch.Generator().manual_seed(grid)
    q, k = (torch.randn(1, 2, grid * grid, 64, generator=g) for _ in range(2))
    cos, sin = layer.rotary_emb(q, layer.position_ids)  # what the layer feeds its attention
    got_q, got_k = apply_rotary_pos_emb_2d(q, k, cos=cos, sin=sin)
    # Meta interpolates the global layers' positions to the 24-token pretraining windows (rope_pt_size / grid)
    cis = _meta_axial_cis(64, grid, grid, scale_pos=24 / grid)
    ref_q, ref_k = _meta_apply_rotary_enc(q, k, cis)
    for got, ref in ((got_q, ref_q), (got_k, ref_k)):
        assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    assert float((got_q - q).abs().max()) > 0.1  # it does rotate


def test_the_vits_attention_is_metas_complex_rope_attention() -> None:
    """The layer's attention module end to end (its projections, our RoPE, softmax) vs the same projections
    through Meta's complex RoPE: the module really uses the real-arithmetic function tested above."""
    import torch

    layer = _vit_layer(24)
    att = layer.attention
    x = torch.randn(1, 24, 24, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, _ = att(x, layer.rotary_emb(x, layer.position_ids))
        split = lambda t: t.view(1, 576, 2, 64).transpose(1, 2)  # noqa: E731
        q, k = _meta_apply_rotary_enc(split(att.q_proj(x)), split(att.k_proj(x)), _meta_axial_cis(64, 24, 24))
        w = torch.softmax(q @ k.transpose(-1, -2) * 64 ** -0.5, dim=-1)
        ref = att.o_proj((w @ split(att.v_proj(x))).transpose(1, 2).reshape(1, 24, 24, 128))
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_the_exported_encoder_has_no_complex_parts(sam3_export, tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from reasonseg_export.sam3 import complex_parts

    assert complex_parts(sam3_export[1] / ENCODER) == []
    assert {n.op_type for n in onnx.load(str(sam3_export[1] / ENCODER)).graph.node} >= {"MatMul", "Softmax"}
    # the check itself: a complex tensor and a spectral op are both found
    graph = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("DFT", ["x"], ["y"], name="dft")], "g",
        [helper.make_tensor_value_info("c", TensorProto.COMPLEX64, [4]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1])],
        [helper.make_tensor_value_info("c2", TensorProto.COMPLEX64, [4]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "c.onnx"))
    found = complex_parts(tmp_path / "c.onnx")
    assert "c" in found and "c2" in found and "DFT node dft" in found


# -- the onnxruntime backend -------------------------------------------------------------------------------------

def test_onnxruntime_masks_match_torch_through_the_registry(sam3_export, photos, load_rgb) -> None:
    from reasonseg.segmenters.sam3.onnx_runner import OnnxSam3Segmenter
    from reasonseg.segmenters.sam3.torch_runner import Sam3Segmenter

    ckpt, onnx_dir = sam3_export
    torch_seg = _segmenter(ckpt, "segmenter.backend=torch")
    onnx_seg = _segmenter(onnx_dir, "segmenter.backend=auto")  # an export folder: auto -> onnxruntime
    assert isinstance(torch_seg, Sam3Segmenter) and isinstance(onnx_seg, OnnxSam3Segmenter)
    assert onnx_seg.name == "sam3" and onnx_seg.input_size == 112 and onnx_seg.can_track  # a video checkpoint
    image = load_rgb(photos / "dog.jpg")
    h, w = image.shape[:2]
    assert h != w and min(h, w) >= 300  # a photo, not square
    et, eo = torch_seg.encode(image), onnx_seg.encode(image)
    rng = np.random.default_rng(0)
    box = (0.2 * w, 0.25 * h, 0.85 * w, 0.9 * h)
    prompts = [Prompt(box=box),
               Prompt(box=box, points=((0.4 * w, 0.5 * h), (0.7 * w, 0.4 * h)), point_labels=(1, 0)),
               Prompt(points=((0.5 * w, 0.55 * h),)),  # one click: SAM's multimask choice
               Prompt(sparse_embeddings=rng.standard_normal((1, torch_seg.prompt_dim)).astype(np.float32)),
               Prompt(mask_logits=rng.standard_normal((64, 64)).astype(np.float32))]
    for prompt in prompts:
        a, b = torch_seg.predict(et, prompt), onnx_seg.predict(eo, prompt)
        assert a.mask.shape == b.mask.shape == (h, w) and a.mask.any()
        assert np.abs(a.logits - b.logits).max() <= 1e-4 * np.abs(a.logits).max()
        assert mask_iou(a.mask, b.mask) > 0.999 and b.score == pytest.approx(a.score, abs=1e-5)


@pytest.fixture(scope="module")
def sam3_track_export(tmp_path_factory) -> tuple[Path, Path]:
    """A sam3_tracker_video checkpoint whose object head says "present" for sure, exported with its tracking graphs."""
    from reasonseg_export.sam3 import export_sam3

    root = tmp_path_factory.mktemp("sam3track")
    ckpt = tiny_sam3_tracker(root / "ckpt", presence_logit=10.0)
    written = export_sam3(ckpt, root / "onnx")
    assert [p.name for p in written] == [ENCODER, DECODER, START, STEP, START_MASK]
    return ckpt, root / "onnx"


def test_the_tracking_graphs_record_parity(sam3_track_export) -> None:
    """SAM 3's memory encoder resizes the S-px mask to 4 x the mask-input side (128 px here, 1152 for facebook/sam3)
    antialiased; the graphs hold that resize as constant matrices, checked against transformers' own resize."""
    ckpt, onnx_dir = sam3_track_export
    for name in (START, STEP, START_MASK):
        record = read_manifest(onnx_dir / name)
        assert record is not None and record["format"] == "sam3" and record["precision"] == "fp32"
        assert record["source_sha256"] == sha256(ckpt / "model.safetensors")
        assert {"num_maskmem", "max_pointers", "multimask_min", "multimask_max"} <= set(record)
        parity = record["parity"]
        measured = {k: v for k, v in parity.items() if isinstance(v, dict)}
        cases = {k.rsplit("/", 1)[0] for k in measured}
        assert cases == {"start/box", "start/one_click_multimask", "start_mask/disc", "step/first", "step/growing",
                         "step/full"}
        # the bf16 memory: one rounding step apart at most (as SAM2's check allows)
        assert all(v["max_rel"] <= (1e-2 if "maskmem" in k else FP32_MAX_REL) for k, v in measured.items()), measured


def _frames(image: np.ndarray, n: int) -> list[np.ndarray]:
    """A short pan over a photo: each frame the same size, shifted a few pixels."""
    h, w = image.shape[:2]
    return [np.ascontiguousarray(image[4 * i: h - 4 * (n - i), 6 * i: w - 6 * (n - i)]) for i in range(n + 1)]


def test_onnxruntime_tracking_matches_torch_through_the_registry(sam3_track_export, photos, load_rgb) -> None:
    from reasonseg.segmenters.sam3.onnx_runner import OnnxSam3Segmenter

    ckpt, onnx_dir = sam3_track_export
    torch_seg = _segmenter(ckpt, "segmenter.backend=torch")
    onnx_seg = _segmenter(onnx_dir, "segmenter.backend=onnxruntime")
    assert isinstance(onnx_seg, OnnxSam3Segmenter) and onnx_seg.can_track and torch_seg.can_track
    frames = _frames(load_rgb(photos / "dog.jpg"), 3)
    h, w = frames[0].shape[:2]
    prompts = [Prompt(box=(0.2 * w, 0.25 * h, 0.85 * w, 0.9 * h)), Prompt(points=((0.5 * w, 0.55 * h),))]
    a, b = torch_seg.start_stream(frames[0], prompts, 4), onnx_seg.start_stream(frames[0], prompts, 4)
    results = [(a.last, b.last)] + [(a.step(f), b.step(f)) for f in frames[1:]]
    for t, (ours, theirs) in enumerate(results):
        assert len(ours) == len(theirs) == len(prompts)
        for pa, pb in zip(ours, theirs):
            assert pa.mask.shape == pb.mask.shape == (h, w) and pa.mask.any(), t
            assert mask_iou(pa.mask, pb.mask) >= 0.99, (t, mask_iou(pa.mask, pb.mask))
            assert pb.score == pytest.approx(pa.score, abs=1e-4)
    a.close()
    b.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_missing_graph_is_one_line_naming_the_export(tmp_path, sam3_export) -> None:
    with pytest.raises(ConfigError) as err:
        _segmenter(tmp_path, "segmenter.backend=onnxruntime")  # an empty folder
    assert ENCODER in _one_line(err.value) and "reasonseg export sam3" in str(err.value)
    folder = tmp_path / "no_decoder"
    shutil.copytree(sam3_export[1], folder)
    (folder / DECODER).unlink()
    with pytest.raises(Exception) as err:
        _segmenter(folder, "segmenter.backend=onnxruntime")
    assert DECODER in _one_line(err.value)


def test_a_corrupt_or_stale_graph_is_one_line(tmp_path, sam3_export) -> None:
    folder = tmp_path / "onnx"
    shutil.copytree(sam3_export[1], folder)
    (folder / DECODER).write_bytes(b"\x08\x07garbage" * 64)  # the manifest no longer describes it
    with pytest.raises(CheckpointError, match="stale") as err:
        _segmenter(folder, "segmenter.backend=onnxruntime")
    assert DECODER in _one_line(err.value) and "reasonseg export sam3" in str(err.value)
    record = json.loads(manifest_path(folder / DECODER).read_text())  # a manifest that vouches for the garbage
    manifest_path(folder / DECODER).write_text(json.dumps(record | {"sha256": sha256(folder / DECODER)}))
    with pytest.raises(CheckpointError) as err:
        _segmenter(folder, "segmenter.backend=onnxruntime")
    assert DECODER in _one_line(err.value)


def test_export_errors_are_one_line(tmp_path) -> None:
    sam2 = tmp_path / "not_sam3"
    from tiny_models import tiny_sam2

    tiny_sam2(sam2)
    for ckpt, says in ((tmp_path / "nonesuch", "no such file"), (sam2, "not SAM 3")):
        run = subprocess.run([sys.executable, "-m", "reasonseg.cli.main", "export", "sam3", "--checkpoint",
                              str(ckpt), "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 2 and says in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
