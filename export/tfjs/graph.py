"""Reading a TF.js graph model: model.json's GraphDef (in JSON form) and its weight shards, no TensorFlow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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


def tensor_ref(name: str) -> str:
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
        inputs = tuple(tensor_ref(i) for i in raw.get("input", []) if not i.startswith("^"))
        nodes[raw["name"]] = TfNode(raw["name"], raw["op"], inputs, raw.get("attr", {}))
    weights = _load_weights(model_json.parent, doc.get("weightsManifest", []))
    return TfjsGraph(nodes, weights, doc.get("signature") or {})


def needed_nodes(graph: TfjsGraph, outputs: Sequence[str]) -> list[TfNode]:
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
