"""Convert a TensorFlow.js graph model (model.json + weight shards) to ONNX.

No TensorFlow is needed at set-up or run time: the model.json topology is a GraphDef in JSON form, so we walk
it ourselves and emit ONNX (opset 17) nodes with ``onnx.helper`` (layout handling: `builder`).

Usage::

    python -m reasonseg_export.tfjs.convert model.json out.onnx [--outputs a,b]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import onnx
from onnx import helper

from reasonseg.core.output_files import write_bytes
from reasonseg_export.tfjs.attributes import attr_type, inline_const, onnx_type
from reasonseg_export.tfjs.builder import Converter, OnnxBuilder, out_ref
from reasonseg_export.tfjs.graph import TfjsGraph, TfNode, load_tfjs_graph, needed_nodes, tensor_ref
from reasonseg_export.tfjs.ops import elementwise, shape, spatial

OPSET = 17
# IR 8 is the oldest IR that carries opset 17; keeps the file loadable by older onnxruntime builds on robots.
IR_VERSION = 8


def _merged(*tables: dict[str, Converter]) -> dict[str, Converter]:
    merged: dict[str, Converter] = {}
    for table in tables:
        if twice := set(merged) & set(table):
            raise AssertionError(f"TF ops with two converters: {sorted(twice)}")
        merged.update(table)
    return merged


CONVERTERS: dict[str, Converter] = _merged(elementwise.CONVERTERS, spatial.CONVERTERS, shape.CONVERTERS)
SUPPORTED_OPS: frozenset[str] = frozenset(CONVERTERS) | {"Const", "Placeholder"}


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


def default_outputs(graph: TfjsGraph) -> list[str]:
    """The signature's outputs, else every non-Const tensor nothing consumes."""
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


def public_name(tensor: str) -> str:
    """The ONNX output name of a TF tensor: the node name, with ":k" kept only for k > 0."""
    ref = tensor_ref(tensor)
    return ref[:-2] if ref.endswith(":0") else ref


def build_onnx_model(graph: TfjsGraph, output_names: Sequence[str] | None = None) -> onnx.ModelProto:
    outputs = [o for o in (output_names or default_outputs(graph))]
    if not outputs:
        raise ValueError("no outputs to convert")
    nodes = needed_nodes(graph, outputs)
    _check_supported(nodes)
    b = OnnxBuilder()
    # reserve the public names so no internal value can take them
    publics = [public_name(o) for o in outputs]
    b.reserve(publics + [n.name for n in nodes if n.op == "Placeholder"])
    graph_inputs: list[onnx.ValueInfoProto] = []
    for node in nodes:
        if node.op == "Const":
            b.consts[out_ref(node)] = graph.weights[node.name] if node.name in graph.weights else inline_const(node)
        elif node.op == "Placeholder":
            dtype = onnx_type(attr_type(node, "dtype"), f"Placeholder {node.name!r}")
            shape = _shape_of(node, graph)
            graph_inputs.append(helper.make_tensor_value_info(node.name, dtype, shape))
            b.set(out_ref(node), node.name, dtype, None if shape is None else len(shape))
        else:
            CONVERTERS[node.op](b, node)
    graph_outputs: list[onnx.ValueInfoProto] = []
    ranks: dict[str, int | None] = {}
    for out, public in zip(outputs, publics):
        ref = tensor_ref(out)
        src = b.tf(ref)
        b.nodes.append(helper.make_node("Identity", [src], [public], name=b.fresh(f"{public}/output")))
        graph_outputs.append(helper.make_tensor_value_info(public, b.dtype(ref), _output_shape(graph, public)))
        ranks[public] = b.rank(ref)
    g = helper.make_graph(b.nodes, "tfjs_graph", graph_inputs, graph_outputs, initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="reasonseg_export.tfjs", ir_version=IR_VERSION)
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


def convert_tfjs_graph(model_json: Path, out_path: Path, output_names: list[str] | None = None) -> Path:
    """Convert a TF.js graph model to an ONNX file; only the sub-graph feeding `output_names` is converted.

    output_names defaults to the model signature's outputs.  Raises ValueError for unsupported ops and
    FileNotFoundError for a missing model.json / shard.
    """
    graph = load_tfjs_graph(Path(model_json))
    model = build_onnx_model(graph, output_names)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out_path, model.SerializeToString())
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reasonseg_export.tfjs.convert", description=__doc__.split("\n")[0])
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
