"""Run a TF.js graph model directly, in TensorFlow's own semantics (NHWC, TF padding rules), in PyTorch float64.

The reference the TF.js -> ONNX export is checked against (TensorFlow itself is not installed here): an
independent second reading of the same graph, so a layout, padding or weight-order slip in the converter
shows up as a parity error instead of a detector that silently finds less. Only the ops of the sub-graph
being checked are needed; anything else is one clear error naming the op.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from reasonseg_export.tfjs.attributes import (
    attr_bool,
    attr_float,
    attr_int,
    attr_ints,
    attr_str,
    attr_strs,
    inline_const,
)
from reasonseg_export.tfjs.graph import TfjsGraph, TfNode, needed_nodes, tensor_ref

_Op = Callable[["_Run", TfNode], "object"]
_OPS: dict[str, _Op] = {}


def _op(*names: str) -> Callable[[_Op], _Op]:
    def deco(fn: _Op) -> _Op:
        for n in names:
            _OPS[n] = fn
        return fn
    return deco


class _Run:
    """The values computed so far (tensor ref -> float64 / int64 torch tensor)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.values: dict[str, object] = {}

    def get(self, ref: str):  # noqa: ANN201 - a torch tensor
        return self.values[tensor_ref(ref)]

    def const(self, ref: str) -> np.ndarray:
        return np.asarray(self.get(ref).cpu().numpy())  # type: ignore[attr-defined]


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF 'SAME': output ceil(size / s); the odd pixel of padding goes at the end."""
    eff = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _pads(node: TfNode, x_hw: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int]) -> list[int]:
    """(left, right, top, bottom) for F.pad on an NCHW tensor."""
    padding = attr_str(node, "padding", "VALID")
    if padding == "VALID":
        return [0, 0, 0, 0]
    if padding == "SAME":
        (t, b), (lf, r) = (_same_pads(x_hw[i], k[i], s[i], d[i]) for i in range(2))
        return [lf, r, t, b]
    if padding == "EXPLICIT":
        ep = attr_ints(node, "explicit_paddings")  # NHWC pairs
        return [ep[4], ep[5], ep[2], ep[3]]
    raise ValueError(f"node {node.name!r} ({node.op}): padding {padding!r}")


def _nhwc(node: TfNode) -> None:
    if attr_str(node, "data_format", "NHWC") != "NHWC":
        raise ValueError(f"node {node.name!r} ({node.op}): the reference reads NHWC graphs only")


@_op("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _conv(r: _Run, node: TfNode):  # noqa: ANN202
    F = r.torch.nn.functional
    _nhwc(node)
    x = r.get(node.inputs[0]).permute(0, 3, 1, 2)
    w = r.get(node.inputs[1])  # [kh, kw, in, out] or depthwise [kh, kw, in, multiplier]
    kh, kw, cin, m = w.shape
    depthwise = "Depthwise" in node.op
    w = w.reshape(kh, kw, cin * m).permute(2, 0, 1)[:, None] if depthwise else w.permute(3, 2, 0, 1)
    s, d = attr_ints(node, "strides", [1] * 4)[1:3], attr_ints(node, "dilations", [1] * 4)[1:3]
    x = F.pad(x, _pads(node, x.shape[2:], (kh, kw), s, d))
    y = F.conv2d(x, w, stride=s, dilation=d, groups=cin if depthwise else 1).permute(0, 2, 3, 1)
    extra = list(node.inputs[2:])
    for fused in attr_strs(node, "fused_ops"):
        if fused == "BiasAdd":
            y = y + r.get(extra.pop(0))
        elif fused == "FusedBatchNorm":
            scale, offset, mean, var = (r.get(extra.pop(0)) for _ in range(4))
            y = (y - mean) * scale / r.torch.sqrt(var + attr_float(node, "epsilon", 1e-3)) + offset
        else:
            y = _activation(r, fused, y, node)
    return y


def _activation(r: _Run, name: str, y, node: TfNode):  # noqa: ANN001, ANN202
    F = r.torch.nn.functional
    acts = {"Relu": F.relu, "Relu6": lambda v: v.clamp(0.0, 6.0), "Sigmoid": r.torch.sigmoid,
            "Tanh": r.torch.tanh, "Elu": F.elu,
            "LeakyRelu": lambda v: F.leaky_relu(v, attr_float(node, "leakyrelu_alpha", 0.2)),
            "Prelu": lambda v: r.torch.where(v >= 0, v, v * r.get(node.inputs[-1]))}
    if name not in acts:
        raise ValueError(f"node {node.name!r} ({node.op}): the reference has no fused op {name!r}")
    return acts[name](y)


@_op("Conv2DBackpropInput")
def _conv_transpose(r: _Run, node: TfNode):  # noqa: ANN202
    """The gradient of a conv: full transposed conv, then TF's crop (SAME: total // 2 off the start)."""
    F = r.torch.nn.functional
    _nhwc(node)
    size = [int(v) for v in r.const(node.inputs[0]).reshape(-1)]
    w = r.get(node.inputs[1])  # [kh, kw, out, in]
    x = r.get(node.inputs[2]).permute(0, 3, 1, 2)
    s, d = attr_ints(node, "strides", [1] * 4)[1:3], attr_ints(node, "dilations", [1] * 4)[1:3]
    y = F.conv_transpose2d(x, w.permute(3, 2, 0, 1), stride=s, dilation=d)
    crops = []
    for i, (out, k) in enumerate(zip(size[1:3], w.shape[:2])):
        start = _same_pads(out, k, s[i], d[i])[0] if attr_str(node, "padding", "VALID") == "SAME" else 0
        crops.append(slice(start, start + out))
    y = y[:, :, crops[0], crops[1]]
    if tuple(y.shape[2:]) != tuple(size[1:3]):  # the forward conv dropped trailing pixels: they get zeros
        y = F.pad(y, [0, size[2] - y.shape[3], 0, size[1] - y.shape[2]])
    return y.permute(0, 2, 3, 1)


@_op("MaxPool", "AvgPool")
def _pool(r: _Run, node: TfNode):  # noqa: ANN202
    F = r.torch.nn.functional
    _nhwc(node)
    x = r.get(node.inputs[0]).permute(0, 3, 1, 2)
    k, s = attr_ints(node, "ksize")[1:3], attr_ints(node, "strides")[1:3]
    pads = _pads(node, x.shape[2:], k, s, (1, 1))
    if node.op == "MaxPool":
        y = F.max_pool2d(F.pad(x, pads, value=-math.inf), k, s)
    else:  # TF averages over the real pixels only
        ones = F.pad(r.torch.ones_like(x[:, :1]), pads)
        y = F.avg_pool2d(F.pad(x, pads), k, s) / F.avg_pool2d(ones, k, s)
    return y.permute(0, 2, 3, 1)


@_op("ResizeBilinear")
def _resize(r: _Run, node: TfNode):  # noqa: ANN202
    """TF's three sampling conventions written out: align_corners, half-pixel centres, or the legacy
    asymmetric one (src = dst * in / out)."""
    x = r.get(node.inputs[0])
    out_h, out_w = (int(v) for v in r.const(node.inputs[1]).reshape(-1))
    align, half = attr_bool(node, "align_corners"), attr_bool(node, "half_pixel_centers")

    def axis(n_in: int, n_out: int):  # noqa: ANN202
        i = r.torch.arange(n_out, dtype=r.torch.float64)
        if align and n_out > 1:
            src = i * (n_in - 1) / (n_out - 1)
        elif half:
            src = ((i + 0.5) * n_in / n_out - 0.5).clamp(min=0.0)
        else:
            src = i * n_in / n_out
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), src - lo

    y0, y1, fy = axis(x.shape[1], out_h)
    x0, x1, fx = axis(x.shape[2], out_w)
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


@_op("Mean", "Sum", "Max", "Min")
def _reduce(r: _Run, node: TfNode):  # noqa: ANN202
    x = r.get(node.inputs[0])
    axes = sorted({int(a) % x.dim() for a in r.const(node.inputs[1]).reshape(-1)})
    if not axes:
        return x
    keep = attr_bool(node, "keep_dims")
    t = r.torch
    fn = {"Mean": lambda: x.mean(dim=axes, keepdim=keep), "Sum": lambda: x.sum(dim=axes, keepdim=keep),
          "Max": lambda: t.amax(x, dim=axes, keepdim=keep), "Min": lambda: t.amin(x, dim=axes, keepdim=keep)}
    return fn[node.op]()


@_op("ConcatV2")
def _concat(r: _Run, node: TfNode):  # noqa: ANN202
    n = attr_int(node, "N", len(node.inputs) - 1)
    parts = [r.get(ref) for ref in node.inputs[:n]]
    return r.torch.cat(parts, dim=int(r.const(node.inputs[n]).reshape(-1)[0]))


@_op("Reshape")
def _reshape(r: _Run, node: TfNode):  # noqa: ANN202
    return r.get(node.inputs[0]).reshape([int(v) for v in r.const(node.inputs[1]).reshape(-1)])


@_op("AddN")
def _add_n(r: _Run, node: TfNode):  # noqa: ANN202
    return sum(r.get(ref) for ref in node.inputs)


_BINARY = {"Add": lambda a, b: a + b, "AddV2": lambda a, b: a + b, "BiasAdd": lambda a, b: a + b,
           "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b, "RealDiv": lambda a, b: a / b,
           "Maximum": lambda a, b: a.maximum(b), "Minimum": lambda a, b: a.minimum(b)}


@_op(*_BINARY)
def _binary(r: _Run, node: TfNode):  # noqa: ANN202
    return _BINARY[node.op](r.get(node.inputs[0]), r.get(node.inputs[1]))


@_op("Relu", "Relu6", "Sigmoid", "Tanh", "Elu", "LeakyRelu")
def _unary(r: _Run, node: TfNode):  # noqa: ANN202
    return _activation(r, node.op, r.get(node.inputs[0]), node)


@_op("Identity")
def _identity(r: _Run, node: TfNode):  # noqa: ANN202
    return r.get(node.inputs[0])


def run_tfjs_graph(graph: TfjsGraph, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """The graph's `outputs` for `feeds` (placeholder name -> NHWC array), computed in float64."""
    import torch

    r = _Run()
    nodes = needed_nodes(graph, outputs)
    missing = sorted({n.op for n in nodes if n.op not in _OPS and n.op not in ("Const", "Placeholder")})
    if missing:
        raise ValueError(f"the TF.js reference has no op {', '.join(missing)}: this graph cannot be parity-checked")
    with torch.no_grad():
        for node in nodes:
            if node.op == "Const":
                value = graph.weights[node.name] if node.name in graph.weights else inline_const(node)
            elif node.op == "Placeholder":
                if node.name not in feeds:
                    raise ValueError(f"no feed for the graph input {node.name!r}")
                value = feeds[node.name]
            else:
                r.values[f"{node.name}:0"] = _OPS[node.op](r, node)
                continue
            arr = np.asarray(value)
            r.values[f"{node.name}:0"] = torch.from_numpy(
                arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.int64))
    return [r.get(o).numpy() for o in outputs]  # type: ignore[attr-defined]
