"""TensorRT engines from the exported ONNX graphs (TensorRT Python API, 10.x); the runner that loads them
with the onnxruntime session's interface is `reasonseg/backends/tensorrt_graph.TrtGraph`.

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

from pathlib import Path
from typing import Mapping, Sequence

from reasonseg.backends.tensorrt_graph import engine_key, require_tensorrt
from reasonseg.core.errors import CheckpointError, one_line
from reasonseg.core.graph_manifest import manifest_path
from reasonseg.core.model_cache import sha256
from reasonseg.core.output_files import write_bytes, write_json

DEFAULT_WORKSPACE = 2 << 30          # bytes of scratch TensorRT may use while choosing tactics
DYNAMIC_RANGE = (1, 4, 64)           # min / opt / max for a dynamic axis without an explicit profile


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
        raise CheckpointError(f"TensorRT cannot parse {onnx}: {one_line(errors, 300)}")
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
    write_bytes(out, bytes(serialized))
    write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    write_json(manifest_path(out),
               {"format": "tensorrt", "onnx": str(onnx), **key.__dict__, "sha256": sha256(out)})
    return out


