"""Qwen-VL checkpoints -> NVIDIA TensorRT Edge-LLM (Jetson Orin / Thor, DRIVE), and running its engines.

Design:

* Edge-LLM (`tensorrt-edgellm`, 0.11) pins its own stack (torch 2.13, transformers 5.14.1, onnx 1.19), which
  cannot share the project's `.venv`. It lives in its own virtual environment (`scripts/setup_edgellm.sh`,
  pinned by `export/edgellm-constraints.txt`) and this module only ever runs it as a subprocess; nothing here
  imports `tensorrt_edgellm`.
* `export_edgellm` runs `tensorrt-edgellm-export CHECKPOINT OUT` on the CPU. It writes `OUT/llm/` (model.onnx +
  .data, embedding.safetensors, tokenizer, chat template, config.json) and `OUT/visual/` (model.onnx + .data,
  config.json, preprocessor_config.json). Both graphs are fp16 and hold TensorRT plugin ops of the `trt_edgellm`
  domain (AttentionPlugin, ViTAttentionPlugin): no CPU runtime reads them, so parity is left to the engine on
  the target GPU. The exporter refuses fp32 weights; an fp32 checkpoint is exported from a bf16 copy.
* Two ways to engines, both on the target: the ONNX export is read by Edge-LLM's C++ `llm_build` /
  `visual_build` (built from its sources with CMake against the device's TensorRT; the way for JetPack 6, which
  the 0.11 aarch64 wheels, built for glibc 2.39, do not install on) - `build_command`. The wheel's own
  `tensorrt-edgellm-build` is ONNX-less: it reads the *checkpoint* (`--model-dir`) and never the export -
  `direct_build_command` / `build_engine`.
* `run_engine` drives the wheel's native runtime (`tensorrt_edgellm.runtime.load()` -> `LLMRuntime`, the
  engine behind its OpenAI server) in the Edge-LLM environment; it needs an NVIDIA GPU and TensorRT 10.16.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import struct
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from reasonseg.core.errors import one_line

REPO = Path(__file__).resolve().parents[1]
ENV_DIR_DEFAULT = REPO / ".venv-edgellm"
ENV_VARIABLE = "REASONSEG_EDGELLM_ENV"
SETUP_COMMAND = "bash scripts/setup_edgellm.sh"
EXPORTER = "tensorrt-edgellm-export"
DIRECT_BUILDER = "tensorrt-edgellm-build"
MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl")
PLUGIN_DOMAIN = "trt_edgellm"
VERSIONED = ("tensorrt-edgellm", "torch", "transformers", "onnx", "numpy", "safetensors")
TENSORRT_QUALIFIED = "tensorrt==10.16.0.72"  # what Edge-LLM 0.11.0's TensorRT 10 payloads are qualified with

# Per target: the GPU's compute capability (the exporter's --target-sm; only NVFP4 graphs differ by it) and the
# engine profile: prompt incl. image tokens, KV cache, image tokens (Qwen2.5-VL at 448 px: 256 per image).
TARGETS: dict[str, dict[str, int]] = {
    "orin": dict(sm=87, max_input_len=1024, max_kv_cache=2048, max_image_tokens=1024, max_image_tokens_per_image=512),
    "thor": dict(sm=110, max_input_len=2048, max_kv_cache=4096, max_image_tokens=2048, max_image_tokens_per_image=1024),
}
PARITY = {"checked": False,
          "why": "Edge-LLM graphs hold TensorRT plugin ops: parity runs on the engine, on the target GPU"}
_HALF = {"F16": "float16", "BF16": "bfloat16"}
_ONNX_PRECISION = {1: "fp32", 10: "fp16", 16: "bf16"}  # onnx.TensorProto element types


def edgellm_env(env: Path | None) -> Path:
    """The Edge-LLM environment: `env`, else $REASONSEG_EDGELLM_ENV, else <repo>/.venv-edgellm."""
    path = Path(env or os.environ.get(ENV_VARIABLE) or ENV_DIR_DEFAULT).expanduser()
    if not (path / "bin" / EXPORTER).is_file():
        raise ValueError(f"no Edge-LLM environment at {path} ({EXPORTER} missing): run `{SETUP_COMMAND}` "
                         f"(or set {ENV_VARIABLE})")
    return path


def _target(target: str) -> dict[str, int]:
    if target not in TARGETS:
        raise ValueError(f"unknown Edge-LLM target {target!r}: use one of {', '.join(TARGETS)}")
    return TARGETS[target]


def build_command(out_dir: Path, target: str) -> str:
    """The line that turns this export into engines on the target (`OUT/engines/`: llm.engine + visual/):
    Edge-LLM's C++ builders, run from its source build on the device. `tensorrt-edgellm-build` cannot take
    the place: it reads a checkpoint, not ONNX (`direct_build_command`)."""
    t, out = _target(target), Path(out_dir)
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    engines = q(out / "engines")
    return (f"llm_build --onnxDir {q(out / 'llm')} --engineDir {engines} --maxBatchSize 1 "
            f"--maxInputLen {t['max_input_len']} --maxKVCacheCapacity {t['max_kv_cache']} && "
            f"visual_build --onnxDir {q(out / 'visual')} --engineDir {engines} --minImageTokens 4 "
            f"--maxImageTokens {t['max_image_tokens']} --maxImageTokensPerImage {t['max_image_tokens_per_image']}")


def _direct_build_args(checkpoint: Path, engine_dir: Path, target: str) -> list[str]:
    t = _target(target)
    return ["--model-dir", str(checkpoint), "--engine-dir", str(engine_dir), "--max-batch-size", "1",
            "--max-input-len", str(t["max_input_len"]), "--max-kv-cache-capacity", str(t["max_kv_cache"]),
            "--min-image-tokens", "4", "--max-image-tokens", str(t["max_image_tokens"]),
            "--max-image-tokens-per-image", str(t["max_image_tokens_per_image"])]


def direct_build_command(checkpoint: str | Path, engine_dir: Path, target: str) -> str:
    """The wheel's ONNX-less builder, on the device: engines straight from an fp16 / bf16 checkpoint (whose
    weights the engines go on reading at run time: keep it beside them)."""
    return shlex.join([DIRECT_BUILDER, *_direct_build_args(Path(checkpoint), Path(engine_dir), target)])


# ---- the checkpoint -------------------------------------------------------------------------------------------

def _config(checkpoint: Path) -> dict:
    try:
        return json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{checkpoint} is not a checkpoint folder with a readable config.json: "
                         f"{one_line(exc)}") from None


def _model_type(checkpoint: Path) -> str:
    model_type = _config(checkpoint).get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"Edge-LLM export takes Qwen2.5-VL / Qwen3-VL checkpoints (model_type "
                         f"{' or '.join(MODEL_TYPES)}); {checkpoint} is {model_type!r}")
    return model_type


def _tensor_dtypes(path: Path) -> set[str]:
    """Element types in a safetensors file, from its JSON header (no tensors read)."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def checkpoint_dtype(checkpoint: Path) -> str:
    """"float16" / "bfloat16" when every floating tensor is half precision, else "float32"."""
    shards = sorted(Path(checkpoint).glob("*.safetensors"))
    if not shards:  # .bin checkpoints: trust config.json
        config = _config(Path(checkpoint))
        return str(config.get("dtype") or config.get("torch_dtype") or "float32")
    floats = set().union(*map(_tensor_dtypes, shards)) & {"F64", "F32", "F16", "BF16"}
    return _HALF.get(next(iter(floats)), "float32") if len(floats) == 1 else "float32"


def half_copy(checkpoint: Path, dst: Path, dtype: str = "bfloat16") -> Path:
    """`checkpoint` with its floating safetensors cast to `dtype` and config.json saying so, at `dst`."""
    import torch
    from safetensors.torch import load_file, save_file

    checkpoint, dst = Path(checkpoint), Path(dst)
    if not list(checkpoint.glob("*.safetensors")):
        raise ValueError(f"{checkpoint} has no safetensors weights to cast to {dtype}: save it with safetensors")
    dst.mkdir(parents=True, exist_ok=True)
    target = getattr(torch, dtype)
    for src in checkpoint.iterdir():
        if src.suffix == ".safetensors":
            tensors = load_file(src)
            save_file({k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()},
                      dst / src.name, metadata={"format": "pt"})
        elif src.is_file() and src.name != "config.json":
            shutil.copy2(src, dst / src.name)

    def retag(node: dict) -> None:  # every sub-config's dtype, whichever key this transformers wrote
        for key in ("dtype", "torch_dtype"):
            if key in node:
                node[key] = dtype
        for value in node.values():
            if isinstance(value, dict):
                retag(value)

    config = _config(checkpoint)
    retag(config)
    config["dtype"] = dtype
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dst


@contextmanager
def _half_precision(checkpoint: Path) -> Iterator[Path]:
    """The checkpoint itself when it is fp16 / bf16, else a bf16 copy that lives as long as the block."""
    if checkpoint_dtype(checkpoint) in _HALF.values():
        yield checkpoint
        return
    with tempfile.TemporaryDirectory(prefix="edgellm-bf16-") as tmp:
        yield half_copy(checkpoint, Path(tmp) / checkpoint.name)


# ---- the environment ------------------------------------------------------------------------------------------

def _env_vars(env: Path) -> dict[str, str]:
    """This process's environment for a command of `env`: its bin/ first, nothing of our venv's Python."""
    out = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    out.update(VIRTUAL_ENV=str(env), PATH=f"{env / 'bin'}{os.pathsep}{out.get('PATH', '')}", HF_HUB_OFFLINE="1")
    return out


def _run(env: Path, argv: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=_env_vars(env), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{what} took over {timeout:.0f} s") from None
    if done.returncode:
        raise ValueError(f"{what} failed (exit {done.returncode}): {_error_line(done.stderr or done.stdout)}")
    return done


def _error_line(text: str) -> str:
    """The line that names the error: the last one mentioning an error, else the last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error:" in line:
            return one_line(line, 300)
    return one_line(lines[-1], 300) if lines else "(no output)"


def env_versions(env: Path) -> dict[str, str | None]:
    """Installed versions of the exporter's stack in `env` (metadata only: nothing is imported)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(p):\n try: return m.version(p)\n except m.PackageNotFoundError: return None\n"
            "print(json.dumps({p: v(p) for p in sys.argv[1:]}))")
    done = _run(env, [str(env / "bin" / "python"), "-c", code, *VERSIONED], "reading the Edge-LLM versions")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- export ---------------------------------------------------------------------------------------------------

def _precision(graph: Path) -> str:
    """fp16 / bf16 / fp32: the element type of the graph's first floating input (inputs_embeds, pixels)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    for value in model.graph.input:
        kind = value.type.tensor_type.elem_type
        if kind in _ONNX_PRECISION:
            return _ONNX_PRECISION[kind]
    return "unknown"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "llm" / "model.onnx.manifest.json").is_file():
        raise ValueError(f"{out_dir} is not empty and holds no Edge-LLM export: choose an empty or new folder")


def export_edgellm(checkpoint: str | Path, out_dir: Path, *, env: Path | None = None,
                   target: str = "orin") -> list[Path]:
    """Qwen2.5-VL / Qwen3-VL checkpoint -> Edge-LLM ONNX export at `out_dir` (replacing an earlier one);
    returns [out_dir/llm/model.onnx], whose manifest lists every file written and the engine build line."""
    from reasonseg.core.model_cache import sha256
    from reasonseg_export.manifest import write_manifest

    checkpoint, out_dir = Path(checkpoint).expanduser(), Path(out_dir).expanduser()
    model_type = _model_type(checkpoint)
    t = _target(target)
    env = edgellm_env(env)
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # the exporter writes into a sibling folder, moved into place whole: a failed run leaves no half export
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with _half_precision(checkpoint) as source:
            _run(env, [str(env / "bin" / EXPORTER), str(source), str(staging), "--target-sm", str(t["sm"])],
                 EXPORTER)
        if not (staging / "llm" / "model.onnx").is_file():
            raise ValueError(f"{EXPORTER} wrote no llm/model.onnx for {checkpoint}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    main = out_dir / "llm" / "model.onnx"
    half = checkpoint_dtype(checkpoint) in _HALF.values()  # the direct builder reads no fp32 checkpoint
    files = {p.relative_to(out_dir).as_posix(): sha256(p) for p in sorted(out_dir.rglob("*")) if p.is_file()}
    write_manifest(main, format="edgellm", precision=_precision(main), source=checkpoint, parity=PARITY,
                   model_type=model_type, target=target, target_sm=t["sm"], files=files,
                   plugin_domain=PLUGIN_DOMAIN, exporter=env_versions(env),
                   build_command=build_command(out_dir, target),
                   direct_build_command=(direct_build_command(checkpoint, out_dir / "engines", target) if half
                                         else "needs an fp16 / bf16 copy of the checkpoint: half_copy()"))
    return [main]


# ---- engines on an NVIDIA GPU ---------------------------------------------------------------------------------

def _cuda_devices() -> int:
    """NVIDIA GPUs the CUDA driver sees (0 without a driver)."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if cuda.cuInit(0) or cuda.cuDeviceGetCount(ctypes.byref(count)):
            return 0
        return count.value
    except OSError:
        return 0


# Runs in the Edge-LLM environment: exit 3 without TensorRT; else the wheel's choice of native runtime for this
# platform + GPU (what runtime.load() would load), or its error.
_PAYLOAD_PROBE = """
import sys
try:
    import tensorrt  # noqa: F401
except ImportError:
    sys.exit(3)
from tensorrt_edgellm._native.dependencies import require_tensorrt
from tensorrt_edgellm._native.load import resolve_payload
require_tensorrt()
print(resolve_payload().variant_id)
"""


def engine_unavailable(env: Path | None = None) -> str | None:
    """Why Edge-LLM engines cannot be built or run here (one line), or None when they can."""
    try:
        env = edgellm_env(env)
    except ValueError as exc:
        return str(exc)
    if not _cuda_devices():
        return "no NVIDIA GPU (CUDA driver) here: Edge-LLM engines build and run only on one"
    probe = subprocess.run([str(env / "bin" / "python"), "-c", _PAYLOAD_PROBE], capture_output=True, text=True,
                           env=_env_vars(env))
    if probe.returncode == 3:
        return f"TensorRT is not installed in {env}: `{env / 'bin' / 'pip'} install {TENSORRT_QUALIFIED}`"
    if probe.returncode:  # the wheels carry runtimes for some GPUs / OS releases only (no sm90 on x86 in 0.11.0)
        return f"Edge-LLM has no runtime for this machine: {_error_line(probe.stderr or probe.stdout)}"
    return None


def build_engine(checkpoint: str | Path, engine_dir: Path, *, env: Path | None = None, target: str = "orin",
                 timeout: float = 3600) -> Path:
    """`tensorrt-edgellm-build` on this machine's GPU: every component of a fp16 / bf16 checkpoint (use
    `half_copy` for fp32) into `engine_dir`; the engines read their weights from the checkpoint at run time."""
    checkpoint = Path(checkpoint)
    _model_type(checkpoint)
    if checkpoint_dtype(checkpoint) not in _HALF.values():
        raise ValueError(f"{checkpoint} is fp32: build from `half_copy(checkpoint, dst)` and keep that copy")
    reason = engine_unavailable(env)
    if reason:
        raise RuntimeError(reason)
    env = edgellm_env(env)
    _run(env, [str(env / "bin" / DIRECT_BUILDER), *_direct_build_args(checkpoint, Path(engine_dir), target)],
         DIRECT_BUILDER, timeout)
    return Path(engine_dir)


# Runs in the Edge-LLM environment: the wheel's native runtime, one chat turn, greedy; prints {"text": ...}.
_ENGINE_DRIVER = r"""
import json, os, sys
from tensorrt_edgellm import runtime

a = json.loads(sys.argv[1])
rt = runtime.load()  # picks the payload for this GPU / platform, loads TensorRT and the plugin library
cache = rt.ContextCacheConfig()
cache.enabled = False
media = a["engine_dir"] if os.path.isfile(os.path.join(a["engine_dir"], "visual", "visual.engine")) else ""
llm = rt.LLMRuntime(a["engine_dir"], media, {}, a["checkpoint"], cache)

msg = rt.Message()
msg.role, msg.name, msg.tool_call_id = "user", "", ""
msg.has_reasoning_content, msg.reasoning_content = False, ""
msg.has_tool_calls, msg.tool_calls = False, []
msg.has_content, msg.content_is_null, msg.content_is_array = True, False, bool(a["image"])
msg.contents = ([rt.MessageContent("image", "")] if a["image"] else []) + [rt.MessageContent("text", a["prompt"])]
req = rt.Request(messages=[msg])
req.image_buffers = [rt.load_image_from_path(a["image"])] if a["image"] else []

gen = rt.LLMGenerationRequest()
gen.requests = [req]
gen.temperature, gen.top_p, gen.top_k = 1.0, 1.0, 1  # top-1: greedy
gen.max_generate_length = a["max_tokens"]
gen.apply_chat_template = gen.add_generation_prompt = True
out = llm.handle_request(gen)
print(json.dumps({"text": out.output_texts[0] if out.output_texts else ""}))
"""


def run_engine(engine_dir: Path, prompt: str, *, checkpoint: str | Path | None = None, image: Path | None = None,
               max_tokens: int = 32, env: Path | None = None, timeout: float = 600) -> str:
    """One greedy answer from Edge-LLM engines in `engine_dir` (llm.engine, and visual/ for an image).
    `checkpoint`: the fp16 / bf16 checkpoint that `tensorrt-edgellm-build` built them from (its engines read
    their weights from it); None for engines that carry their weights. RuntimeError (one line) without an
    NVIDIA GPU + TensorRT."""
    reason = engine_unavailable(env)
    if reason:
        raise RuntimeError(reason)
    env = edgellm_env(env)
    args = {"engine_dir": str(Path(engine_dir).resolve()), "prompt": prompt, "max_tokens": int(max_tokens),
            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else "",
            "image": str(Path(image).resolve()) if image else ""}
    try:
        done = _run(env, [str(env / "bin" / "python"), "-c", _ENGINE_DRIVER, json.dumps(args)],
                    "the Edge-LLM runtime", timeout)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    return json.loads(done.stdout.strip().splitlines()[-1])["text"]

