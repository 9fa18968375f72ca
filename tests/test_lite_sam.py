"""LiteSAM model definition, weights I/O, ONNX export and the prompt segmenters (tiny random model, no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reasonseg.models.lite_sam.configuration import LiteSamConfig
from reasonseg.models.lite_sam.convert import convert_checkpoint, load_lite_sam, save_lite_sam
from reasonseg.models.lite_sam.modeling import LiteSam, build_lite_sam
from reasonseg.models.lite_sam.prompt_encoder import boxes_to_points
from reasonseg.core.prompt import Segmenter
from reasonseg.segmenters.lite_sam.runners import ImageEmbedding, OnnxLiteSam, TorchLiteSam, build_prompt, preprocess_image
from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE
from reasonseg_export.lite_sam import export_lite_sam_onnx

# 64 px input, 16x16x32 embedding; windows chosen so stage 1 and 3 need window padding, stage 2 is one window
TINY = LiteSamConfig(
    img_size=64,
    embed_dims=(8, 16, 24, 32),
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 2, 4),
    window_sizes=(5, 5, 16, 3),
    prompt_dim=32,
    mask_in_chans=4,
    decoder_depth=2,
    decoder_heads=2,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)

# torch (float32, CPU) vs onnxruntime: max abs diff relative to the largest magnitude of the torch output
# (observed ~5e-7 on this tiny model; ~1.3e-6 for the real LiteMedSAM logits)
ONNX_RTOL = 1e-4


def _randomized(model: LiteSam, seed: int = 0) -> LiteSam:
    """Random values for every parameter and buffer (incl. BN statistics) so parity tests are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> LiteSam:
    return _randomized(build_lite_sam(TINY))


@pytest.fixture(scope="module")
def onnx_dir(tiny: LiteSam, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    export_lite_sam_onnx(tiny, out)
    return out


def _image(h: int = 50, w: int = 80, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-6))


# ---------------------------------------------------------------------------------------------- model


def test_default_config_is_litemedsam() -> None:
    sd = build_lite_sam().state_dict()
    assert len(sd) == 435
    assert sd["image_encoder.patch_embed.seq.0.c.weight"].shape == (32, 3, 1, 1)
    assert sd["image_encoder.layers.2.blocks.0.attn.attention_biases"].shape == (5, 196)
    assert sd["mask_decoder.mask_tokens.weight"].shape == (4, 256)
    assert sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape == (2, 128)
    assert not any("attention_bias_idxs" in k for k in sd)


def test_shapes_and_box_forward_matches_decode(tiny: LiteSam) -> None:
    x = torch.rand(2, 3, 64, 64)
    boxes = torch.tensor([[5.0, 6.0, 40.0, 50.0], [0.0, 0.0, 63.0, 63.0]])
    with torch.inference_mode():
        emb = tiny.encode(x)
        logits, iou = tiny(x, boxes)
        sparse, dense = tiny.prompt_encoder(points=None, boxes=boxes, masks=None)
        ref, ref_iou = tiny.mask_decoder(emb, tiny.prompt_encoder.get_dense_pe(), sparse, dense, False)
    assert emb.shape == (2, 32, 16, 16)
    assert logits.shape == (2, 1, 64, 64) and iou.shape == (2, 1)
    torch.testing.assert_close(logits, ref, rtol=0, atol=0)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=0)
    coords, labels = boxes_to_points(boxes)
    assert coords.shape == (2, 2, 2) and labels.tolist() == [[2.0, 3.0], [2.0, 3.0]]


def test_prompt_encoder_pads_points_without_box(tiny: LiteSam) -> None:
    pts = torch.tensor([[[10.0, 20.0]]])
    with torch.inference_mode():
        sparse, _ = tiny.prompt_encoder(points=(pts, torch.tensor([[1.0]])), boxes=None, masks=None)
        direct = tiny.prompt_encoder.embed_points(torch.tensor([[[10.0, 20.0], [0.0, 0.0]]]),
                                                  torch.tensor([[1.0, -1.0]]))
    assert sparse.shape == (1, 2, 32)
    torch.testing.assert_close(sparse, direct, rtol=0, atol=0)
    torch.testing.assert_close(sparse[0, 1], tiny.prompt_encoder.not_a_point_embed.weight[0], rtol=0, atol=0)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        LiteSamConfig(depths=(1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LiteSamConfig(embed_dims=(8, 15, 24, 32))  # 15 not divisible by 4 heads


# ---------------------------------------------------------------------------------------------- weights I/O


def test_save_load_roundtrip(tiny: LiteSam, tmp_path: Path) -> None:
    path = save_lite_sam(tiny, tmp_path / "w.safetensors")
    loaded = load_lite_sam(path, TINY)
    assert not loaded.training
    x, boxes = torch.rand(1, 3, 64, 64), torch.tensor([[3.0, 4.0, 30.0, 60.0]])
    with torch.inference_mode():
        a, b = tiny(x, boxes), loaded(x, boxes)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_convert_checkpoint(tiny: LiteSam, tmp_path: Path, wrap: str | None) -> None:
    sd = tiny.state_dict()
    pth = tmp_path / "ckpt.pth"
    torch.save(sd if wrap is None else {wrap: sd, "epoch": 3}, pth)
    out = convert_checkpoint(pth, tmp_path / "out" / "w.safetensors", TINY)
    assert out.is_file()
    loaded = load_lite_sam(out, TINY)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape"])
def test_convert_checkpoint_is_strict(tiny: LiteSam, tmp_path: Path, damage: str) -> None:
    sd = dict(tiny.state_dict())
    if damage == "missing":
        del sd["mask_decoder.iou_token.weight"]
    elif damage == "unexpected":
        sd["extra.weight"] = torch.zeros(1)
    else:
        sd["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 7)
    pth = tmp_path / "bad.pth"
    torch.save({"model": sd}, pth)
    out = tmp_path / "w.safetensors"
    with pytest.raises(ValueError) as err:
        convert_checkpoint(pth, out, TINY)
    assert damage.split()[0] in str(err.value).replace("wrong shape", "shape") and "\n" not in str(err.value)
    assert not out.exists()


def test_convert_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "nope.pth", tmp_path / "w.safetensors", TINY)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        convert_checkpoint(garbage, tmp_path / "w.safetensors", TINY)


def test_load_missing_weights(tmp_path: Path) -> None:
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        load_lite_sam(path, TINY)
    with pytest.raises(FileNotFoundError):
        TorchLiteSam(path, TINY)


def test_load_corrupt_weights(tiny: LiteSam, tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    good = save_lite_sam(tiny, tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-1000])
    for bad in (junk, truncated):
        with pytest.raises(ValueError) as err:
            load_lite_sam(bad, TINY)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="does not fit its config"):  # tiny weights, default config
        load_lite_sam(good)


# ---------------------------------------------------------------------------------------------- ONNX


def test_onnx_encoder_parity(tiny: LiteSam, onnx_dir: Path) -> None:
    seg = OnnxLiteSam.from_dir(onnx_dir, num_threads=1)
    assert seg.input_size == 64
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ref = tiny.encode(x).numpy()
    (out,) = seg.encoder.run(None, {"image": x.numpy()})
    assert out.shape == (1, 32, 16, 16)
    assert _rel_diff(ref, out) < ONNX_RTOL


@pytest.mark.parametrize(
    "coords,labels",
    [
        ([[10.0, 12.0], [50.0, 40.0]], [2.0, 3.0]),  # box
        ([[20.0, 30.0], [0.0, 0.0]], [1.0, -1.0]),  # one point + padding
        ([[20.0, 30.0], [5.0, 9.0], [10.0, 12.0], [50.0, 40.0]], [1.0, 0.0, 2.0, 3.0]),  # points + box
    ],
)
def test_onnx_decoder_parity(tiny: LiteSam, onnx_dir: Path, coords: list, labels: list) -> None:
    seg = OnnxLiteSam.from_dir(onnx_dir, num_threads=1)
    emb = torch.randn(1, 32, 16, 16)
    c, lab = torch.tensor([coords]), torch.tensor([labels])
    with torch.inference_mode():
        ref_logits, ref_iou = tiny.decode(emb, c, lab, multimask_output=None)  # every mask token
    logits, iou = seg.decoder.run(None, {"image_embeddings": emb.numpy(), "point_coords": c.numpy(),
                                         "point_labels": lab.numpy()})
    assert logits.shape == (1, 4, 64, 64) and iou.shape == (1, 4)
    assert _rel_diff(ref_logits.numpy(), logits) < ONNX_RTOL
    assert _rel_diff(ref_iou.numpy(), iou) < ONNX_RTOL


def test_onnx_missing_and_corrupt(onnx_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        OnnxLiteSam(tmp_path / "encoder.onnx", onnx_dir / DECODER_FILE)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError):
        OnnxLiteSam(bad, onnx_dir / DECODER_FILE)


# ---------------------------------------------------------------------------------------------- segmenters


def test_preprocessing() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 200
    img[:, 100:] = 100
    x, resized = preprocess_image(img, 256)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    assert resized == (128, 256)
    assert x[0, :, :128, :100].min() == 1.0 and x[0, :, :128, 160:].max() == 0.0  # min-max normalised
    assert not x[0, :, 128:].any()  # bottom padding
    grey, _ = preprocess_image(img[:, :, 0], 256)
    np.testing.assert_array_equal(grey, x)
    emb = ImageEmbedding(np.zeros((1, 1, 1, 1), np.float32), (100, 200), resized, 256)
    coords, labels = build_prompt(emb, (10, 20, 110, 90))
    np.testing.assert_allclose(coords, [[[12.8, 25.6], [140.8, 115.2]]], rtol=1e-6)
    assert labels.tolist() == [[2.0, 3.0]]
    coords, labels = build_prompt(emb, None, np.array([[50, 50]]), np.array([0]))
    assert labels.tolist() == [[0.0, -1.0]] and coords.shape == (1, 2, 2)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_segmenter_mask(tiny: LiteSam, onnx_dir: Path, backend: str) -> None:
    seg = TorchLiteSam(tiny) if backend == "torch" else OnnxLiteSam.from_dir(onnx_dir)
    assert isinstance(seg, Segmenter)
    img = _image(50, 80)
    emb = seg.encode(img)
    assert emb.original_size == (50, 80) and emb.resized_size == (40, 64) and emb.embedding.shape == (1, 32, 16, 16)
    for box, pts, labels in [
        ((5.0, 5.0, 60.0, 45.0), None, None),
        (None, np.array([[20.0, 25.0], [60.0, 10.0]]), np.array([1, 0])),
        ((5.0, 5.0, 60.0, 45.0), np.array([[20.0, 25.0]]), np.array([1])),
    ]:
        mask, score = seg.decode(emb, box, pts, labels)
        assert mask.shape == (50, 80) and mask.dtype == np.bool_
        assert isinstance(score, float) and np.isfinite(score)


def test_backends_agree(tiny: LiteSam, onnx_dir: Path) -> None:
    t, o = TorchLiteSam(tiny), OnnxLiteSam.from_dir(onnx_dir)
    img = _image(70, 45, seed=3)
    et, eo = t.encode(img), o.encode(img)
    assert _rel_diff(et.embedding, eo.embedding) < ONNX_RTOL
    mt, st = t.decode(et, (3, 4, 40, 60))
    mo, so = o.decode(et, (3, 4, 40, 60))  # embeddings are interchangeable between backends
    assert abs(st - so) < 1e-3 * max(1.0, abs(st))
    assert (mt != mo).mean() < 0.01


@pytest.mark.parametrize(
    "bad",
    [
        [[1, 2, 3]],
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((10,), np.uint8),
        np.full((8, 8, 3), np.nan, np.float32),
        np.zeros((8, 8, 3), bool),
    ],
)
def test_bad_image(tiny: LiteSam, bad: object) -> None:
    with pytest.raises(ValueError):
        TorchLiteSam(tiny).encode(bad)  # type: ignore[arg-type]


def test_bad_prompts(tiny: LiteSam) -> None:
    seg = TorchLiteSam(tiny)
    emb = seg.encode(_image())
    for box, pts, labels in [
        (None, None, None),
        (None, np.zeros((0, 2)), None),
        ((10, 10, 5, 5), None, None),
        ((1, 2, 3), None, None),
        (None, np.array([[1.0, 2.0]]), np.array([2])),
        (None, np.array([1.0, 2.0]), None),
    ]:
        with pytest.raises(ValueError):
            seg.decode(emb, box, pts, labels)  # type: ignore[arg-type]


def test_mask_choice_takes_the_largest_mask_token_inside_the_box(tiny: LiteSam) -> None:
    """largest_in_box: of the four token masks, the largest one that stays inside the box prompt."""
    from reasonseg.core.prompt import Prompt
    from reasonseg.segmenters.lite_sam.runners import _largest_in_box

    box = (10.0, 10.0, 30.0, 30.0)
    small, large, spill = (np.zeros((40, 40), bool) for _ in range(3))
    small[15:20, 15:20] = True
    large[11:29, 11:29] = True
    spill[0:40, 0:40] = True  # the whole frame: mostly outside the box
    assert _largest_in_box([(small, 0.9), (spill, 0.2), (large, 0.3)], box)[0] is large
    assert _largest_in_box([(small, 0.9), (spill, 0.2)], box)[0] is small
    seg = TorchLiteSam(tiny, mask_choice="largest_in_box")
    emb = seg.encode(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    cands = seg.decode_all(emb, (8, 6, 40, 30))
    assert len(cands) == 4 and np.array_equal(seg.decode(emb, (8, 6, 40, 30))[0], cands[0][0])
    chosen = seg.predict(emb, Prompt(box=(8, 6, 40, 30))).mask
    assert any(np.array_equal(chosen, m) for m, _ in cands)
