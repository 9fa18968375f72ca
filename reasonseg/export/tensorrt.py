"""TensorRT engines from the exported ONNX graphs (TensorRT Python API, 10.x), and a runner with the
onnxruntime session's interface so every runtime class takes either.

* `build_engine`: ONNX -> serialized engine; FP16 flag, INT8 (explicit, from a QDQ graph written by
  `reasonseg export lite-sam --precision int8 --int8-method static`), one optimisation profile covering every
  dynamic axis, a persistent timing cache, and a manifest beside the engine.
* Engines are cached under a key of ONNX sha256 + GPU name + TensorRT version + flags: an engine built for
  another graph, GPU or TensorRT is never picked up, and a missing one is an error at start, never a build on
  the camera path. Build them ahead with `reasonseg export tensorrt` (or the node's `runtime.build_only`),
  as the onboard image's build stage does.

`tensorrt` does not install on our development machines; its tests skip with that reason where it is absent.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from reasonseg.errors import CheckpointError, ConfigError, ModelCacheError
from reasonseg.onnx_session import GraphIo
from reasonseg.export.onnx_io import atomic_path, sha256

DEFAULT_WORKSPACE = 2 << 30          # bytes of scratch TensorRT may use while choosing tactics
DYNAMIC_RANGE = (1, 4, 64)           # min / opt / max for a dynamic axis without an explicit profile


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ConfigError("backend tensorrt: the `tensorrt` Python package is not installed (it needs an NVIDIA "
                          "GPU machine: pip install tensorrt, or the onboard Docker image)") from None
    return trt


def gpu_name() -> str:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("backend tensorrt: no CUDA device is visible")
    return torch.cuda.get_device_name(torch.cuda.current_device())


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    gpu: str
    tensorrt: str
    precision: str  # fp32 | fp16 | int8 (fp16 allowed too)

    def file_name(self, onnx: Path) -> str:
        digest = hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:16]
        return f"{onnx.stem}.{self.precision}.{digest}.engine"


def engine_key(onnx: Path, precision: str) -> EngineKey:
    trt = require_tensorrt()
    return EngineKey(sha256(onnx), gpu_name(), trt.__version__, precision)


def engine_path(onnx: Path, engine_dir: Path, precision: str) -> Path:
    return Path(engine_dir) / engine_key(Path(onnx), precision).file_name(Path(onnx))


def build_engine(onnx: Path, engine_dir: Path, *, precision: str = "fp16",
                 profiles: Mapping[str, Sequence[Sequence[int]]] | None = None,
                 workspace: int = DEFAULT_WORKSPACE) -> Path:
    """Build (or find, when its key matches) the engine for `onnx`; returns its path."""
    trt = require_tensorrt()
    onnx, engine_dir = Path(onnx), Path(engine_dir)
    key = engine_key(onnx, precision)
    out = engine_dir / key.file_name(onnx)
    if out.is_file():
        return out
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CheckpointError(f"TensorRT cannot parse {onnx}: {' '.join(errors.split())[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":  # explicit quantization: scales come from the graph's Q/DQ nodes
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if -1 in shape:
            given = (profiles or {}).get(tensor.name)
            lo, opt, hi = given if given else [[DYNAMIC_RANGE[k] if d == -1 else d for d in shape] for k in range(3)]
            profile.set_shape(tensor.name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)
    cache_file = engine_dir / "timing.cache"  # tactic timings reused across builds on this GPU
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckpointError(f"TensorRT could not build an engine from {onnx} ({precision}); see its log above")
    engine_dir.mkdir(parents=True, exist_ok=True)
    for path, data in ((out, bytes(serialized)), (cache_file, bytes(config.get_timing_cache().serialize()))):
        tmp = atomic_path(path)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    out.with_name(out.name + ".manifest.json").write_text(json.dumps(
        {"format": "tensorrt", "onnx": str(onnx), **key.__dict__, "sha256": sha256(out)}, indent=2) + "\n")
    return out


class TrtGraph:
    """A deserialized engine behind onnxruntime's `get_inputs()` / `run(None, feeds)` interface (numpy in and
    out; device buffers are torch CUDA tensors on the current stream)."""

    def __init__(self, engine: Path | str) -> None:
        trt = require_tensorrt()
        import torch

        path = Path(engine)
        if not path.is_file():
            raise ModelCacheError(f"TensorRT engine not found: {path}; build it ahead with `reasonseg export "
                                  "tensorrt` (or the node's runtime.build_only), never on the camera path")
        self._trt, self._torch = trt, torch
        self.engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise CheckpointError(f"{path} is not a TensorRT engine for this GPU / TensorRT {trt.__version__} "
                                  "(foreign or corrupt): build it again on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [GraphIo(n, list(self.engine.get_tensor_shape(n))) for n in names if is_input[n]]
        self.outputs = [GraphIo(n, list(self.engine.get_tensor_shape(n))) for n in names if not is_input[n]]

    def get_inputs(self) -> list[GraphIo]:
        return self.inputs

    def get_outputs(self) -> list[GraphIo]:
        return self.outputs

    def _torch_dtype(self, name: str):
        t, trt = self._torch, self._trt
        return {trt.float32: t.float32, trt.float16: t.float16, trt.int32: t.int32, trt.int64: t.int64,
                trt.int8: t.int8, trt.bool: t.bool}[self.engine.get_tensor_dtype(name)]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        keep = []
        for spec in self.inputs:
            if spec.name not in feeds:
                raise ValueError(f"TensorRT engine: missing input {spec.name!r}")
            x = torch.from_numpy(np.ascontiguousarray(feeds[spec.name])).to("cuda", self._torch_dtype(spec.name))
            if not self.context.set_input_shape(spec.name, tuple(x.shape)):
                raise ValueError(f"TensorRT engine: input {spec.name!r} has shape {list(x.shape)}, outside the "
                                 f"engine's profile for {spec.shape}")
            self.context.set_tensor_address(spec.name, x.data_ptr())
            keep.append(x)
        outs = {}
        for spec in self.outputs:
            y = torch.empty(tuple(self.context.get_tensor_shape(spec.name)), dtype=self._torch_dtype(spec.name),
                            device="cuda")
            self.context.set_tensor_address(spec.name, y.data_ptr())
            outs[spec.name] = y
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log)")
        stream.synchronize()
        names = list(output_names) if output_names else [o.name for o in self.outputs]
        return [outs[n].float().cpu().numpy() if outs[n].dtype == torch.float16 else outs[n].cpu().numpy()
                for n in names]
