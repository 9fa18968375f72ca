"""Element-wise TF ops: activations, arithmetic and comparisons (TF's floor semantics), Cast, Identity, AddN.

They run in whatever layout their inputs already have (channels-first where every input can follow for free).
"""

from __future__ import annotations

from onnx import TensorProto

from reasonseg_export.tfjs.attributes import attr_int, attr_str, attr_type, onnx_type
from reasonseg_export.tfjs.builder import Converter, OnnxBuilder, inputs_in, out_rank, out_ref, registrar, use_cf
from reasonseg_export.tfjs.graph import TfNode

CONVERTERS: dict[str, Converter] = {}
register = registrar(CONVERTERS)
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}

_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Elu": "Elu", "Exp": "Exp", "Log": "Log",
          "Sqrt": "Sqrt", "Abs": "Abs", "Neg": "Neg", "Floor": "Floor", "Ceil": "Ceil", "Reciprocal": "Reciprocal",
          "Softplus": "Softplus", "LogicalNot": "Not"}


@register(*_UNARY)
def _unary(b: OnnxBuilder, node: TfNode) -> None:
    (x,) = node.inputs[:1]
    cf = use_cf(b, [x])
    y = b.add(_UNARY[node.op], [b.cf(x) if cf else b.tf(x)], node.name)[0]
    b.set(out_ref(node), y, b.dtype(x), b.rank(x), cf)


@register("Relu6")
def _relu6(b: OnnxBuilder, node: TfNode) -> None:
    x = node.inputs[0]
    cf = use_cf(b, [x])
    y = clip(b, b.cf(x) if cf else b.tf(x), b.dtype(x), 0.0, 6.0, node.name)
    b.set(out_ref(node), y, b.dtype(x), b.rank(x), cf)


def clip(b: OnnxBuilder, x: str, dtype: int, lo: float, hi: float, hint: str) -> str:
    return b.add("Clip", [x, b.scalar(lo, dtype, f"{hint}/min"), b.scalar(hi, dtype, f"{hint}/max")], hint)[0]


@register("Identity", "Snapshot", "StopGradient")
def identity(b: OnnxBuilder, node: TfNode) -> None:
    src = node.inputs[0]
    if b.is_const(src):
        b.consts[out_ref(node)] = b.consts[src]
    else:
        b.vals[out_ref(node)] = b.vals[src]  # alias: no node needed


_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Div": "Div", "Maximum": "Max", "Minimum": "Min", "Pow": "Pow"}
_COMPARE = {"Equal": "Equal", "Less": "Less", "Greater": "Greater", "LessEqual": "LessOrEqual",
            "GreaterEqual": "GreaterOrEqual", "LogicalAnd": "And", "LogicalOr": "Or"}


@register(*_BINARY, *_COMPARE, "NotEqual", "SquaredDifference", "FloorDiv", "FloorMod")
def _binary(b: OnnxBuilder, node: TfNode) -> None:
    refs = list(node.inputs[:2])
    if node.op == "BiasAdd" and attr_str(node, "data_format", "NHWC") == "NCHW":
        bias = b.const(refs[1], f"{node.name}: NCHW BiasAdd bias")
        names, cf = [b.tf(refs[0]), b.init(bias.reshape(-1, 1, 1), f"{refs[1]}/chw")], False
    else:
        names, cf = inputs_in(b, refs)
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
    b.set(out_ref(node), y, dtype, out_rank(b, refs), cf)


def _floor_div(b: OnnxBuilder, x: str, y: str, dtype: int, hint: str) -> str:
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


def _floor_mod(b: OnnxBuilder, x: str, y: str, dtype: int, hint: str) -> str:
    if dtype in _FLOAT_TYPES:  # ONNX float Mod is C fmod (sign of dividend); TF wants sign of divisor
        fl = _floor_div(b, x, y, dtype, f"{hint}/fdiv")
        return b.add("Sub", [x, b.add("Mul", [fl, y], f"{hint}/prod")[0]], hint)[0]
    return b.add("Mod", [x, y], hint, fmod=0)[0]  # integer fmod=0 already follows the divisor's sign


@register("Cast")
def _cast(b: OnnxBuilder, node: TfNode) -> None:
    x = node.inputs[0]
    to = onnx_type(attr_type(node, "DstT"), f"Cast {node.name!r}")
    cf = use_cf(b, [x])
    y = b.add("Cast", [b.cf(x) if cf else b.tf(x)], node.name, to=to)[0]
    b.set(out_ref(node), y, to, b.rank(x), cf)


@register("AddN")
def _add_n(b: OnnxBuilder, node: TfNode) -> None:
    refs = list(node.inputs[:attr_int(node, "N", len(node.inputs))])
    names, cf = inputs_in(b, refs)
    b.set(out_ref(node), b.add("Sum", names, node.name)[0], b.dtype(refs[0]), out_rank(b, refs), cf)
