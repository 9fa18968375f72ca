"""Write ONNX files: torch export with an atomic rename, and the facts a manifest records about a graph."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from reasonseg.core.output_files import atomic_target

OPSET = 17  # LayerNorm as one op; read by onnxruntime >= 1.14 and TensorRT >= 8.6


def export_module(module, args: tuple, out: Path, *, inputs: Sequence[str], outputs: Sequence[str],
                  dynamic_axes: dict | None = None, opset: int = OPSET) -> Path:
    """torch.nn.Module -> checked ONNX file at `out` (TorchScript exporter: no onnxscript dependency)."""
    import onnx
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(out) as tmp:  # a crash never leaves a half-written graph under the real name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), dynamo=False, opset_version=opset, input_names=list(inputs),
                              output_names=list(outputs), dynamic_axes=dynamic_axes, do_constant_folding=True)
        onnx.checker.check_model(str(tmp))
    return out


def graph_io(path: Path) -> dict[str, dict[str, list]]:
    """{"inputs": {name: shape}, "outputs": {name: shape}}; a dynamic axis is its name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def shapes(values) -> dict[str, list]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    return {"inputs": shapes(model.graph.input), "outputs": shapes(model.graph.output),
            "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))}
