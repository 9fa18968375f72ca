"""Spatial TF ops: convolutions (fused bias / batch norm / activation folded in), transposed conv, pooling and
resizing. NHWC ones run on the channels-first view of their input."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from reasonseg_export.tfjs.attributes import attr_bool, attr_float, attr_ints, attr_str, attr_strs
from reasonseg_export.tfjs.builder import Converter, OnnxBuilder, out_ref, registrar
from reasonseg_export.tfjs.graph import TfNode
from reasonseg_export.tfjs.ops.elementwise import clip

CONVERTERS: dict[str, Converter] = {}
register = registrar(CONVERTERS)


def _spatial_axes(fmt: str, node: TfNode) -> tuple[int, int]:
    if fmt not in ("NHWC", "NCHW"):
        raise ValueError(f"node {node.name!r} ({node.op}): unsupported data_format {fmt!r}")
    return (1, 2) if fmt == "NHWC" else (2, 3)


def _pad_attrs(node: TfNode, hw: tuple[int, int]) -> dict[str, Any]:
    padding = attr_str(node, "padding", "VALID")
    if padding == "SAME":  # TF puts the odd pixel at the end, like ONNX SAME_UPPER
        return {"auto_pad": "SAME_UPPER"}
    if padding == "VALID":
        return {"pads": [0, 0, 0, 0]}
    if padding == "EXPLICIT":
        ep = attr_ints(node, "explicit_paddings")
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


def _fused_parts(b: OnnxBuilder, node: TfNode, w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Fold BiasAdd / FusedBatchNorm of a fused conv into (weights, bias); return the trailing activation."""
    fused = attr_strs(node, "fused_ops")
    extra = list(node.inputs[2:])
    bias: np.ndarray | None = None
    act: str | None = None
    for op in fused:
        if op == "BiasAdd":
            bias = b.const(extra.pop(0), f"{node.name}: fused bias").astype(np.float32)
        elif op == "FusedBatchNorm":
            scale, offset, mean, var = (b.const(extra.pop(0), f"{node.name}: batch-norm arg") for _ in range(4))
            k = scale / np.sqrt(var + attr_float(node, "epsilon", 1e-3))
            w = w * k.reshape(-1, 1, 1, 1)
            bias = offset - mean * k
        elif op in _FUSED_ACTS and act is None:
            act = op
        else:
            raise ValueError(f"node {node.name!r} ({node.op}): unsupported fused op {op!r} in {fused}")
    return w, bias, act


def _activation(b: OnnxBuilder, node: TfNode, y: str, act: str | None, dtype: int, cf: bool) -> str:
    hint = f"{node.name}/{act}"
    if act is None:
        return y
    if act == "Relu6":
        return clip(b, y, dtype, 0.0, 6.0, hint)
    if act == "LeakyRelu":
        return b.add("LeakyRelu", [y], hint, alpha=attr_float(node, "leakyrelu_alpha", 0.2))[0]
    if act == "Prelu":
        alpha = b.const(node.inputs[-1], f"{node.name}: prelu alpha").astype(np.float32)
        alpha = alpha.reshape(-1, 1, 1) if cf else alpha
        return b.add("PRelu", [y, b.init(alpha, f"{node.name}/alpha")], hint)[0]
    return b.add(act, [y], hint)[0]


@register("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _conv(b: OnnxBuilder, node: TfNode) -> None:
    fmt = attr_str(node, "data_format", "NHWC")
    hw = _spatial_axes(fmt, node)
    x_ref, w_ref = node.inputs[:2]
    depthwise = "Depthwise" in node.op
    w, group = _conv_weights(b.const(w_ref, f"{node.name}: filter").astype(np.float32), depthwise)
    w, bias, act = _fused_parts(b, node, w) if node.op.startswith(("_Fused", "Fused")) else (w, None, None)
    cf = fmt == "NHWC"  # NHWC convs run on the channels-first view; NCHW convs already are
    ins = [b.cf(x_ref) if cf else b.tf(x_ref), b.init(w.astype(np.float32), f"{w_ref}/oihw")]
    if bias is not None:
        ins.append(b.init(bias.astype(np.float32), f"{node.name}/bias"))
    strides = attr_ints(node, "strides", [1, 1, 1, 1])
    dil = attr_ints(node, "dilations", [1, 1, 1, 1])
    y = b.add("Conv", ins, node.name, group=group, kernel_shape=list(w.shape[2:]),
              strides=[strides[hw[0]], strides[hw[1]]], dilations=[dil[hw[0]], dil[hw[1]]], **_pad_attrs(node, hw))[0]
    y = _activation(b, node, y, act, TensorProto.FLOAT, True)
    b.set(out_ref(node), y, TensorProto.FLOAT, 4, cf)


@register("Conv2DBackpropInput")
def _conv_transpose(b: OnnxBuilder, node: TfNode) -> None:
    """Transposed conv (a decoder's upsampling): TF filter [kH, kW, out, in] -> ONNX (in, out, kH, kW)."""
    fmt = attr_str(node, "data_format", "NHWC")
    hw = _spatial_axes(fmt, node)
    size_ref, w_ref, x_ref = node.inputs[:3]
    size = b.const(size_ref, f"{node.name}: output size").astype(np.int64).reshape(-1)
    w = np.ascontiguousarray(b.const(w_ref, f"{node.name}: filter").astype(np.float32).transpose(3, 2, 0, 1))
    padding = attr_str(node, "padding", "VALID")
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"node {node.name!r} ({node.op}): unsupported padding {padding!r}")
    strides = attr_ints(node, "strides", [1, 1, 1, 1])
    dil = attr_ints(node, "dilations", [1, 1, 1, 1])
    cf = fmt == "NHWC"
    # With output_shape given, ONNX derives the padding; SAME_UPPER crops total//2 at the start, as TF's
    # SAME (the gradient of a SAME conv) does.
    y = b.add("ConvTranspose", [b.cf(x_ref) if cf else b.tf(x_ref), b.init(w, f"{w_ref}/iohw")], node.name,
              kernel_shape=list(w.shape[2:]), strides=[strides[hw[0]], strides[hw[1]]],
              dilations=[dil[hw[0]], dil[hw[1]]], output_shape=[int(size[hw[0]]), int(size[hw[1]])],
              **({"auto_pad": "SAME_UPPER"} if padding == "SAME" else {}))[0]
    b.set(out_ref(node), y, TensorProto.FLOAT, 4, cf)

@register("MaxPool", "AvgPool")
def _pool(b: OnnxBuilder, node: TfNode) -> None:
    fmt = attr_str(node, "data_format", "NHWC")
    hw = _spatial_axes(fmt, node)
    k, s = attr_ints(node, "ksize"), attr_ints(node, "strides")
    cf = fmt == "NHWC"
    x = b.cf(node.inputs[0]) if cf else b.tf(node.inputs[0])
    # TF excludes padding from averages (count_include_pad=0) and never selects it for max: ONNX defaults
    y = b.add("MaxPool" if node.op == "MaxPool" else "AveragePool", [x], node.name,
              kernel_shape=[k[hw[0]], k[hw[1]]], strides=[s[hw[0]], s[hw[1]]], **_pad_attrs(node, hw))[0]
    b.set(out_ref(node), y, b.dtype(node.inputs[0]), 4, cf)


@register("ResizeBilinear", "ResizeNearestNeighbor")
def _resize(b: OnnxBuilder, node: TfNode) -> None:
    x_ref, size_ref = node.inputs[:2]
    size = b.const(size_ref, f"{node.name}: output size").astype(np.int64).reshape(-1)
    align, half = attr_bool(node, "align_corners"), attr_bool(node, "half_pixel_centers")
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
    b.set(out_ref(node), y, b.dtype(x_ref), 4, True)
