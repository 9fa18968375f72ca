"""Shape TF ops: reductions, concat, reshape, expand / squeeze, strided slice, top-k and gather."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from reasonseg_export.tfjs.attributes import attr_bool, attr_int, attr_ints, attr_type, onnx_type
from reasonseg_export.tfjs.builder import TF_AXIS_TO_CF, Converter, OnnxBuilder, out_rank, out_ref, registrar, use_cf
from reasonseg_export.tfjs.graph import TfNode
from reasonseg_export.tfjs.ops.elementwise import identity

CONVERTERS: dict[str, Converter] = {}
register = registrar(CONVERTERS)

_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}


@register(*_REDUCE)
def _reduce(b: OnnxBuilder, node: TfNode) -> None:
    x_ref, ax_ref = node.inputs[:2]
    rank = b.rank(x_ref)
    axes = [int(a) for a in b.const(ax_ref, f"{node.name}: reduction axes").reshape(-1)]
    if rank is None and any(a < 0 for a in axes):
        raise ValueError(f"node {node.name!r}: negative reduction axes need a known input rank")
    axes = sorted(a + rank if a < 0 else a for a in axes)  # type: ignore[operator]
    keep = attr_bool(node, "keep_dims")
    if not axes:  # TF reduces nothing; ONNX would reduce everything
        identity(b, node)
        return
    # reduce a channels-first input in place when the result needs no transpose: with keep_dims it stays
    # channels-first; without, the surviving axes must keep TF's order (e.g. NHWC mean over H, W -> [N, C])
    src_cf = use_cf(b, [x_ref])
    left = [TF_AXIS_TO_CF[a] for a in range(4) if a not in axes]
    in_cf = src_cf and (keep or left == sorted(left))
    x = b.cf(x_ref) if in_cf else b.tf(x_ref)
    onnx_axes = sorted(TF_AXIS_TO_CF[a] for a in axes) if in_cf else axes
    cf = in_cf and keep
    if node.op == "Sum":  # ReduceSum takes axes as an input since opset 13
        y = b.add("ReduceSum", [x, b.init(np.array(onnx_axes, np.int64), f"{node.name}/axes")], node.name,
                  keepdims=int(keep))[0]
    else:
        y = b.add(_REDUCE[node.op], [x], node.name, axes=onnx_axes, keepdims=int(keep))[0]
    out_rank = None if rank is None else (rank if keep else rank - len(axes))
    b.set(out_ref(node), y, b.dtype(x_ref), out_rank, cf)


@register("ConcatV2", "Concat")
def _concat(b: OnnxBuilder, node: TfNode) -> None:
    refs = list(node.inputs)
    ax_ref, refs = (refs[-1], refs[:-1]) if node.op == "ConcatV2" else (refs[0], refs[1:])
    axis = int(b.const(ax_ref, f"{node.name}: concat axis"))
    rank = out_rank(b, refs)
    if axis < 0:
        if rank is None:
            raise ValueError(f"node {node.name!r}: negative concat axis needs known ranks")
        axis += rank
    cf = use_cf(b, refs) and all(b.rank(r) == 4 for r in refs)
    names = [b.cf(r) if cf else b.tf(r) for r in refs]
    y = b.add("Concat", names, node.name, axis=TF_AXIS_TO_CF[axis] if cf else axis)[0]
    b.set(out_ref(node), y, b.dtype(refs[0]), rank, cf)


@register("Reshape")
def _reshape(b: OnnxBuilder, node: TfNode) -> None:
    x_ref, s_ref = node.inputs[:2]
    if b.is_const(s_ref):
        shape = b.consts[s_ref].astype(np.int64).reshape(-1)
        s_name, rank = b.init(shape, f"{node.name}/shape"), int(shape.size)
        allow_zero = int(bool((shape == 0).any()))  # TF 0 means "size 0", ONNX 0 would mean "copy"
    else:
        s_name = b.add("Cast", [b.tf(s_ref)], f"{node.name}/shape64", to=TensorProto.INT64)[0]
        rank, allow_zero = None, 0
    y = b.add("Reshape", [b.tf(x_ref), s_name], node.name, allowzero=allow_zero)[0]
    b.set(out_ref(node), y, b.dtype(x_ref), rank)


@register("ExpandDims")
def _expand_dims(b: OnnxBuilder, node: TfNode) -> None:
    x_ref, d_ref = node.inputs[:2]
    dim = np.asarray(b.const(d_ref, f"{node.name}: dim"), np.int64).reshape(1)
    y = b.add("Unsqueeze", [b.tf(x_ref), b.init(dim, f"{node.name}/axes")], node.name)[0]
    rank = b.rank(x_ref)
    b.set(out_ref(node), y, b.dtype(x_ref), None if rank is None else rank + 1)


@register("Squeeze")
def _squeeze(b: OnnxBuilder, node: TfNode) -> None:
    x_ref = node.inputs[0]
    dims = attr_ints(node, "squeeze_dims") or attr_ints(node, "axis")
    ins = [b.tf(x_ref)] + ([b.init(np.array(dims, np.int64), f"{node.name}/axes")] if dims else [])
    rank = b.rank(x_ref)
    y = b.add("Squeeze", ins, node.name)[0]
    b.set(out_ref(node), y, b.dtype(x_ref), None if rank is None or not dims else rank - len(dims))


_I64_MAX, _I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


@register("StridedSlice")
def _strided_slice(b: OnnxBuilder, node: TfNode) -> None:
    x_ref = node.inputs[0]
    begin, end, step = (b.const(r, f"{node.name}: slice spec").astype(np.int64).reshape(-1) for r in node.inputs[1:4])
    if attr_int(node, "new_axis_mask", 0) or attr_int(node, "ellipsis_mask", 0):
        raise ValueError(f"node {node.name!r}: StridedSlice with new_axis_mask/ellipsis_mask is not supported")
    bmask, emask, smask = (attr_int(node, k, 0) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
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
    b.set(out_ref(node), y, b.dtype(x_ref), None if rank is None else rank - len(shrink))


@register("TopKV2")
def _top_k(b: OnnxBuilder, node: TfNode) -> None:
    x_ref, k_ref = node.inputs[:2]
    k = np.asarray(b.const(k_ref, f"{node.name}: k"), np.int64).reshape(1)
    vals, idx = b.add("TopK", [b.tf(x_ref), b.init(k, f"{node.name}/k")], node.name, n_out=2,
                      axis=-1, largest=1, sorted=1)
    idx_type = onnx_type(attr_type(node, "index_type", "DT_INT32"), f"TopKV2 {node.name!r}")
    idx = b.add("Cast", [idx], f"{node.name}/indices", to=idx_type)[0]  # TF returns int32 indices
    rank = b.rank(x_ref)
    b.set(out_ref(node, 0), vals, b.dtype(x_ref), rank)
    b.set(out_ref(node, 1), idx, idx_type, rank)


@register("GatherV2")
def _gather(b: OnnxBuilder, node: TfNode) -> None:
    p_ref, i_ref, a_ref = node.inputs[:3]
    if attr_int(node, "batch_dims", 0) != 0:
        raise ValueError(f"node {node.name!r}: GatherV2 with batch_dims != 0 is not supported")
    axis = int(b.const(a_ref, f"{node.name}: gather axis"))
    y = b.add("Gather", [b.tf(p_ref), b.tf(i_ref)], node.name, axis=axis)[0]
    pr, ir = b.rank(p_ref), b.rank(i_ref)
    b.set(out_ref(node), y, b.dtype(p_ref), None if pr is None or ir is None else pr - 1 + ir)
