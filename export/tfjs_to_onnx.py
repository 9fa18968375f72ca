"""Convert a TensorFlow.js graph model (model.json + weight shards) to ONNX.

No TensorFlow is needed at set-up or run time: the model.json topology is a
GraphDef in JSON form, so we walk it ourselves and emit ONNX (opset 17) nodes
with ``onnx.helper``.

Layout: the model's public signature stays NHWC (TF's layout).  Convolutions,
pooling and resizing run channels-first (NCHW) inside the graph; activations
stay channels-first while they flow through element-wise ops, concat and
keep-dims reductions, and are transposed back only where an op needs TF's
layout (reshape, gather, outputs ...).  Each transpose is emitted once per
tensor and reused.

Usage::

    python -m reasonseg_export.tfjs_to_onnx model.json out.onnx [--outputs a,b]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from reasonseg.core.output_files import write_bytes

__all__ = ["convert_tfjs_graph", "load_tfjs_graph", "SUPPORTED_OPS", "TfjsGraph"]

OPSET = 17
# IR 8 is the oldest IR that carries opset 17; keeps the file loadable by older onnxruntime builds on robots.
IR_VERSION = 8

# NHWC <-> NCHW permutations and the axis map "TF axis -> channels-first axis".
_TO_CF = (0, 3, 1, 2)
_TO_TF = (0, 2, 3, 1)
_TF_AXIS_TO_CF = (0, 2, 3, 1)

_TF_DTYPES: dict[str, tuple[int, type]] = {
    "DT_FLOAT": (TensorProto.FLOAT, np.float32),
    "DT_HALF": (TensorProto.FLOAT16, np.float16),
    "DT_DOUBLE": (TensorProto.DOUBLE, np.float64),
    "DT_INT32": (TensorProto.INT32, np.int32),
    "DT_INT64": (TensorProto.INT64, np.int64),
    "DT_INT8": (TensorProto.INT8, np.int8),
    "DT_UINT8": (TensorProto.UINT8, np.uint8),
    "DT_INT16": (TensorProto.INT16, np.int16),
    "DT_UINT16": (TensorProto.UINT16, np.uint16),
    "DT_BOOL": (TensorProto.BOOL, np.bool_),
}
# dtypes a tfjs weight manifest may declare (before de-quantization); little-endian on disk.
_WEIGHT_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
}
_QUANT_DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype("<f2"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
}
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}


# --------------------------------------------------------------------------- reading the TF.js model


@dataclass(frozen=True)
class TfNode:
    name: str
    op: str
    inputs: tuple[str, ...]  # tensor refs "node:idx"; control inputs ("^x") are dropped
    attr: dict[str, Any]


@dataclass(frozen=True)
class TfjsGraph:
    nodes: dict[str, TfNode]
    weights: dict[str, np.ndarray]
    signature: dict[str, Any]


def _tensor_ref(name: str) -> str:
    """Normalise an input/output name to "node:idx" so ":0" and bare names compare equal."""
    parts = name.split(":")
    if len(parts) == 1:
        return f"{name}:0"
    if len(parts) == 2 and parts[1].isdigit():
        return name
    raise ValueError(f"unsupported tensor name {name!r}")


def _read_shard(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"TF.js weight shard missing: {path}")
    return path.read_bytes()


def _decode_weight(spec: dict[str, Any], buf: bytes, offset: int) -> tuple[np.ndarray, int]:
    """Return (array, bytes consumed) for one weightsManifest entry, de-quantizing if needed."""
    name, dtype = spec["name"], spec["dtype"]
    shape = tuple(int(d) for d in spec.get("shape", []))
    count = int(np.prod(shape, dtype=np.int64))
    if dtype not in _WEIGHT_DTYPES:
        raise ValueError(f"weight {name!r}: unsupported dtype {dtype!r}")
    quant = spec.get("quantization")
    stored = _WEIGHT_DTYPES[dtype]
    if quant:
        if quant.get("dtype") not in _QUANT_DTYPES:
            raise ValueError(f"weight {name!r}: unsupported quantization dtype {quant.get('dtype')!r}")
        stored = _QUANT_DTYPES[quant["dtype"]]
    nbytes = count * stored.itemsize
    if offset + nbytes > len(buf):
        raise ValueError(f"weight {name!r}: shard data ends early ({len(buf)} bytes, need {offset + nbytes})")
    raw = np.frombuffer(buf, dtype=stored, count=count, offset=offset)
    if not quant:
        arr = raw.astype(np.bool_) if dtype == "bool" else raw.astype(stored.newbyteorder("="))
    elif quant["dtype"] == "float16":
        arr = raw.astype(np.float32)
    else:  # affine uint8/uint16: value = q * scale + min (tfjs-converter convention)
        arr = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    if quant and dtype == "int32":
        arr = np.round(arr).astype(np.int32)
    elif quant and dtype == "bool":
        arr = arr != 0
    return np.array(arr.reshape(shape), order="C"), nbytes  # ascontiguousarray would turn 0-d into 1-d


def _load_weights(model_dir: Path, manifest: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        # a group's shards are one byte stream split into files of <= 4 MB
        buf = b"".join(_read_shard(model_dir / p) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            weights[spec["name"]], used = _decode_weight(spec, buf, offset)
            offset += used
        if offset != len(buf):
            raise ValueError(f"weight shards {group['paths']} hold {len(buf)} bytes, manifest describes {offset}")
    return weights


def load_tfjs_graph(model_json: Path) -> TfjsGraph:
    """Parse model.json and its weight shards (no graph conversion yet)."""
    model_json = Path(model_json)
    if not model_json.is_file():
        raise FileNotFoundError(f"TF.js model.json not found: {model_json}")
    try:
        doc = json.loads(model_json.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{model_json} is not valid JSON: {exc}") from None
    topo = doc.get("modelTopology") or {}
    if doc.get("format", "graph-model") != "graph-model" or "node" not in topo:
        raise ValueError(f"{model_json} is not a TF.js graph model (format={doc.get('format')!r})")
    if topo.get("library", {}).get("function"):
        raise ValueError(f"{model_json}: graphs with functions (control flow) are not supported")
    nodes: dict[str, TfNode] = {}
    for raw in topo["node"]:
        inputs = tuple(_tensor_ref(i) for i in raw.get("input", []) if not i.startswith("^"))
        nodes[raw["name"]] = TfNode(raw["name"], raw["op"], inputs, raw.get("attr", {}))
    weights = _load_weights(model_json.parent, doc.get("weightsManifest", []))
    return TfjsGraph(nodes, weights, doc.get("signature") or {})


# --------------------------------------------------------------------------- attribute helpers


def _attr_int(node: TfNode, key: str, default: int | None = None) -> int:
    if key in node.attr:
        return int(node.attr[key].get("i", 0))
    if default is None:
        raise ValueError(f"node {node.name!r} ({node.op}) lacks attribute {key!r}")
    return default


def _attr_bool(node: TfNode, key: str, default: bool = False) -> bool:
    return bool(node.attr[key].get("b", False)) if key in node.attr else default


def _attr_float(node: TfNode, key: str, default: float) -> float:
    return float(node.attr[key].get("f", 0.0)) if key in node.attr else default


def _attr_str(node: TfNode, key: str, default: str) -> str:
    if key not in node.attr or "s" not in node.attr[key]:
        return default
    return base64.b64decode(node.attr[key]["s"]).decode()


def _attr_ints(node: TfNode, key: str, default: Sequence[int] = ()) -> list[int]:
    if key not in node.attr:
        return list(default)
    return [int(v) for v in node.attr[key].get("list", {}).get("i", [])]


def _attr_strs(node: TfNode, key: str) -> list[str]:
    if key not in node.attr:
        return []
    return [base64.b64decode(v).decode() for v in node.attr[key].get("list", {}).get("s", [])]


def _attr_type(node: TfNode, key: str, default: str = "DT_FLOAT") -> str:
    return node.attr[key].get("type", default) if key in node.attr else default


def _onnx_type(tf_type: str, where: str) -> int:
    if tf_type not in _TF_DTYPES:
        raise ValueError(f"{where}: unsupported dtype {tf_type}")
    return _TF_DTYPES[tf_type][0]


def _inline_const(node: TfNode) -> np.ndarray:
    """Decode a Const whose value is inline in the graph (tfjs normally moves all of them to weights)."""
    tensor = node.attr.get("value", {}).get("tensor")
    if tensor is None:
        raise ValueError(f"Const {node.name!r} has no value in the weights manifest or the graph")
    tf_type = tensor.get("dtype", "DT_FLOAT")
    if tf_type not in _TF_DTYPES:
        raise ValueError(f"Const {node.name!r}: unsupported dtype {tf_type}")
    np_type = np.dtype(_TF_DTYPES[tf_type][1]).newbyteorder("<")
    shape = tuple(int(d.get("size", 0)) for d in tensor.get("tensorShape", {}).get("dim", []))
    if "tensorContent" in tensor:
        arr = np.frombuffer(base64.b64decode(tensor["tensorContent"]), dtype=np_type)
    else:
        fields = ("floatVal", "intVal", "int64Val", "boolVal", "halfVal", "doubleVal")
        key = next((k for k in fields if k in tensor), None)
        vals = tensor.get(key, []) if key else []
        arr = np.asarray(vals, dtype=np_type)
        if arr.size == 1 and int(np.prod(shape)) > 1:  # proto "splat" form
            arr = np.full(shape, arr[0], dtype=np_type)
    return arr.astype(np_type.newbyteorder("=")).reshape(shape)


# --------------------------------------------------------------------------- ONNX builder with layout tracking


@dataclass
class _Val:
    name: str  # ONNX value holding this TF tensor
    dtype: int  # ONNX element type
    rank: int | None
    cf: bool = False  # stored channels-first (NCHW) while TF sees NHWC


@dataclass
class _Builder:
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    vals: dict[str, _Val] = field(default_factory=dict)  # TF tensor ref -> ONNX value
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # TF tensor ref -> constant
    _names: set[str] = field(default_factory=set)
    _cache: dict[tuple[str, str], str] = field(default_factory=dict)

    def reserve(self, names: Iterable[str]) -> None:
        self._names.update(names)

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._names:
            i += 1
            name = f"{hint}__{i}"
        self._names.add(name)
        return name

    def add(self, op: str, inputs: Sequence[str], hint: str, n_out: int = 1, **attrs: Any) -> list[str]:
        outs = [self.fresh(f"{hint}:{k}" if k else hint) for k in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.fresh(f"{hint}/{op}"), **attrs))
        return outs

    def init(self, arr: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    # --- constants
    def is_const(self, ref: str) -> bool:
        return ref in self.consts

    def const(self, ref: str, what: str) -> np.ndarray:
        if ref not in self.consts:
            raise ValueError(f"{what} must be a constant, got computed tensor {ref!r}")
        return self.consts[ref]

    def rank(self, ref: str) -> int | None:
        return self.consts[ref].ndim if ref in self.consts else self.vals[ref].rank

    def dtype(self, ref: str) -> int:
        if ref in self.consts:
            return helper.np_dtype_to_tensor_dtype(self.consts[ref].dtype)
        return self.vals[ref].dtype

    def cf_capable(self, ref: str) -> bool:
        return self.rank(ref) == 4 or (ref in self.consts and self.consts[ref].ndim <= 4)

    # --- layout access
    def tf(self, ref: str) -> str:
        """ONNX name of `ref` in TF's own layout."""
        if ref in self.consts:
            return self._cached(ref, "const", lambda: self.init(self.consts[ref], ref))
        val = self.vals[ref]
        if not val.cf:
            return val.name
        # keyed by ONNX value so Identity aliases share one transpose
        return self._cached(val.name, "tf", lambda: self.add("Transpose", [val.name], f"{ref}/to_nhwc",
                                                             perm=list(_TO_TF))[0])

    def cf(self, ref: str) -> str:
        """ONNX name of `ref` channels-first; constants of rank <= 4 are broadcast-permuted."""
        if ref in self.consts:
            return self._cached(ref, "const_cf", lambda: self.init(_const_to_cf(self.consts[ref]), f"{ref}/cf"))
        val = self.vals[ref]
        if val.cf:
            return val.name
        if val.rank != 4:
            raise ValueError(f"tensor {ref!r} has rank {val.rank}; channels-first needs rank 4")
        return self._cached(val.name, "cf", lambda: self.add("Transpose", [val.name], f"{ref}/to_nchw",
                                                             perm=list(_TO_CF))[0])

    def _cached(self, ref: str, kind: str, make: Callable[[], str]) -> str:
        key = (ref, kind)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def set(self, ref: str, name: str, dtype: int, rank: int | None, cf: bool = False) -> None:
        self.vals[ref] = _Val(name, dtype, rank, cf)

    def scalar(self, value: float | int, dtype: int, hint: str) -> str:
        """A shared scalar initializer (Clip bounds etc. repeat for every Relu6)."""
        arr = np.array(value, dtype=helper.tensor_dtype_to_np_dtype(dtype))
        return self._cached(f"{arr.dtype}:{arr.item()!r}", "scalar", lambda: self.init(arr, hint))


def _const_to_cf(arr: np.ndarray) -> np.ndarray:
    """Make an NHWC-broadcastable constant broadcast the same way against an NCHW tensor."""
    if arr.ndim == 0:
        return arr
    padded = arr.reshape((1,) * (4 - arr.ndim) + arr.shape)
    return np.ascontiguousarray(padded.transpose(_TO_CF))


def _out(node: TfNode, k: int = 0) -> str:
    return f"{node.name}:{k}"


# --------------------------------------------------------------------------- op converters

_Converter = Callable[[_Builder, TfNode], None]
_CONVERTERS: dict[str, _Converter] = {}


def _register(*ops: str) -> Callable[[_Converter], _Converter]:
    def deco(fn: _Converter) -> _Converter:
        for op in ops:
            _CONVERTERS[op] = fn
        return fn

    return deco


def _use_cf(b: _Builder, refs: Iterable[str]) -> bool:
    """Run an n-ary op channels-first only if an input already is and all others can follow for free."""
    refs = list(refs)
    any_cf = any(r in b.vals and b.vals[r].cf for r in refs)
    return any_cf and all(b.cf_capable(r) for r in refs)


def _inputs_in(b: _Builder, refs: Sequence[str]) -> tuple[list[str], bool]:
    cf = _use_cf(b, refs)
    return [b.cf(r) if cf else b.tf(r) for r in refs], cf


def _out_rank(b: _Builder, refs: Sequence[str]) -> int | None:
    ranks = [b.rank(r) for r in refs]
    return None if any(r is None for r in ranks) else max(ranks)  # type: ignore[type-var]


_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Elu": "Elu", "Exp": "Exp", "Log": "Log",
          "Sqrt": "Sqrt", "Abs": "Abs", "Neg": "Neg", "Floor": "Floor", "Ceil": "Ceil", "Reciprocal": "Reciprocal",
          "Softplus": "Softplus", "LogicalNot": "Not"}


@_register(*_UNARY)
def _unary(b: _Builder, node: TfNode) -> None:
    (x,) = node.inputs[:1]
    cf = _use_cf(b, [x])
    y = b.add(_UNARY[node.op], [b.cf(x) if cf else b.tf(x)], node.name)[0]
    b.set(_out(node), y, b.dtype(x), b.rank(x), cf)


@_register("Relu6")
def _relu6(b: _Builder, node: TfNode) -> None:
    x = node.inputs[0]
    cf = _use_cf(b, [x])
    y = _clip(b, b.cf(x) if cf else b.tf(x), b.dtype(x), 0.0, 6.0, node.name)
    b.set(_out(node), y, b.dtype(x), b.rank(x), cf)


def _clip(b: _Builder, x: str, dtype: int, lo: float, hi: float, hint: str) -> str:
    return b.add("Clip", [x, b.scalar(lo, dtype, f"{hint}/min"), b.scalar(hi, dtype, f"{hint}/max")], hint)[0]


@_register("Identity", "Snapshot", "StopGradient")
def _identity(b: _Builder, node: TfNode) -> None:
    src = node.inputs[0]
    if b.is_const(src):
        b.consts[_out(node)] = b.consts[src]
    else:
        b.vals[_out(node)] = b.vals[src]  # alias: no node needed


_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Div": "Div", "Maximum": "Max", "Minimum": "Min", "Pow": "Pow"}
_COMPARE = {"Equal": "Equal", "Less": "Less", "Greater": "Greater", "LessEqual": "LessOrEqual",
            "GreaterEqual": "GreaterOrEqual", "LogicalAnd": "And", "LogicalOr": "Or"}


@_register(*_BINARY, *_COMPARE, "NotEqual", "SquaredDifference", "FloorDiv", "FloorMod")
def _binary(b: _Builder, node: TfNode) -> None:
    refs = list(node.inputs[:2])
    if node.op == "BiasAdd" and _attr_str(node, "data_format", "NHWC") == "NCHW":
        bias = b.const(refs[1], f"{node.name}: NCHW BiasAdd bias")
        names, cf = [b.tf(refs[0]), b.init(bias.reshape(-1, 1, 1), f"{refs[1]}/chw")], False
    else:
        names, cf = _inputs_in(b, refs)
    dtype = b.dtype(refs[0])
    if node.op in _BINARY:
        y = b.add(_BINARY[node.op], names, node.name)[0]
    elif node.op in _COMPARE:
        y, dtype = b.add(_COMPARE[node.op], names, node.name)[0], TensorProto.BOOL
    elif node.op == "NotEqual":
        eq = b.add("Equal", names, f"{node.name}/eq")[0]
        y, dtype = b.add("Not", [eq], node.name)[0], TensorProto.BOOL
    elif node.op == "SquaredDifference":
        d = b.add("Sub", names, f"{node.name}/diff")[0]
        y = b.add("Mul", [d, d], node.name)[0]
    elif node.op == "FloorDiv":
        y = _floor_div(b, names[0], names[1], dtype, node.name)
    else:
        y = _floor_mod(b, names[0], names[1], dtype, node.name)
    b.set(_out(node), y, dtype, _out_rank(b, refs), cf)


def _floor_div(b: _Builder, x: str, y: str, dtype: int, hint: str) -> str:
    if dtype in _FLOAT_TYPES:
        return b.add("Floor", [b.add("Div", [x, y], f"{hint}/div")[0]], hint)[0]
    # ONNX integer Div truncates toward zero; TF floors, so step down when the remainder's sign differs
    q = b.add("Div", [x, y], f"{hint}/trunc")[0]
    r = b.add("Sub", [x, b.add("Mul", [q, y], f"{hint}/qy")[0]], f"{hint}/rem")[0]
    zero = b.scalar(0, dtype, f"{hint}/zero")
    nonzero = b.add("Not", [b.add("Equal", [r, zero], f"{hint}/r0")[0]], f"{hint}/rnz")[0]
    signs = b.add("Xor", [b.add("Less", [r, zero], f"{hint}/rneg")[0], b.add("Less", [y, zero], f"{hint}/yneg")[0]],
                  f"{hint}/sgn")[0]
    fix = b.add("Cast", [b.add("And", [nonzero, signs], f"{hint}/fix")[0]], f"{hint}/fixc", to=dtype)[0]
    return b.add("Sub", [q, fix], hint)[0]


def _floor_mod(b: _Builder, x: str, y: str, dtype: int, hint: str) -> str:
    if dtype in _FLOAT_TYPES:  # ONNX float Mod is C fmod (sign of dividend); TF wants sign of divisor
        fl = _floor_div(b, x, y, dtype, f"{hint}/fdiv")
        return b.add("Sub", [x, b.add("Mul", [fl, y], f"{hint}/prod")[0]], hint)[0]
    return b.add("Mod", [x, y], hint, fmod=0)[0]  # integer fmod=0 already follows the divisor's sign


@_register("Cast")
def _cast(b: _Builder, node: TfNode) -> None:
    x = node.inputs[0]
    to = _onnx_type(_attr_type(node, "DstT"), f"Cast {node.name!r}")
    cf = _use_cf(b, [x])
    y = b.add("Cast", [b.cf(x) if cf else b.tf(x)], node.name, to=to)[0]
    b.set(_out(node), y, to, b.rank(x), cf)


def _spatial_axes(fmt: str, node: TfNode) -> tuple[int, int]:
    if fmt not in ("NHWC", "NCHW"):
        raise ValueError(f"node {node.name!r} ({node.op}): unsupported data_format {fmt!r}")
    return (1, 2) if fmt == "NHWC" else (2, 3)


def _pad_attrs(node: TfNode, hw: tuple[int, int]) -> dict[str, Any]:
    padding = _attr_str(node, "padding", "VALID")
    if padding == "SAME":  # TF puts the odd pixel at the end, like ONNX SAME_UPPER
        return {"auto_pad": "SAME_UPPER"}
    if padding == "VALID":
        return {"pads": [0, 0, 0, 0]}
    if padding == "EXPLICIT":
        ep = _attr_ints(node, "explicit_paddings")
        if len(ep) != 8:
            raise ValueError(f"node {node.name!r}: explicit_paddings needs 8 values, got {ep}")
        (t, bot), (left, r) = ep[2 * hw[0]: 2 * hw[0] + 2], ep[2 * hw[1]: 2 * hw[1] + 2]
        return {"pads": [t, left, bot, r]}
    raise ValueError(f"node {node.name!r} ({node.op}): unsupported padding {padding!r}")


def _conv_weights(w: np.ndarray, depthwise: bool) -> tuple[np.ndarray, int]:
    """TF filter -> ONNX (O, I/group, kH, kW) and group count."""
    if w.ndim != 4:
        raise ValueError(f"conv filter must be 4-D, got shape {w.shape}")
    kh, kw, cin, mult = w.shape
    if depthwise:  # TF output channel c*mult + m == ONNX group c, member m
        return np.ascontiguousarray(w.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None]), cin
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1)), 1


_FUSED_ACTS = {"Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh", "Prelu"}


def _fused_parts(b: _Builder, node: TfNode, w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Fold BiasAdd / FusedBatchNorm of a fused conv into (weights, bias); return the trailing activation."""
    fused = _attr_strs(node, "fused_ops")
    extra = list(node.inputs[2:])
    bias: np.ndarray | None = None
    act: str | None = None
    for op in fused:
        if op == "BiasAdd":
            bias = b.const(extra.pop(0), f"{node.name}: fused bias").astype(np.float32)
        elif op == "FusedBatchNorm":
            scale, offset, mean, var = (b.const(extra.pop(0), f"{node.name}: batch-norm arg") for _ in range(4))
            k = scale / np.sqrt(var + _attr_float(node, "epsilon", 1e-3))
            w = w * k.reshape(-1, 1, 1, 1)
            bias = offset - mean * k
        elif op in _FUSED_ACTS and act is None:
            act = op
        else:
            raise ValueError(f"node {node.name!r} ({node.op}): unsupported fused op {op!r} in {fused}")
    return w, bias, act


def _activation(b: _Builder, node: TfNode, y: str, act: str | None, dtype: int, cf: bool) -> str:
    hint = f"{node.name}/{act}"
    if act is None:
        return y
    if act == "Relu6":
        return _clip(b, y, dtype, 0.0, 6.0, hint)
    if act == "LeakyRelu":
        return b.add("LeakyRelu", [y], hint, alpha=_attr_float(node, "leakyrelu_alpha", 0.2))[0]
    if act == "Prelu":
        alpha = b.const(node.inputs[-1], f"{node.name}: prelu alpha").astype(np.float32)
        alpha = alpha.reshape(-1, 1, 1) if cf else alpha
        return b.add("PRelu", [y, b.init(alpha, f"{node.name}/alpha")], hint)[0]
    return b.add(act, [y], hint)[0]


@_register("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _conv(b: _Builder, node: TfNode) -> None:
    fmt = _attr_str(node, "data_format", "NHWC")
    hw = _spatial_axes(fmt, node)
    x_ref, w_ref = node.inputs[:2]
    depthwise = "Depthwise" in node.op
    w, group = _conv_weights(b.const(w_ref, f"{node.name}: filter").astype(np.float32), depthwise)
    w, bias, act = _fused_parts(b, node, w) if node.op.startswith(("_Fused", "Fused")) else (w, None, None)
    cf = fmt == "NHWC"  # NHWC convs run on the channels-first view; NCHW convs already are
    ins = [b.cf(x_ref) if cf else b.tf(x_ref), b.init(w.astype(np.float32), f"{w_ref}/oihw")]
    if bias is not None:
        ins.append(b.init(bias.astype(np.float32), f"{node.name}/bias"))
    strides = _attr_ints(node, "strides", [1, 1, 1, 1])
    dil = _attr_ints(node, "dilations", [1, 1, 1, 1])
    y = b.add("Conv", ins, node.name, group=group, kernel_shape=list(w.shape[2:]),
              strides=[strides[hw[0]], strides[hw[1]]], dilations=[dil[hw[0]], dil[hw[1]]], **_pad_attrs(node, hw))[0]
    y = _activation(b, node, y, act, TensorProto.FLOAT, True)
    b.set(_out(node), y, TensorProto.FLOAT, 4, cf)


@_register("Conv2DBackpropInput")
def _conv_transpose(b: _Builder, node: TfNode) -> None:
    """Transposed conv (a decoder's upsampling): TF filter [kH, kW, out, in] -> ONNX (in, out, kH, kW)."""
    fmt = _attr_str(node, "data_format", "NHWC")
    hw = _spatial_axes(fmt, node)
    size_ref, w_ref, x_ref = node.inputs[:3]
    size = b.const(size_ref, f"{node.name}: output size").astype(np.int64).reshape(-1)
    w = np.ascontiguousarray(b.const(w_ref, f"{node.name}: filter").astype(np.float32).transpose(3, 2, 0, 1))
    padding = _attr_str(node, "padding", "VALID")
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"node {node.name!r} ({node.op}): unsupported padding {padding!r}")
    strides = _attr_ints(node, "strides", [1, 1, 1, 1])
    dil = _attr_ints(node, "dilations", [1, 1, 1, 1])
    cf = fmt == "NHWC"
    # With output_shape given, ONNX derives the padding; SAME_UPPER crops total//2 at the start, as TF's
    # SAME (the gradient of a SAME conv) does.
    y = b.add("ConvTranspose", [b.cf(x_ref) if cf else b.tf(x_ref), b.init(w, f"{w_ref}/iohw")], node.name,
              kernel_shape=list(w.shape[2:]), strides=[strides[hw[0]], strides[hw[1]]],
              dilations=[dil[hw[0]], dil[hw[1]]], output_shape=[int(size[hw[0]]), int(size[hw[1]])],
              **({"auto_pad": "SAME_UPPER"} if padding == "SAME" else {}))[0]
    b.set(_out(node), y, TensorProto.FLOAT, 4, cf)


@_register("AddN")
def _add_n(b: _Builder, node: TfNode) -> None:
    refs = list(node.inputs[:_attr_int(node, "N", len(node.inputs))])
    names, cf = _inputs_in(b, refs)
    b.set(_out(node), b.add("Sum", names, node.name)[0], b.dtype(refs[0]), _out_rank(b, refs), cf)


@_register("MaxPool", "AvgPool")
def _pool(b: _Builder, node: TfNode) -> None:
    fmt = _attr_str(node, "data_format", "NHWC")
    hw = _spatial_axes(fmt, node)
    k, s = _attr_ints(node, "ksize"), _attr_ints(node, "strides")
    cf = fmt == "NHWC"
    x = b.cf(node.inputs[0]) if cf else b.tf(node.inputs[0])
    # TF excludes padding from averages (count_include_pad=0) and never selects it for max: ONNX defaults
    y = b.add("MaxPool" if node.op == "MaxPool" else "AveragePool", [x], node.name,
              kernel_shape=[k[hw[0]], k[hw[1]]], strides=[s[hw[0]], s[hw[1]]], **_pad_attrs(node, hw))[0]
    b.set(_out(node), y, b.dtype(node.inputs[0]), 4, cf)


@_register("ResizeBilinear", "ResizeNearestNeighbor")
def _resize(b: _Builder, node: TfNode) -> None:
    x_ref, size_ref = node.inputs[:2]
    size = b.const(size_ref, f"{node.name}: output size").astype(np.int64).reshape(-1)
    align, half = _attr_bool(node, "align_corners"), _attr_bool(node, "half_pixel_centers")
    if align and half:
        raise ValueError(f"node {node.name!r}: align_corners and half_pixel_centers both set")
    bilinear = node.op == "ResizeBilinear"
    if align:
        mode = "align_corners"
    elif half:  # TF nearest with half-pixel centres samples floor((i+.5)*scale), i.e. tf_half_pixel_for_nn
        mode = "half_pixel" if bilinear else "tf_half_pixel_for_nn"
    else:
        mode = "asymmetric"
    x = b.cf(x_ref)
    # sizes must cover every axis in opset 17: take N, C from the runtime shape
    shape = b.add("Shape", [x], f"{node.name}/shape")[0]
    nc = b.add("Slice", [shape, b.init(np.array([0], np.int64), f"{node.name}/s0"),
                         b.init(np.array([2], np.int64), f"{node.name}/s2")], f"{node.name}/nc")[0]
    sizes = b.add("Concat", [nc, b.init(size, f"{node.name}/hw")], f"{node.name}/sizes", axis=0)[0]
    y = b.add("Resize", [x, "", "", sizes], node.name, mode="linear" if bilinear else "nearest",
              coordinate_transformation_mode=mode, nearest_mode="floor" if not align else "round_prefer_ceil")[0]
    b.set(_out(node), y, b.dtype(x_ref), 4, True)


_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}


@_register(*_REDUCE)
def _reduce(b: _Builder, node: TfNode) -> None:
    x_ref, ax_ref = node.inputs[:2]
    rank = b.rank(x_ref)
    axes = [int(a) for a in b.const(ax_ref, f"{node.name}: reduction axes").reshape(-1)]
    if rank is None and any(a < 0 for a in axes):
        raise ValueError(f"node {node.name!r}: negative reduction axes need a known input rank")
    axes = sorted(a + rank if a < 0 else a for a in axes)  # type: ignore[operator]
    keep = _attr_bool(node, "keep_dims")
    if not axes:  # TF reduces nothing; ONNX would reduce everything
        _identity(b, node)
        return
    # reduce a channels-first input in place when the result needs no transpose: with keep_dims it stays
    # channels-first; without, the surviving axes must keep TF's order (e.g. NHWC mean over H, W -> [N, C])
    src_cf = _use_cf(b, [x_ref])
    left = [_TF_AXIS_TO_CF[a] for a in range(4) if a not in axes]
    in_cf = src_cf and (keep or left == sorted(left))
    x = b.cf(x_ref) if in_cf else b.tf(x_ref)
    onnx_axes = sorted(_TF_AXIS_TO_CF[a] for a in axes) if in_cf else axes
    cf = in_cf and keep
    if node.op == "Sum":  # ReduceSum takes axes as an input since opset 13
        y = b.add("ReduceSum", [x, b.init(np.array(onnx_axes, np.int64), f"{node.name}/axes")], node.name,
                  keepdims=int(keep))[0]
    else:
        y = b.add(_REDUCE[node.op], [x], node.name, axes=onnx_axes, keepdims=int(keep))[0]
    out_rank = None if rank is None else (rank if keep else rank - len(axes))
    b.set(_out(node), y, b.dtype(x_ref), out_rank, cf)


@_register("ConcatV2", "Concat")
def _concat(b: _Builder, node: TfNode) -> None:
    refs = list(node.inputs)
    ax_ref, refs = (refs[-1], refs[:-1]) if node.op == "ConcatV2" else (refs[0], refs[1:])
    axis = int(b.const(ax_ref, f"{node.name}: concat axis"))
    rank = _out_rank(b, refs)
    if axis < 0:
        if rank is None:
            raise ValueError(f"node {node.name!r}: negative concat axis needs known ranks")
        axis += rank
    cf = _use_cf(b, refs) and all(b.rank(r) == 4 for r in refs)
    names = [b.cf(r) if cf else b.tf(r) for r in refs]
    y = b.add("Concat", names, node.name, axis=_TF_AXIS_TO_CF[axis] if cf else axis)[0]
    b.set(_out(node), y, b.dtype(refs[0]), rank, cf)


@_register("Reshape")
def _reshape(b: _Builder, node: TfNode) -> None:
    x_ref, s_ref = node.inputs[:2]
    if b.is_const(s_ref):
        shape = b.consts[s_ref].astype(np.int64).reshape(-1)
        s_name, rank = b.init(shape, f"{node.name}/shape"), int(shape.size)
        allow_zero = int(bool((shape == 0).any()))  # TF 0 means "size 0", ONNX 0 would mean "copy"
    else:
        s_name = b.add("Cast", [b.tf(s_ref)], f"{node.name}/shape64", to=TensorProto.INT64)[0]
        rank, allow_zero = None, 0
    y = b.add("Reshape", [b.tf(x_ref), s_name], node.name, allowzero=allow_zero)[0]
    b.set(_out(node), y, b.dtype(x_ref), rank)


@_register("ExpandDims")
def _expand_dims(b: _Builder, node: TfNode) -> None:
    x_ref, d_ref = node.inputs[:2]
    dim = np.asarray(b.const(d_ref, f"{node.name}: dim"), np.int64).reshape(1)
    y = b.add("Unsqueeze", [b.tf(x_ref), b.init(dim, f"{node.name}/axes")], node.name)[0]
    rank = b.rank(x_ref)
    b.set(_out(node), y, b.dtype(x_ref), None if rank is None else rank + 1)


@_register("Squeeze")
def _squeeze(b: _Builder, node: TfNode) -> None:
    x_ref = node.inputs[0]
    dims = _attr_ints(node, "squeeze_dims") or _attr_ints(node, "axis")
    ins = [b.tf(x_ref)] + ([b.init(np.array(dims, np.int64), f"{node.name}/axes")] if dims else [])
    rank = b.rank(x_ref)
    y = b.add("Squeeze", ins, node.name)[0]
    b.set(_out(node), y, b.dtype(x_ref), None if rank is None or not dims else rank - len(dims))


_I64_MAX, _I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


@_register("StridedSlice")
def _strided_slice(b: _Builder, node: TfNode) -> None:
    x_ref = node.inputs[0]
    begin, end, step = (b.const(r, f"{node.name}: slice spec").astype(np.int64).reshape(-1) for r in node.inputs[1:4])
    if _attr_int(node, "new_axis_mask", 0) or _attr_int(node, "ellipsis_mask", 0):
        raise ValueError(f"node {node.name!r}: StridedSlice with new_axis_mask/ellipsis_mask is not supported")
    bmask, emask, smask = (_attr_int(node, k, 0) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
    starts, ends, shrink = [], [], []
    for i, (s0, e0, st) in enumerate(zip(begin, end, step)):
        if smask >> i & 1:  # take one element, drop the axis afterwards
            starts.append(s0)
            ends.append(_I64_MAX if s0 == -1 else s0 + 1)
            shrink.append(i)
            continue
        starts.append((0 if st > 0 else _I64_MAX) if bmask >> i & 1 else s0)
        ends.append((_I64_MAX if st > 0 else _I64_MIN) if emask >> i & 1 else e0)
    arrs = [np.array(v, np.int64) for v in (starts, ends, list(range(len(begin))), step)]
    ins = [b.tf(x_ref)] + [b.init(a, f"{node.name}/{k}") for a, k in zip(arrs, ("starts", "ends", "axes", "steps"))]
    y = b.add("Slice", ins, f"{node.name}/slice" if shrink else node.name)[0]
    if shrink:
        y = b.add("Squeeze", [y, b.init(np.array(shrink, np.int64), f"{node.name}/shrink")], node.name)[0]
    rank = b.rank(x_ref)
    b.set(_out(node), y, b.dtype(x_ref), None if rank is None else rank - len(shrink))


@_register("TopKV2")
def _top_k(b: _Builder, node: TfNode) -> None:
    x_ref, k_ref = node.inputs[:2]
    k = np.asarray(b.const(k_ref, f"{node.name}: k"), np.int64).reshape(1)
    vals, idx = b.add("TopK", [b.tf(x_ref), b.init(k, f"{node.name}/k")], node.name, n_out=2,
                      axis=-1, largest=1, sorted=1)
    idx_type = _onnx_type(_attr_type(node, "index_type", "DT_INT32"), f"TopKV2 {node.name!r}")
    idx = b.add("Cast", [idx], f"{node.name}/indices", to=idx_type)[0]  # TF returns int32 indices
    rank = b.rank(x_ref)
    b.set(_out(node, 0), vals, b.dtype(x_ref), rank)
    b.set(_out(node, 1), idx, idx_type, rank)


@_register("GatherV2")
def _gather(b: _Builder, node: TfNode) -> None:
    p_ref, i_ref, a_ref = node.inputs[:3]
    if _attr_int(node, "batch_dims", 0) != 0:
        raise ValueError(f"node {node.name!r}: GatherV2 with batch_dims != 0 is not supported")
    axis = int(b.const(a_ref, f"{node.name}: gather axis"))
    y = b.add("Gather", [b.tf(p_ref), b.tf(i_ref)], node.name, axis=axis)[0]
    pr, ir = b.rank(p_ref), b.rank(i_ref)
    b.set(_out(node), y, b.dtype(p_ref), None if pr is None or ir is None else pr - 1 + ir)


SUPPORTED_OPS: frozenset[str] = frozenset(_CONVERTERS) | {"Const", "Placeholder"}


# --------------------------------------------------------------------------- graph assembly


def _needed_nodes(graph: TfjsGraph, outputs: Sequence[str]) -> list[TfNode]:
    """Nodes the outputs depend on, in topological order (iterative DFS: graphs can be deep)."""
    order: list[TfNode] = []
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    for out in outputs:
        stack: list[tuple[str, int]] = [(out.split(":")[0], 0)]
        while stack:
            name, i = stack.pop()
            if name not in graph.nodes:
                raise ValueError(f"tensor {name!r} is not produced by any node of the graph")
            node = graph.nodes[name]
            if i == 0:
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise ValueError(f"graph has a cycle through {name!r}")
                state[name] = 1
            if i < len(node.inputs):
                stack.append((name, i + 1))
                dep = node.inputs[i].split(":")[0]
                if state.get(dep) != 2:
                    stack.append((dep, 0))
            else:
                state[name] = 2
                order.append(node)
    return order


def _check_supported(nodes: Sequence[TfNode]) -> None:
    bad = sorted({n.op for n in nodes if n.op not in SUPPORTED_OPS})
    if bad:
        where = {op: next(n.name for n in nodes if n.op == op) for op in bad}
        detail = ", ".join(f"{op} (e.g. node {name!r})" for op, name in where.items())
        raise ValueError(f"unsupported TF op(s): {detail}")


def _shape_of(node: TfNode, graph: TfjsGraph) -> list[int | str] | None:
    dims = node.attr.get("shape", {}).get("shape", {})
    if not dims:
        sig_inputs = graph.signature.get("inputs") or {}
        sig = sig_inputs.get(node.name) or sig_inputs.get(f"{node.name}:0")
        dims = (sig or {}).get("tensorShape", {})
    if not dims or dims.get("unknownRank"):
        return None
    out: list[int | str] = []
    for k, d in enumerate(dims.get("dim", [])):
        size = int(d.get("size", -1))
        out.append(size if size >= 0 else f"{node.name}_dim{k}")
    return out


def _default_outputs(graph: TfjsGraph) -> list[str]:
    sig_out = graph.signature.get("outputs") or {}
    if sig_out:
        return [v.get("name", k) for k, v in sig_out.items()]
    consumed = {i.split(":")[0] for n in graph.nodes.values() for i in n.inputs}
    return [n.name for n in graph.nodes.values() if n.name not in consumed and n.op != "Const"]


def _output_shape(graph: TfjsGraph, name: str) -> list[int | str] | None:
    sig = (graph.signature.get("outputs") or {})
    entry = sig.get(name) or sig.get(name.split(":")[0]) or next(
        (v for v in sig.values() if v.get("name") in (name, name.split(":")[0])), None)
    if not entry or "tensorShape" not in entry:
        return None
    return [int(d["size"]) if int(d.get("size", -1)) >= 0 else f"{name}_dim{k}"
            for k, d in enumerate(entry["tensorShape"].get("dim", []))]


def _public_name(tensor: str) -> str:
    ref = _tensor_ref(tensor)
    return ref[:-2] if ref.endswith(":0") else ref


def build_onnx_model(graph: TfjsGraph, output_names: Sequence[str] | None = None) -> onnx.ModelProto:
    outputs = [o for o in (output_names or _default_outputs(graph))]
    if not outputs:
        raise ValueError("no outputs to convert")
    nodes = _needed_nodes(graph, outputs)
    _check_supported(nodes)
    b = _Builder()
    # reserve the public names so no internal value can take them
    publics = [_public_name(o) for o in outputs]
    b.reserve(publics + [n.name for n in nodes if n.op == "Placeholder"])
    graph_inputs: list[onnx.ValueInfoProto] = []
    for node in nodes:
        if node.op == "Const":
            b.consts[_out(node)] = graph.weights[node.name] if node.name in graph.weights else _inline_const(node)
        elif node.op == "Placeholder":
            dtype = _onnx_type(_attr_type(node, "dtype"), f"Placeholder {node.name!r}")
            shape = _shape_of(node, graph)
            graph_inputs.append(helper.make_tensor_value_info(node.name, dtype, shape))
            b.set(_out(node), node.name, dtype, None if shape is None else len(shape))
        else:
            _CONVERTERS[node.op](b, node)
    graph_outputs: list[onnx.ValueInfoProto] = []
    ranks: dict[str, int | None] = {}
    for out, public in zip(outputs, publics):
        ref = _tensor_ref(out)
        src = b.tf(ref)
        b.nodes.append(helper.make_node("Identity", [src], [public], name=b.fresh(f"{public}/output")))
        graph_outputs.append(helper.make_tensor_value_info(public, b.dtype(ref), _output_shape(graph, public)))
        ranks[public] = b.rank(ref)
    g = helper.make_graph(b.nodes, "tfjs_graph", graph_inputs, graph_outputs, initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="reasonseg.tfjs_to_onnx", ir_version=IR_VERSION)
    model = _with_output_shapes(model, ranks)
    onnx.checker.check_model(model, full_check=True)
    return model


def _with_output_shapes(model: onnx.ModelProto, ranks: dict[str, int | None]) -> onnx.ModelProto:
    """The checker wants a shape on every graph output: infer it, else fall back to symbolic dims."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for out in inferred.graph.output:
        if out.type.tensor_type.HasField("shape"):
            continue
        rank = ranks.get(out.name)
        if rank is None:
            raise ValueError(f"cannot determine the rank of output {out.name!r}")
        dims = [f"{out.name}_dim{k}" for k in range(rank)]
        out.type.CopyFrom(helper.make_tensor_type_proto(out.type.tensor_type.elem_type, dims))
    del inferred.graph.value_info[:]  # keep the file lean; runtimes re-infer
    return inferred


def _write_atomic(data: bytes, out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out_path, data)


def convert_tfjs_graph(model_json: Path, out_path: Path, output_names: list[str] | None = None) -> Path:
    """Convert a TF.js graph model to an ONNX file; only the sub-graph feeding `output_names` is converted.

    output_names defaults to the model signature's outputs.  Raises ValueError for unsupported ops and
    FileNotFoundError for a missing model.json / shard.
    """
    graph = load_tfjs_graph(Path(model_json))
    model = build_onnx_model(graph, output_names)
    out_path = Path(out_path)
    _write_atomic(model.SerializeToString(), out_path)
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reasonseg_export.tfjs_to_onnx", description=__doc__.split("\n")[0])
    ap.add_argument("model_json", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--outputs", default=None, help="comma-separated TF tensor names (default: signature outputs)")
    args = ap.parse_args(argv)
    outputs = [s.strip() for s in args.outputs.split(",") if s.strip()] if args.outputs else None
    try:
        path = convert_tfjs_graph(args.model_json, args.out, outputs)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model = onnx.load(str(path), load_external_data=False)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(model.graph.node)} nodes); "
          f"inputs {[i.name for i in model.graph.input]}, outputs {[o.name for o in model.graph.output]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
