"""Open onnxruntime sessions one way: latency options, the providers a device asks for, one clear error line.

Every ONNX graph the runtime loads (detector, person segmenter, LiteSAM, exported SAM2 parts) comes through
here, so a corrupt file, a foreign graph or a wrong input shape reads the same everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import CheckpointError, ModelCacheError

# onnxruntime names; TensorRT first: it falls back to CUDA, then CPU, node by node
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def providers_for(device: str) -> list[str]:
    """`cpu` -> CPU only; `cuda[:N]` -> CUDA (error if this onnxruntime has none); `auto` -> the best present."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in have:
            raise ModelCacheError(f"device {device}: this onnxruntime has no CUDA provider (have {sorted(have)}); "
                                  "install onnxruntime-gpu or set the device to cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]  # type: ignore[list-item]
    return [p for p in _GPU_PROVIDERS if p in have] + ["CPUExecutionProvider"]


def open_session(path: Path | str, what: str, *, threads: int = 0, device: str = "cpu"):
    """An InferenceSession tuned for latency: full graph optimisation, `threads` intra-op threads (0 = one per
    core), one inter-op thread (the graphs here are chains; parallel branches only add contention)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelCacheError(f"{what}: ONNX file not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: shape-merge warnings of exported graphs are noise to a user
    try:
        return ort.InferenceSession(str(path), opts, providers=providers_for(device))
    except ModelCacheError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind types
        raise CheckpointError(f"{what}: cannot load ONNX model {path}: {' '.join(str(exc).split())[:200]}") from None


def check_feeds(session, feeds: Mapping[str, np.ndarray], what: str) -> None:
    """Refuse a feed the graph cannot take, naming the input, before onnxruntime's multi-line error."""
    for spec in session.get_inputs():
        if spec.name not in feeds:
            raise ValueError(f"{what}: missing input {spec.name!r}")
        got = feeds[spec.name].shape
        if len(got) != len(spec.shape) or any(isinstance(d, int) and d != g for d, g in zip(spec.shape, got)):
            raise ValueError(f"{what}: input {spec.name!r} has shape {list(got)}, the graph takes {spec.shape}")
