"""TensorRT engines at run time: the engine key (which engine file belongs to which ONNX graph, GPU, TensorRT
version and precision) and `TrtGraph`, a runner with the onnxruntime session's interface so every runtime class
takes either. Engines are built ahead by the export tree (`reasonseg export tensorrt`); a missing one is an
error at start, never a build on the camera path.

`tensorrt` does not install on our development machines; its tests skip with that reason where it is absent.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from reasonseg.backends.onnxruntime_graph import GraphIo
from reasonseg.core.errors import CheckpointError, ConfigError, ModelCacheError
from reasonseg.core.model_cache import sha256

GRAPH_FILES = ("engines/*.engine",)  # in the cache, named by `EngineKey.file_name`


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
