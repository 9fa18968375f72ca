"""Tests for the TF.js -> ONNX converter and the CenterNet detector (no TensorFlow needed).

Converter tests build small TF.js graph models on disk and compare onnxruntime against numpy/torch
re-implementations of TF's op semantics.  The real-model test runs only when the set-up step has put
``centernet.onnx`` into $REASONSEG_CACHE (default ~/.cache/reasonseg).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from reasonseg.grounding.detector import COCO_LABELS, CenterNetDetector, Detection
from reasonseg_export.tfjs.convert import convert_tfjs_graph, main as converter_main

# --------------------------------------------------------------------------- writing TF.js models


def _ints(*v: int) -> dict:
    return {"list": {"i": [str(x) for x in v]}}


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _strs(*texts: str) -> dict:
    return {"list": {"s": [base64.b64encode(t.encode()).decode() for t in texts]}}


def _node(name: str, op: str, inputs: list[str] = (), **attr) -> dict:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _placeholder(name: str, shape: list[int], dtype: str = "DT_FLOAT") -> dict:
    return _node(name, "Placeholder", dtype={"type": dtype},
                 shape={"shape": {"dim": [{"size": str(d)} for d in shape]}})


def _conv_attrs(strides=(1, 1, 1, 1), padding="SAME", dilations=(1, 1, 1, 1), fused=None, explicit=()) -> dict:
    attrs = {"strides": _ints(*strides), "padding": _s(padding), "dilations": _ints(*dilations),
             "data_format": _s("NHWC"), "explicit_paddings": _ints(*explicit)}
    if fused is not None:
        attrs.update(fused_ops=_strs(*fused), num_args={"i": "1"}, epsilon={"f": 0})
    return attrs


class TfjsModel:
    """Collects nodes and weights, writes model.json + two weight shards (one byte stream split in two)."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.specs: list[dict] = []
        self.blobs: list[bytes] = []
        self.values: dict[str, np.ndarray] = {}  # what the converter should see after de-quantization

    def const(self, name: str, value: np.ndarray, quant: str | None = None) -> str:
        value = np.asarray(value)
        dtype = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32"}[value.dtype]
        spec = {"name": name, "shape": list(value.shape), "dtype": dtype}
        if quant == "float16":
            blob, seen = value.astype("<f2").tobytes(), value.astype(np.float16).astype(np.float32)
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        elif quant == "uint8":
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / 255.0 or 1.0
            q = np.round((value - lo) / scale).astype(np.uint8)
            blob, seen = q.tobytes(), (q.astype(np.float32) * np.float32(scale) + np.float32(lo))
            spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo}
        else:
            blob, seen = value.astype(value.dtype.newbyteorder("<")).tobytes(), value
        self.specs.append(spec)
        self.blobs.append(blob)
        self.values[name] = seen
        tf_type = "DT_FLOAT" if dtype == "float32" else "DT_INT32"
        self.nodes.append(_node(name, "Const", dtype={"type": tf_type}, value={"tensor": {"dtype": tf_type}}))
        return name

    def add(self, node: dict) -> str:
        self.nodes.append(node)
        return node["name"]

    def write(self, folder: Path, outputs: dict[str, list[int]] | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        data = b"".join(self.blobs)
        half = len(data) // 2
        (folder / "group1-shard1of2.bin").write_bytes(data[:half])
        (folder / "group1-shard2of2.bin").write_bytes(data[half:])
        doc = {
            "format": "graph-model",
            "modelTopology": {"node": self.nodes, "library": {}, "versions": {"producer": 440}},
            "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": self.specs}],
        }
        if outputs:
            doc["signature"] = {"outputs": {k: {"name": k, "dtype": "DT_FLOAT",
                                                "tensorShape": {"dim": [{"size": str(d)} for d in v]}}
                                            for k, v in outputs.items()}}
        path = folder / "model.json"
        path.write_text(json.dumps(doc))
        return path


def _run(onnx_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


# --------------------------------------------------------------------------- numpy / torch references of TF ops


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def ref_conv(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: str = "SAME", dilation: int = 1,
             depthwise: bool = False, explicit: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """TF Conv2D / DepthwiseConv2dNative (NHWC, HWIO / HWCM filters) via torch."""
    kh, kw, cin, cout = w.shape
    if explicit is not None:
        (pt, pb), (pl, pr) = explicit[:2], explicit[2:]
    elif padding == "SAME":
        (pt, pb), (pl, pr) = _same_pads(x.shape[1], kh, stride, dilation), _same_pads(x.shape[2], kw, stride, dilation)
    else:
        pt = pb = pl = pr = 0
    t = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (pl, pr, pt, pb))
    if depthwise:
        weight, groups = torch.from_numpy(w).permute(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw), cin
    else:
        weight, groups = torch.from_numpy(w).permute(3, 2, 0, 1), 1
    y = F.conv2d(t, weight, stride=stride, dilation=dilation, groups=groups)
    return y.permute(0, 2, 3, 1).numpy()


def ref_resize_bilinear(x: np.ndarray, oh: int, ow: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """TF ResizeBilinear (compute_interpolation_weights in TF's resize_bilinear_op.cc)."""

    def axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = (size - 1) / (out - 1) if align_corners and out > 1 else size / out
        i = np.arange(out, dtype=np.float64)
        src = (i + 0.5) * scale - 0.5 if half_pixel else i * scale
        lo = np.floor(src)
        return np.clip(lo, 0, size - 1).astype(int), np.clip(np.ceil(src), 0, size - 1).astype(int), src - lo

    y0, y1, fy = axis(oh, x.shape[1])
    x0, x1, fx = axis(ow, x.shape[2])
    fx = fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bot = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return (top * (1 - fy[None, :, None, None]) + bot * fy[None, :, None, None]).astype(np.float32)


def ref_max_pool3_same(x: np.ndarray) -> np.ndarray:
    t = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (1, 1, 1, 1), value=-np.inf)
    return F.max_pool2d(t, 3, stride=1).permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------- converter: float network ops


def _conv_net(rng: np.random.Generator) -> TfjsModel:
    m = TfjsModel()
    m.add(_placeholder("images", [1, 9, 10, 3]))
    m.const("w1", rng.normal(size=(3, 3, 3, 4)).astype(np.float32), quant="float16")
    m.const("b1", rng.normal(size=(4,)).astype(np.float32))
    m.add(_node("c1", "_FusedConv2D", ["images", "w1", "b1"], **_conv_attrs((1, 2, 2, 1), fused=["BiasAdd", "Relu6"])))
    # depthwise, multiplier 2, plain (no fusion)
    m.const("dw", rng.normal(size=(3, 3, 4, 2)).astype(np.float32), quant="uint8")
    m.add(_node("d1", "DepthwiseConv2dNative", ["c1", "dw"], **_conv_attrs()))
    # fused depthwise (tfjs-only op) with bias + relu, stride 2
    m.const("dw2", rng.normal(size=(3, 3, 8, 1)).astype(np.float32))
    m.const("db2", rng.normal(size=(8,)).astype(np.float32))
    m.add(_node("d2", "FusedDepthwiseConv2dNative", ["d1", "dw2", "db2"],
                **_conv_attrs((1, 2, 2, 1), fused=["BiasAdd", "Relu"])))
    # explicit padding + dilation, plain Conv2D
    m.const("w3", rng.normal(size=(3, 3, 8, 6)).astype(np.float32))
    m.add(_node("c3", "Conv2D", ["d1", "w3"],
                **_conv_attrs(padding="EXPLICIT", dilations=(1, 2, 2, 1), explicit=(0, 0, 2, 1, 1, 2, 0, 0))))
    # squeeze-excite style: Mean keep_dims, Relu, Mul broadcast; hard-swish style Add/Relu6/Mul with scalars
    m.const("axes", np.array([1, 2], np.int32))
    m.add(_node("se_mean", "Mean", ["d1", "axes"], keep_dims={"b": True}))
    m.add(_node("se_relu", "Relu", ["se_mean"]))
    m.add(_node("se_mul", "Mul", ["d1", "se_relu"]))
    m.const("three", np.array(3.0, np.float32), quant="float16")
    m.const("sixth", np.array(0.16662598, np.float32), quant="float16")
    m.add(_node("hs_add", "Add", ["se_mul", "three"]))
    m.add(_node("hs_relu6", "Relu6", ["hs_add"]))
    m.add(_node("hs_mul", "Mul", ["sixth", "se_mul"]))
    m.add(_node("hs", "Mul", ["hs_mul", "hs_relu6"]))
    # the three ResizeBilinear coordinate modes, then concat on channels
    m.const("size", np.array([9, 11], np.int32))
    for name, ac, hp in (("r_asym", False, False), ("r_half", False, True), ("r_align", True, False)):
        m.add(_node(name, "ResizeBilinear", ["c3", "size"], align_corners={"b": ac}, half_pixel_centers={"b": hp}))
    m.const("cat_axis", np.array(3, np.int32))
    m.add(_node("cat", "ConcatV2", ["r_asym", "r_half", "r_align", "cat_axis"], N={"i": "3"}))
    m.add(_node("sig", "Sigmoid", ["cat"]))
    m.add(_node("out_sig", "Identity", ["sig"]))
    # a reduction without keep_dims and a channel-wise BiasAdd on a channels-first tensor
    m.const("bias8", rng.normal(size=(8,)).astype(np.float32))
    m.add(_node("ba", "BiasAdd", ["hs", "bias8"]))
    m.add(_node("mean_flat", "Mean", ["ba", "axes"], keep_dims={"b": False}))
    m.add(_node("pooled", "MaxPool", ["d2"], ksize=_ints(1, 3, 3, 1), strides=_ints(1, 1, 1, 1), padding=_s("SAME"),
                data_format=_s("NHWC")))
    m.add(_node("unused", "Erf", ["pooled"]))  # not on the output path: must not matter
    return m


def _conv_net_reference(m: TfjsModel, x: np.ndarray) -> dict[str, np.ndarray]:
    v = m.values
    c1 = np.clip(ref_conv(x, v["w1"], stride=2) + v["b1"], 0, 6)
    d1 = ref_conv(c1, v["dw"], depthwise=True)
    d2 = np.maximum(ref_conv(d1, v["dw2"], stride=2, depthwise=True) + v["db2"], 0)
    c3 = ref_conv(d1, v["w3"], dilation=2, explicit=(2, 1, 1, 2))
    se = d1 * np.maximum(d1.mean(axis=(1, 2), keepdims=True), 0)
    hs = (v["sixth"] * se) * np.clip(se + v["three"], 0, 6)
    cat = np.concatenate([ref_resize_bilinear(c3, 9, 11, ac, hp)
                          for ac, hp in ((False, False), (False, True), (True, False))], axis=3)
    return {
        "out_sig": 0.5 * (1 + np.tanh(cat / 2)),  # = sigmoid, without exp overflow
        "mean_flat": (hs + v["bias8"]).mean(axis=(1, 2)),
        "pooled": ref_max_pool3_same(d2),
        "c3": c3,
    }


def test_converter_matches_reference_ops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    m = _conv_net(rng)
    model_json = m.write(tmp_path / "tfjs", outputs={"out_sig": [1, 9, 11, 18]})
    out = convert_tfjs_graph(model_json, tmp_path / "net.onnx", ["out_sig", "mean_flat", "pooled:0", "c3"])
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["images"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 9, 10, 3]  # public signature stays NHWC
    x = rng.uniform(0, 2, size=(1, 9, 10, 3)).astype(np.float32)
    got = _run(out, {"images": x})
    want = _conv_net_reference(m, x)
    assert set(got) == {"out_sig", "mean_flat", "pooled", "c3"}
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4, err_msg=name)


def test_default_outputs_come_from_signature(tmp_path: Path) -> None:
    m = _conv_net(np.random.default_rng(1))
    model_json = m.write(tmp_path / "tfjs", outputs={"out_sig": [1, 9, 11, 18]})
    model = onnx.load(str(convert_tfjs_graph(model_json, tmp_path / "sig.onnx")))
    assert [o.name for o in model.graph.output] == ["out_sig"]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 9, 11, 18]


# --------------------------------------------------------------------------- converter: integer / decode ops


def test_converter_decode_ops(tmp_path: Path) -> None:
    """The CenterNet in-graph decode: peak test, top-k, floor div/mod, gather, strided slice."""
    m = TfjsModel()
    m.add(_placeholder("heat", [1, 5, 6, 3]))
    m.add(_placeholder("ints", [7], "DT_INT32"))
    m.add(_placeholder("floats", [7]))
    m.add(_node("mp", "MaxPool", ["heat"], ksize=_ints(1, 3, 3, 1), strides=_ints(1, 1, 1, 1),
                padding=_s("SAME"), data_format=_s("NHWC")))
    m.add(_node("eq", "Equal", ["heat", "mp"]))
    m.add(_node("eqf", "Cast", ["eq"], SrcT={"type": "DT_BOOL"}, DstT={"type": "DT_FLOAT"}))
    m.add(_node("peaks", "Mul", ["heat", "eqf"]))
    m.const("flat_shape", np.array([1, -1], np.int32))
    m.add(_node("flat", "Reshape", ["peaks", "flat_shape"]))
    m.const("k", np.array(4, np.int32))
    m.add(_node("topk", "TopKV2", ["flat", "k"], sorted={"b": True}))
    m.const("ncls", np.array(3, np.int32))
    m.const("width", np.array(6, np.int32))
    m.add(_node("cls", "FloorMod", ["topk:1", "ncls"]))
    m.add(_node("pix", "FloorDiv", ["topk:1", "ncls"]))
    m.add(_node("col", "FloorMod", ["pix", "width"]))
    m.add(_node("row", "FloorDiv", ["pix", "width"]))
    m.const("minus1", np.array(-1, np.int32))
    m.add(_node("col_e", "ExpandDims", ["col", "minus1"]))
    m.add(_node("col_f", "Cast", ["col_e"], SrcT={"type": "DT_INT32"}, DstT={"type": "DT_FLOAT"}))
    m.const("table", np.arange(30 * 2, dtype=np.float32).reshape(30, 2) * 0.5)
    m.const("gaxis", np.array(0, np.int32))
    m.add(_node("pix_flat", "Reshape", ["pix", "neg1"]))
    m.const("neg1", np.array([-1], np.int32))
    m.add(_node("gathered", "GatherV2", ["table", "pix_flat", "gaxis"], batch_dims={"i": "0"}))
    m.const("ss_b", np.array([0, 1], np.int32))
    m.const("ss_e", np.array([0, 2], np.int32))
    m.const("ss_s", np.array([1, 1], np.int32))
    m.add(_node("second", "StridedSlice", ["gathered", "ss_b", "ss_e", "ss_s"], begin_mask={"i": "1"},
                end_mask={"i": "1"}, shrink_axis_mask={"i": "2"}, ellipsis_mask={"i": "0"}, new_axis_mask={"i": "0"}))
    m.const("divs", np.array([3, -3, 3, -3, 2, 5, -4], np.int32))
    m.add(_node("idiv", "FloorDiv", ["ints", "divs"]))
    m.add(_node("imod", "FloorMod", ["ints", "divs"]))
    m.const("fdivs", np.array([3, -3, 3, -3, 2.5, 5, -4], np.float32))
    m.add(_node("fmod", "FloorMod", ["floats", "fdivs"]))
    model_json = m.write(tmp_path / "tfjs")
    outs = ["topk", "topk:1", "cls", "row", "col_f", "second", "idiv", "imod", "fmod"]
    onnx_path = convert_tfjs_graph(model_json, tmp_path / "decode.onnx", outs)

    rng = np.random.default_rng(2)
    heat = rng.permutation(90).astype(np.float32).reshape(1, 5, 6, 3) / 90  # distinct: no top-k ties
    ints = np.array([7, 7, -7, -7, 5, 0, 9], np.int32)
    floats = np.array([7, 7, -7, -7, 5, 0, 9.5], np.float32)
    got = _run(onnx_path, {"heat": heat, "ints": ints, "floats": floats})

    peaks = (heat * (heat == ref_max_pool3_same(heat))).reshape(1, -1)
    idx = np.argsort(-peaks[0], kind="stable")[:4][None]
    pix = idx // 3
    np.testing.assert_allclose(got["topk"], np.take_along_axis(peaks, idx, 1))
    assert got["topk:1"].dtype == np.int32 and (got["topk:1"] == idx).all()
    assert (got["cls"] == idx % 3).all() and (got["row"] == pix // 6).all()
    np.testing.assert_array_equal(got["col_f"], (pix % 6)[..., None].astype(np.float32))
    np.testing.assert_allclose(got["second"], (np.arange(60, dtype=np.float32).reshape(30, 2) * 0.5)[pix.ravel(), 1])
    divs = np.array([3, -3, 3, -3, 2, 5, -4])
    np.testing.assert_array_equal(got["idiv"], ints // divs)  # numpy // and % are floor ops, like TF
    np.testing.assert_array_equal(got["imod"], ints % divs)
    np.testing.assert_allclose(got["fmod"], np.mod(floats, np.array([3, -3, 3, -3, 2.5, 5, -4], np.float32)))


# --------------------------------------------------------------------------- converter: errors and CLI


def test_unsupported_op_names_the_op(tmp_path: Path) -> None:
    m = TfjsModel()
    m.add(_placeholder("x", [1, 4]))
    m.add(_node("weird", "Erf", ["x"]))
    model_json = m.write(tmp_path / "tfjs")
    out = tmp_path / "bad.onnx"
    with pytest.raises(ValueError, match=r"unsupported TF op\(s\): Erf"):
        convert_tfjs_graph(model_json, out, ["weird"])
    assert not out.exists() and not list(tmp_path.glob(".bad.onnx*"))  # atomic: nothing half-written


def test_unsupported_fused_op_and_missing_inputs(tmp_path: Path) -> None:
    m = TfjsModel()
    m.add(_placeholder("x", [1, 4, 4, 2]))
    m.const("w", np.ones((1, 1, 2, 2), np.float32))
    m.const("b", np.zeros((2,), np.float32))
    m.add(_node("c", "_FusedConv2D", ["x", "w", "b"], **_conv_attrs(fused=["BiasAdd", "Swish"])))
    model_json = m.write(tmp_path / "tfjs")
    with pytest.raises(ValueError, match="Swish"):
        convert_tfjs_graph(model_json, tmp_path / "o.onnx", ["c"])
    with pytest.raises(ValueError, match="nope"):
        convert_tfjs_graph(model_json, tmp_path / "o.onnx", ["nope"])
    (tmp_path / "tfjs" / "group1-shard2of2.bin").unlink()
    with pytest.raises(FileNotFoundError, match="group1-shard2of2.bin"):
        convert_tfjs_graph(model_json, tmp_path / "o.onnx", ["c"])
    with pytest.raises(FileNotFoundError):
        convert_tfjs_graph(tmp_path / "missing" / "model.json", tmp_path / "o.onnx")


def test_cli_writes_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _conv_net(np.random.default_rng(3))
    model_json = m.write(tmp_path / "tfjs", outputs={"out_sig": [1, 9, 11, 18]})
    out = tmp_path / "cli" / "model.onnx"
    assert converter_main([str(model_json), str(out), "--outputs", "out_sig,pooled"]) == 0
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["out_sig", "pooled"]
    assert "wrote" in capsys.readouterr().out
    assert converter_main([str(model_json), str(tmp_path / "x.onnx"), "--outputs", "unused"]) == 1


# --------------------------------------------------------------------------- detector on a fake CenterNet


def _fake_centernet(path: Path, heat: np.ndarray, wh: np.ndarray) -> Path:
    """ONNX with CenterNet's I/O whose outputs are fixed maps (input only touched so it stays an input)."""
    zero = helper.make_node("ReduceMean", ["tower_0/images"], ["m"], keepdims=0)
    nodes = [zero, helper.make_node("Mul", ["m", "zero"], ["z"])]
    for name, arr in (("tower_0/keypoints", heat), ("tower_0/wh", wh)):
        nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [name]))
    inits = [numpy_helper.from_array(heat.astype(np.float32), "tower_0/keypoints_c"),
             numpy_helper.from_array(wh.astype(np.float32), "tower_0/wh_c"),
             numpy_helper.from_array(np.array(0, np.float32), "zero")]
    graph = helper.make_graph(
        nodes, "fake", [helper.make_tensor_value_info("tower_0/images", TensorProto.FLOAT, [1, 512, 512, 3])],
        [helper.make_tensor_value_info("tower_0/keypoints", TensorProto.FLOAT, list(heat.shape)),
         helper.make_tensor_value_info("tower_0/wh", TensorProto.FLOAT, list(wh.shape))], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(scope="module")
def fake_detector(tmp_path_factory: pytest.TempPathFactory) -> CenterNetDetector:
    heat = np.zeros((1, 128, 128, 80), np.float32)
    wh = np.zeros((1, 128, 128, 4), np.float32)
    # a dog peak at cell (row 64, col 32) with a smaller shoulder around it, and a weaker cat next to it
    heat[0, 60:69, 28:37, 16] = 0.3
    heat[0, 63:66, 31:34, 16] = 0.5
    heat[0, 64, 32, 16] = 0.9
    wh[0, 64, 32] = [40, 20, 60, 30]  # left, top, right, bottom in input pixels from anchor (128, 256)
    heat[0, 64, 50, 15] = 0.4
    wh[0, 64, 50] = [8, 8, 8, 8]
    heat[0, 2, 2, 0] = 0.95  # a peak inside the letterbox padding (for a wide image): must be dropped
    wh[0, 2, 2] = [4, 4, 4, 4]
    path = _fake_centernet(tmp_path_factory.mktemp("fake") / "fake.onnx", heat, wh)
    return CenterNetDetector(path, class_nms_iou=None)


def test_detector_decodes_and_maps_letterbox(fake_detector: CenterNetDetector) -> None:
    image = np.zeros((300, 1024, 3), np.uint8)  # scale 0.5, 150 rows -> dy = (512 - 150) // 2 = 181
    dets = fake_detector.detect(image, score_floor=0.35, num_points=5)
    assert [d.label for d in dets] == ["dog", "cat"]
    dog = dets[0]
    assert isinstance(dog, Detection) and dog.class_id == 16 and dog.score == pytest.approx(0.9)
    sy = 150 / 300
    want = ((128 - 40) / 0.5, (256 - 20 - 181) / sy, (128 + 60) / 0.5, (256 + 30 - 181) / sy)
    assert dog.box == pytest.approx(want)
    assert len(dog.points) == 5
    assert dog.points[0] == pytest.approx(((32 * 4 + 2) / 0.5, (64 * 4 + 2 - 181) / sy))  # the peak cell centre
    for x, y in dog.points:
        assert want[0] <= x <= want[2] and want[1] <= y <= want[3]
    assert dets[1].class_id == 15 and dets[1].box == pytest.approx(((200 - 8) * 2, (256 - 8 - 181) * 2,
                                                                    (200 + 8) * 2, (256 + 8 - 181) * 2))


def test_detector_points_are_sorted_and_limited(fake_detector: CenterNetDetector) -> None:
    image = np.zeros((512, 512, 3), np.uint8)
    dogs = [d for d in fake_detector.detect(image, score_floor=0.35, num_points=30) if d.label == "dog"]
    assert len(dogs) == 1
    pts = dogs[0].points
    assert len(pts) == 30
    # best first: the peak, then its 3x3 shoulder (0.5), then cells of the 9x9 plateau (0.3)
    cells = [(round((x - 2) / 4), round((y - 2) / 4)) for x, y in pts]
    assert cells[0] == (32, 64)
    assert set(cells[1:9]) == {(32 + i, 64 + j) for i in (-1, 0, 1) for j in (-1, 0, 1)} - {(32, 64)}
    assert all(28 <= cx <= 36 and 60 <= cy <= 68 for cx, cy in cells[9:])
    assert len(set(cells)) == 30
    assert fake_detector.detect(image, score_floor=0.35, num_points=0)[0].points == ()
    assert len(fake_detector.detect(image, score_floor=0.35, max_detections=1)) == 1
    assert [d.label for d in fake_detector.detect(image, score_floor=0.6)] == ["person", "dog"]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
     np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0, 3), np.uint8), [[0, 0, 0]]],
)
def test_detector_rejects_bad_images(fake_detector: CenterNetDetector, bad: object) -> None:
    with pytest.raises(ValueError, match="image"):
        fake_detector.detect(bad)  # type: ignore[arg-type]


def test_detector_missing_or_corrupt_model(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        CenterNetDetector(missing)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(ValueError, match="corrupt.onnx"):
        CenterNetDetector(corrupt)


def test_coco_labels() -> None:
    assert len(COCO_LABELS) == 80 and len(set(COCO_LABELS)) == 80
    assert (COCO_LABELS[0], COCO_LABELS[16], COCO_LABELS[9], COCO_LABELS[79]) == (
        "person", "dog", "traffic light", "toothbrush")


# --------------------------------------------------------------------------- the real converted model

# hand-measured boxes on darknet's data/dog.jpg (768x576) live in targets.BOXES; a white pickup is
# often called a car by COCO models, so the truck may match either label.
DOG_JPG_LABELS = {"dog": {"dog"}, "truck": {"truck", "car"}, "bicycle": {"bicycle"}}


def test_real_model_dog_jpg(cache_dir: Path, load_rgb) -> None:
    from reasonseg.grounding.selection import box_iou
    from targets import BOXES

    image = load_rgb(cache_dir / "images" / "dog.jpg")
    dets = CenterNetDetector(cache_dir / "centernet.onnx").detect(image, score_floor=0.15)
    for what, labels in DOG_JPG_LABELS.items():
        box = BOXES[("dog.jpg", what)]
        ious = [box_iou(d.box, box) for d in dets if d.label in labels]
        assert ious and max(ious) >= 0.5, f"{what}: best IoU {max(ious, default=0):.2f} in {dets}"
    for d in dets:
        assert 0 <= d.box[0] < d.box[2] <= 768 and 0 <= d.box[1] < d.box[3] <= 576
        assert d.points and all(d.box[0] <= x <= d.box[2] and d.box[1] <= y <= d.box[3] for x, y in d.points)


def test_zoom_out_pass_finds_frame_filling_objects(cache_dir: Path, load_rgb) -> None:
    """A dog cropped to fill the frame: the native pass reads it as a cat; the shrunk pass (SNIP-style
    size ranges) finds the dog with a box over most of the frame."""
    from targets import BOXES

    x0, y0, x1, y1 = map(int, BOXES[("dog.jpg", "dog")])
    crop = np.ascontiguousarray(load_rgb(cache_dir / "images" / "dog.jpg")[y0:y1, x0:x1])
    det = CenterNetDetector(cache_dir / "centernet.onnx")
    native = det.detect(crop, score_floor=0.12)
    zoomed = det.detect(crop, score_floor=0.12, zoom_out=2.0)
    assert native[0].label != "dog"
    assert zoomed[0].label == "dog" and zoomed[0].score > native[0].score
    bx0, by0, bx1, by1 = zoomed[0].box
    h, w = crop.shape[:2]
    assert (bx1 - bx0) * (by1 - by0) >= 0.5 * w * h
    assert all(bx0 <= x <= bx1 and by0 <= y <= by1 for x, y in zoomed[0].points)
