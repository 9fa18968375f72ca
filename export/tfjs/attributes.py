"""Decoding a TF node's attributes (GraphDef AttrValue in JSON form) and inline constants.

Shared by the converter and the TF-semantics reference (`reference`), so both read a graph the same way.
"""

from __future__ import annotations

import base64
from typing import Sequence

import numpy as np
from onnx import TensorProto

from reasonseg_export.tfjs.graph import TfNode

# TF dtype -> (ONNX element type, numpy type)
TF_DTYPES: dict[str, tuple[int, type]] = {
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


def attr_int(node: TfNode, key: str, default: int | None = None) -> int:
    if key in node.attr:
        return int(node.attr[key].get("i", 0))
    if default is None:
        raise ValueError(f"node {node.name!r} ({node.op}) lacks attribute {key!r}")
    return default


def attr_bool(node: TfNode, key: str, default: bool = False) -> bool:
    return bool(node.attr[key].get("b", False)) if key in node.attr else default


def attr_float(node: TfNode, key: str, default: float) -> float:
    return float(node.attr[key].get("f", 0.0)) if key in node.attr else default


def attr_str(node: TfNode, key: str, default: str) -> str:
    if key not in node.attr or "s" not in node.attr[key]:
        return default
    return base64.b64decode(node.attr[key]["s"]).decode()


def attr_ints(node: TfNode, key: str, default: Sequence[int] = ()) -> list[int]:
    if key not in node.attr:
        return list(default)
    return [int(v) for v in node.attr[key].get("list", {}).get("i", [])]


def attr_strs(node: TfNode, key: str) -> list[str]:
    if key not in node.attr:
        return []
    return [base64.b64decode(v).decode() for v in node.attr[key].get("list", {}).get("s", [])]


def attr_type(node: TfNode, key: str, default: str = "DT_FLOAT") -> str:
    return node.attr[key].get("type", default) if key in node.attr else default


def onnx_type(tf_type: str, where: str) -> int:
    if tf_type not in TF_DTYPES:
        raise ValueError(f"{where}: unsupported dtype {tf_type}")
    return TF_DTYPES[tf_type][0]


def inline_const(node: TfNode) -> np.ndarray:
    """Decode a Const whose value is inline in the graph (tfjs normally moves all of them to weights)."""
    tensor = node.attr.get("value", {}).get("tensor")
    if tensor is None:
        raise ValueError(f"Const {node.name!r} has no value in the weights manifest or the graph")
    tf_type = tensor.get("dtype", "DT_FLOAT")
    if tf_type not in TF_DTYPES:
        raise ValueError(f"Const {node.name!r}: unsupported dtype {tf_type}")
    np_type = np.dtype(TF_DTYPES[tf_type][1]).newbyteorder("<")
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
