"""Open onnxruntime sessions one way: latency options, the providers a device asks for, one clear error line.

Every ONNX graph the runtime loads (detector, person segmenter, LiteSAM, exported SAM2 parts) comes through
here, so a corrupt file, a foreign graph or a wrong input shape reads the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np

from reasonseg.core.errors import CheckpointError, ModelCacheError, one_line

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


@dataclass(frozen=True)
class GraphIo:
    """An input or output as onnxruntime's `get_inputs()` describes it, for graphs other runtimes run (TensorRT
    engines, OpenVINO models): name, and shape with ints where static."""
    name: str
    shape: list


class BoundSession:
    """An InferenceSession run through IO binding, as onnxruntime advises for CUDA / TensorRT: inputs are
    copied to the session's device once per run, outputs are allocated there, and the outputs named in `keep`
    stay there as OrtValues, so the next graph of a chain (encoder -> decoder, features -> tracking step)
    takes them without a round trip through host memory. Everything else reads like the session."""

    def __init__(self, session, device_type: str = "cpu", device_id: int = 0) -> None:
        self.session, self.device_type, self.device_id = session, device_type, int(device_id)

    def __getattr__(self, name: str):  # get_inputs, get_outputs, get_providers, ...
        return getattr(self.session, name)

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, object],
            keep: Collection[str] = ()) -> list:
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if is_device_value(value):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        names = list(output_names) if output_names else [o.name for o in self.session.get_outputs()]
        for name in names:
            binding.bind_output(name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return [v if n in keep else v.numpy() for n, v in zip(names, binding.get_outputs())]


class DeviceStack:
    """`np.stack` for OrtValues that stays on their device: up to `slots` same-shape values -> one
    [n, ...] OrtValue, through a two-node graph (Concat, Slice) on a bound session's device. What SAM2's
    tracking step reads as its memory bank is stacked here on a GPU, so the bank never goes back to the host."""

    def __init__(self, like: BoundSession, slots: int) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        self.slots = int(slots)
        names = [f"x{i}" for i in range(self.slots)]
        nodes = [helper.make_node("Unsqueeze", [n, "axis0"], [f"u{i}"]) for i, n in enumerate(names)]
        nodes += [helper.make_node("Concat", [f"u{i}" for i in range(self.slots)], ["all"], axis=0),
                  helper.make_node("Slice", ["all", "axis0", "count", "axis0"], ["stacked"])]
        zero = onnx.numpy_helper.from_array(np.zeros(1, np.int64), "axis0")
        graph = helper.make_graph(
            nodes, "stack", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
            + [helper.make_tensor_value_info("count", TensorProto.INT64, [1])],
            [helper.make_tensor_value_info("stacked", TensorProto.FLOAT, None)], initializer=[zero])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # readable by every onnxruntime this project supports
        options = like.session.get_provider_options()
        providers = [(p, options.get(p, {})) for p in like.session.get_providers()
                     if p != "TensorrtExecutionProvider"]  # a copy needs no engine: CUDA (or CPU) runs it
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = BoundSession(ort.InferenceSession(model.SerializeToString(), opts, providers=providers),
                                    like.device_type, like.device_id)

    def __call__(self, values: Sequence[object]):
        if not 0 < len(values) <= self.slots:
            raise ValueError(f"cannot stack {len(values)} values in {self.slots} slots")
        feeds = {f"x{i}": values[min(i, len(values) - 1)] for i in range(self.slots)}  # unused slots: a repeat
        return self.session.run(["stacked"], feeds | {"count": np.array([len(values)], np.int64)},
                                keep={"stacked"})[0]


def run_graph(graph, output_names: Sequence[str] | None, feeds: Mapping[str, object],
              keep: Collection[str] = ()) -> list:
    """`graph.run`, leaving the `keep` outputs on the device where the graph is IO-bound (elsewhere all
    outputs are numpy, and OrtValue feeds from a bound graph come back to the host first)."""
    if isinstance(graph, BoundSession):
        return graph.run(output_names, feeds, keep)
    return graph.run(output_names, {k: host(v) for k, v in feeds.items()})


def is_device_value(value: object) -> bool:
    """An onnxruntime OrtValue (a kept output of a BoundSession), not a host array."""
    return hasattr(value, "device_name")


def host(value):
    """A graph output as numpy, wherever it lives."""
    return value.numpy() if is_device_value(value) else value


def open_session(path: Path | str, what: str, *, threads: int = 0, device: str = "cpu",
                 io_binding: bool | None = None):
    """An InferenceSession tuned for latency: full graph optimisation, `threads` intra-op threads (0 = one per
    core), one inter-op thread (the graphs here are chains; parallel branches only add contention), and pool
    threads that sleep instead of spinning when idle. On a GPU provider (or with `io_binding=True`) it comes as
    a :class:`BoundSession`."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelCacheError(f"{what}: ONNX file not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    # Each session owns a thread pool whose threads spin after a run by default. A frame runs several sessions
    # back to back (detector, encoder, decoder) next to the ROS threads, so the last session's spinning threads
    # take the cores from the next one: on 2 cores a refine frame is 1.09-1.26x faster with them sleeping, though
    # an encoder run alone back to back can be up to ~8 % slower (bench/bench_pipeline.py, `frame_sequence`).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: shape-merge warnings of exported graphs are noise to a user
    try:
        session = ort.InferenceSession(str(path), opts, providers=providers_for(device))
    except ModelCacheError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind types
        raise CheckpointError(f"{what}: cannot load ONNX model {path}: {one_line(exc)}") from None
    first = session.get_providers()[0]
    gpu = first != "CPUExecutionProvider"
    if not (gpu if io_binding is None else io_binding):
        return session
    device_id = int(session.get_provider_options()[first].get("device_id", 0)) if gpu else 0
    return BoundSession(session, "cuda" if gpu else "cpu", device_id)


def check_feeds(session, feeds: Mapping[str, np.ndarray], what: str) -> None:
    """Refuse a feed the graph cannot take, naming the input, before onnxruntime's multi-line error."""
    for spec in session.get_inputs():
        if spec.name not in feeds:
            raise ValueError(f"{what}: missing input {spec.name!r}")
        got = feeds[spec.name].shape
        got = got() if callable(got) else got  # an OrtValue's shape is a method
        if len(got) != len(spec.shape) or any(isinstance(d, int) and d != g for d, g in zip(spec.shape, got)):
            raise ValueError(f"{what}: input {spec.name!r} has shape {list(got)}, the graph takes {spec.shape}")
