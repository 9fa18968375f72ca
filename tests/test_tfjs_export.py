"""The TF.js export rows (centernet, person-selfie): the TF-semantics reference they are checked against, the
decoder ops the selfie model needs, the parity check catching a wrong conversion, and the set-up's files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reasonseg.cli.main import main as cli
from reasonseg_export.tfjs import convert
from reasonseg.core.graph_manifest import read_manifest
from reasonseg_export.parity import ParityError
from reasonseg_export.tfjs.convert import convert_tfjs_graph
from reasonseg_export.parity import FP32_MAX_REL
from reasonseg_export.tfjs.export import TfjsFormat, check_tfjs, export_tfjs
from reasonseg_export.tfjs.graph import load_tfjs_graph
from reasonseg_export.tfjs.reference import run_tfjs_graph
from test_centernet import (TfjsModel, _conv_attrs, _conv_net, _conv_net_reference, _ints, _node, _placeholder, _run,
                            _s, ref_conv)

CONV_NET_OUTPUTS = ["out_sig", "mean_flat", "pooled", "c3"]


def test_reference_runs_tf_semantics_of_the_conv_ops(tmp_path: Path) -> None:
    """The reference against hand-written TF semantics (fused / depthwise / dilated / explicit-pad convs,
    squeeze-excite, hard-swish, the three bilinear resize modes, max pool)."""
    rng = np.random.default_rng(0)
    m = _conv_net(rng)
    x = rng.uniform(0, 2, size=(1, 9, 10, 3)).astype(np.float32)
    graph = load_tfjs_graph(m.write(tmp_path / "tfjs"))
    got = dict(zip(CONV_NET_OUTPUTS, run_tfjs_graph(graph, {"images": x}, CONV_NET_OUTPUTS)))
    for name, want in _conv_net_reference(m, x).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def _decoder_net(rng: np.random.Generator) -> TfjsModel:
    """The selfie model's decoder ops: transposed conv (SAME, stride 2, an odd output), average pooling with
    TF's uneven SAME padding, AddN, AddV2."""
    m = TfjsModel()
    m.add(_placeholder("x", [1, 5, 6, 4]))
    m.const("size", np.array([1, 9, 12, 3], np.int32))
    m.const("wt", rng.normal(size=(3, 3, 3, 4)).astype(np.float32))  # [kh, kw, out, in]
    m.add(_node("up", "Conv2DBackpropInput", ["size", "wt", "x"], strides=_ints(1, 2, 2, 1), padding=_s("SAME"),
                dilations=_ints(1, 1, 1, 1), data_format=_s("NHWC")))
    m.add(_node("avg", "AvgPool", ["up"], ksize=_ints(1, 3, 3, 1), strides=_ints(1, 2, 2, 1), padding=_s("SAME"),
                data_format=_s("NHWC")))
    m.const("w1", rng.normal(size=(1, 1, 3, 3)).astype(np.float32))
    m.add(_node("a", "Conv2D", ["avg", "w1"], **_conv_attrs()))
    m.add(_node("b", "Relu", ["avg"]))
    m.add(_node("sum", "AddN", ["a", "b", "avg"], N={"i": "3"}))
    m.const("one", np.array(1.0, np.float32))
    m.add(_node("out", "AddV2", ["sum", "one"]))
    return m


def _decoder_reference(m: TfjsModel, x: np.ndarray) -> np.ndarray:
    v = m.values
    # Conv2DBackpropInput is, by definition, the gradient of a SAME conv of the output size w.r.t. its input
    z = torch.zeros(1, 9, 12, 3, dtype=torch.float64, requires_grad=True)
    w = torch.from_numpy(v["wt"].astype(np.float64))
    # SAME, 3x3 / 2: 9 rows -> 5 (pad 1 | 1), 12 columns -> 6 (pad 0 | 1)
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(z.permute(0, 3, 1, 2), (0, 1, 1, 1)),
                                   w.permute(3, 2, 0, 1), stride=2)
    assert y.shape[2:] == (5, 6)
    (y.permute(0, 2, 3, 1) * torch.from_numpy(x.astype(np.float64))).sum().backward()
    up = z.grad.numpy()
    avg = np.zeros((1, 5, 6, 3))  # SAME 3x3 / 2 over 9x12: pad 1 at each end of H, 0 before / 1 after W
    for i in range(5):
        for j in range(6):
            avg[0, i, j] = up[0, max(2 * i - 1, 0):2 * i + 2, 2 * j:2 * j + 3].mean(axis=(0, 1))
    a = ref_conv(avg.astype(np.float32), v["w1"])
    return a + np.maximum(avg, 0) + avg + 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_decoder_ops_convert_and_the_reference_agrees(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = _decoder_net(rng)
    model_json = m.write(tmp_path / "tfjs")
    x = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    want = _decoder_reference(m, x)
    onnx_out = _run(convert_tfjs_graph(model_json, tmp_path / "dec.onnx", ["out"]), {"x": x})["out"]
    (ref_out,) = run_tfjs_graph(load_tfjs_graph(model_json), {"x": x}, ["out"])
    np.testing.assert_allclose(ref_out, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(onnx_out, want, rtol=1e-4, atol=1e-4)


FMT = TfjsFormat("conv-net", tuple(CONV_NET_OUTPUTS), input_scale=2.0, parity_photos=2)


def test_export_checks_against_the_graph_and_writes_a_manifest(tmp_path: Path, photos: Path) -> None:
    model_json = _conv_net(np.random.default_rng(0)).write(tmp_path / "tfjs")
    from reasonseg_export.formats import read_photos

    out = export_tfjs(model_json, tmp_path / "net.onnx", FMT, read_photos(photos, limit=2))
    record = read_manifest(out)
    assert record is not None and record["format"] == "conv-net" and record["parity"]["inputs"] == 3
    assert set(record["parity"]["outputs"]) == set(CONV_NET_OUTPUTS)
    assert all(0 <= e["max_rel"] <= FP32_MAX_REL for e in record["parity"]["outputs"].values())


def test_a_wrong_conversion_is_refused_and_not_left_behind(tmp_path: Path, photos: Path, monkeypatch) -> None:
    """Another graph's weights, or a converter that clips ReLU6 at 5: the check names the output, and the
    file is not written under the name the runtime loads."""
    from reasonseg_export.formats import read_photos

    shots = read_photos(photos, limit=1)
    ours = _conv_net(np.random.default_rng(0)).write(tmp_path / "ours")
    theirs = convert_tfjs_graph(_conv_net(np.random.default_rng(5)).write(tmp_path / "theirs"), tmp_path / "t.onnx",
                                CONV_NET_OUTPUTS)
    with pytest.raises(ParityError, match="conv-net output .* differs from the TF.js graph"):
        check_tfjs(ours, theirs, FMT, shots)

    real = convert.CONVERTERS["Relu6"]

    def relu5(b, node) -> None:  # a converter bug: the clip's upper bound
        real(b, node)
        ref = f"{node.name}:0"
        y = b.add("Clip", [b.tf(ref), b.scalar(0.0, 1, "lo"), b.scalar(5.0, 1, "hi")], f"{node.name}/bug")[0]
        b.set(ref, y, 1, b.rank(ref), False)

    monkeypatch.setitem(convert.CONVERTERS, "Relu6", relu5)
    with pytest.raises(ParityError, match="differs from the TF.js graph"):
        export_tfjs(ours, tmp_path / "bad.onnx", FMT, shots)
    assert not list(tmp_path.glob("bad.onnx*"))


def test_cli_exports_the_person_segmenter_row(tmp_path: Path, photos: Path, capsys) -> None:
    m = TfjsModel()
    m.add(_placeholder("input_1", [1, 16, 16, 3]))
    m.const("w", np.random.default_rng(0).normal(size=(3, 3, 3, 1)).astype(np.float32))
    m.add(_node("logit", "Conv2D", ["input_1", "w"], **_conv_attrs()))
    m.add(_node("prob", "Sigmoid", ["logit"]))
    model_json = m.write(tmp_path / "selfie", outputs={"prob": [1, 16, 16, 1]})
    out = tmp_path / "person_selfie.onnx"
    assert cli(["export", "person-selfie", "--checkpoint", str(model_json), "--out", str(out),
                "--photos", str(photos)]) == 0
    record = json.loads((tmp_path / "person_selfie.onnx.manifest.json").read_text())
    assert record["format"] == "person-selfie" and record["parity"]["outputs"]["prob"]["max_rel"] <= FP32_MAX_REL
    assert cli(["export", "person-selfie", "--out", str(out)]) == 2
    assert "--checkpoint must be the TF.js model.json" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["centernet.onnx", "person_selfie.onnx"])
def test_the_set_up_exported_the_tfjs_models_with_their_check(cache_dir: Path, name: str) -> None:
    record = read_manifest(cache_dir / name)
    assert record is not None, f"{name}: no manifest, or one that does not describe this file"
    assert record["parity"]["photos"] >= 2 and record["parity"]["max_rel_tolerance"] == FP32_MAX_REL
    assert all(e["max_rel"] <= FP32_MAX_REL for e in record["parity"]["outputs"].values())
