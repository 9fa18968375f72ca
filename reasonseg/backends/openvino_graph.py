"""OpenVINO's CPU plugin behind the session interface the segmenters use (`get_inputs()`, `run(None, feeds)`).

Why a second CPU runtime: onnxruntime has no bf16 kernels on x86, and on CPUs with native bf16 (AVX512_BF16,
AMX) OpenVINO runs the LiteSAM encoder in bf16 at ~2x onnxruntime's fp32 speed while keeping the masks, more
than the int8 encoder gains (bench/bench_export.py). `segmenter.backend: openvino` loads the same exported files (ONNX,
or the OpenVINO IRs `reasonseg export lite-sam --precision bf16` / `--precision int8 --int8-method openvino` write)
and runs them here. An int8 IR (NNCF's quantized matrix products) runs its int8 parts in int8 and the rest in bf16
where the CPU has it natively, else fp32.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from reasonseg.backends.onnxruntime_graph import GraphIo
from reasonseg.core.errors import CheckpointError, ConfigError, ModelCacheError, one_line

OV_PRECISIONS = ("fp32", "bf16", "int8")
_HINTS = {"fp32": "f32", "bf16": "bf16"}  # floating-point precision -> OpenVINO's INFERENCE_PRECISION_HINT
INSTALL_HINT = "install it with `pip install openvino` (the `cpu` extra has it) or set segmenter.backend=onnxruntime"


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise ConfigError(f"segmenter.backend=openvino needs the openvino package; {INSTALL_HINT}") from None
    return openvino


@lru_cache(maxsize=1)
def _core():
    return require_openvino().Core()


def native_bf16() -> bool:
    """True where the CPU runs bf16 natively (OpenVINO lists BF16 among its CPU capabilities). Elsewhere a bf16
    hint is emulated or ignored, so bf16 would be no faster; callers refuse it there."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def inner_precision(precision: str) -> str:
    """The floating-point precision OpenVINO runs a graph in at `precision`: an int8 IR's int8 operations run int8
    and its other operations bf16 where the CPU has native bf16, else fp32 (what its judgement must match)."""
    if precision == "int8":
        return "bf16" if native_bf16() else "fp32"
    return precision


def compile_config(precision: str, threads: int = 0) -> dict[str, object]:
    """CPU plugin settings for latency: one stream, `threads` threads (0: the cores this process may use)."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _HINTS[inner_precision(precision)],
            "INFERENCE_NUM_THREADS": int(threads) or len(os.sched_getaffinity(0))}


class OvGraph:
    """One compiled model on the CPU plugin, tuned for latency: one stream, `threads` threads (0 = one per
    core), precision `fp32`, `bf16` or `int8` (inside the graph: inputs and outputs keep the graph's types)."""

    def __init__(self, path: Path | str, what: str, *, precision: str = "fp32", threads: int = 0) -> None:
        if precision not in OV_PRECISIONS:
            raise ConfigError(f"{what}: openvino runs {' or '.join(OV_PRECISIONS)}, not {precision!r}")
        path = Path(path)
        if not path.is_file():
            raise ModelCacheError(f"{what}: model file not found: {path}")
        core = _core()
        if precision == "bf16" and not native_bf16():
            raise ConfigError(f"{what}: this CPU has no native bf16 (OpenVINO CPU capabilities: "
                              f"{core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}); set "
                              "segmenter.precision=auto or fp32")
        config = compile_config(precision, threads)
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses, many lines
            raise CheckpointError(f"{what}: cannot load {path} in OpenVINO: {one_line(exc)}") \
                from None
        self.request = self.compiled.create_infer_request()
        self.precision, self.what = precision, what
        self.inputs = [GraphIo(p.any_name, _dims(p.get_partial_shape())) for p in self.compiled.inputs]
        self.outputs = [GraphIo(p.any_name, _dims(p.get_partial_shape())) for p in self.compiled.outputs]

    def get_inputs(self) -> list[GraphIo]:
        return self.inputs

    def get_outputs(self) -> list[GraphIo]:
        return self.outputs

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        missing = [i.name for i in self.inputs if i.name not in feeds]
        if missing:
            raise ValueError(f"{self.what}: missing input {missing[0]!r}")
        try:
            result = self.request.infer({i.name: np.ascontiguousarray(feeds[i.name]) for i in self.inputs})
        except Exception as exc:  # noqa: BLE001 - a shape the graph cannot take: one line, not OpenVINO's trace
            raise ValueError(f"{self.what}: {one_line(exc)}") from None
        names = list(output_names) if output_names else [o.name for o in self.outputs]
        return [result[self.compiled.output(n)] for n in names]  # copies: the request reuses its buffers


def _dims(shape) -> list:
    """A partial shape as onnxruntime writes it: ints where static, a name where dynamic."""
    return [d.get_length() if d.is_static else f"d{i}" for i, d in enumerate(shape)]
