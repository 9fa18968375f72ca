"""One factory for every segmenter: `segmenter.kind` x `segmenter.backend` x `segmenter.device`.

Callers get a `reasonseg.prompt.Segmenter` and never branch on what it is; a new backend (TensorRT, the
export issue) is one more row in `BUILDERS`.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable, TypeVar

from reasonseg.config import SegmenterSettings
from reasonseg.errors import CheckpointError, ConfigError, ModelCacheError, one_line
from reasonseg.model_cache import SETUP_HINT, check_files, require
from reasonseg.prompt import Segmenter

T = TypeVar("T")
log = logging.getLogger(__name__)
AUTO_INT8_MIN_IOU = 0.95  # issue 10: int8 only where it keeps the masks
HF_HINT = "the model must be a local dir or an HF id already in the local cache (nothing downloads at run time)"


def load_model(what: str, fn: Callable[[], T], hint: str = SETUP_HINT) -> T:
    """Loaders raise all kinds of errors on files they cannot read (ValueError, OSError, the safetensors
    and onnxruntime error types): one line that names the model and the fix."""
    try:
        return fn()
    except ModelCacheError:
        raise  # already one line naming the file and the fix
    except CheckpointError as exc:  # one line naming the keys and the fix: add which checkpoint
        raise type(exc)(f"{what}: {exc}") from None
    except Exception as exc:
        raise ModelCacheError(f"{what} cannot be loaded ({one_line(exc)}); {hint}") from None


def load_hf_model(what: str, ref: str | Path, fn: Callable[[], T]) -> T:
    """`load_model` for a model named by a local dir or a cached HF id. A path that does not exist is said to
    be missing; transformers reports one as a malformed repo id ("Repo id must use alphanumeric chars")."""
    text = str(ref)
    if (text.startswith(("/", ".", "~")) or text.count("/") > 1) and not Path(text).expanduser().exists():
        raise ModelCacheError(f"{what}: no such file or folder; {HF_HINT}")
    return load_model(what, fn, HF_HINT)


def _set_encoder(seg: SegmenterSettings, cache: Path, backend: str = "onnxruntime") -> tuple[Path, str]:
    """The encoder file an explicit `segmenter.precision` names, or one line on how to make it."""
    from reasonseg.export.lite_sam import encoder_file, export_command

    name = f"lite_sam/{encoder_file(seg.precision, backend)}"
    if check_files(cache, name) is not None:
        raise ModelCacheError(f"segmenter.precision={seg.precision}: {cache / name} is missing or not the "
                              f"set-up's; make it with `{export_command(seg.precision, backend)}` "
                              "(then run the set-up step again) or set segmenter.precision=auto")
    return cache / name, f"{seg.precision} (set)"


def _judged_iou(cache: Path, precision: str, backend: str = "onnxruntime") -> tuple[float | None, dict | None]:
    """Mean mask IoU vs fp32 the set-up's manifest of the `precision` encoder records (None: no such encoder)."""
    from reasonseg.export.lite_sam import encoder_file
    from reasonseg.export.manifest import read_manifest

    path = cache / "lite_sam" / encoder_file(precision, backend)
    # absent (a cache from before that export): None; present but damaged: refused like any cache file
    record = read_manifest(require(cache, f"lite_sam/{path.name}")) if path.exists() else None
    return (record or {}).get("parity", {}).get("mask_iou_mean"), record


def lite_sam_encoder(seg: SegmenterSettings, cache: Path) -> tuple[Path, str]:
    """The LiteSAM encoder file `segmenter.precision` asks for on onnxruntime, and why that one (logged)."""
    from reasonseg.export.cpu_int8 import saturation_risk, this_cpu
    from reasonseg.export.lite_sam import encoder_file

    if seg.precision != "auto":
        return _set_encoder(seg, cache)
    int8 = cache / "lite_sam" / encoder_file("int8")
    iou, record = _judged_iou(cache, "int8")
    risk = saturation_risk(record, this_cpu()["int8_kernels"]) if record else None
    if iou is not None and iou >= AUTO_INT8_MIN_IOU and risk is None:
        return int8, f"int8 (auto: mean mask IoU {iou:.3f} vs fp32 >= {AUTO_INT8_MIN_IOU})"
    if risk:
        why = (f"int8 not used: {risk}; judge it here with `reasonseg export lite-sam --precision fp32 int8`, "
               "then run the set-up step again")
    else:
        why = ("no int8 encoder with a manifest" if iou is None
               else f"int8 mean mask IoU {iou:.3f} < {AUTO_INT8_MIN_IOU}")
    return require(cache, "lite_sam/encoder.onnx"), f"fp32 (auto: {why})"


def _lite_sam_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters import DECODER_FILE, OnnxLiteSam

    enc, why = lite_sam_encoder(seg, cache)
    dec = require(cache, f"lite_sam/{DECODER_FILE}")
    log.info("LiteSAM encoder: %s, %s", enc.name, why)
    # device: cpu, cuda[:N] (an error naming the fix where this onnxruntime has no CUDA provider) or auto
    return load_model("LiteSAM ONNX", lambda: OnnxLiteSam(enc, dec, num_threads=seg.threads or None,
                                                          device=seg.device, mask_choice=seg.mask_choice))


def openvino_encoder(seg: SegmenterSettings, cache: Path) -> tuple[Path, str, str]:
    """The LiteSAM encoder file and precision `segmenter.precision` asks for on openvino, and why (logged).
    auto = int8, then bf16, among those the set-up judged here (mask IoU vs fp32; int8 with the floating-point
    precision this CPU runs around it, bf16 only on native bf16), else fp32; int8 gives way to bf16 where the
    set-up timed it no faster on this CPU (export/openvino_speed.py: AMX runs bf16 as fast as int8)."""
    from reasonseg.export.cpu_int8 import saturation_risk, this_cpu
    from reasonseg.export.lite_sam import encoder_file, export_command
    from reasonseg.export.openvino_speed import SPEED_FILE, int8_not_worth_it
    from reasonseg.openvino_graph import inner_precision, native_bf16

    if seg.precision != "auto":
        return (*_set_encoder(seg, cache, "openvino"), seg.precision) if seg.precision in ("bf16", "int8") else \
            (require(cache, "lite_sam/encoder.onnx"), "fp32 (set)", "fp32")
    why_not: dict[str, str] = {}  # precision -> why it was passed over (the log line names those ahead of the pick)
    judged: dict[str, tuple[float, str]] = {}
    for precision in ("int8", "bf16"):
        iou, record = _judged_iou(cache, precision, "openvino")
        judged_inside = (record or {}).get("inner_precision", precision)
        if precision == "bf16" and not native_bf16():
            why_not[precision] = "this CPU has no native bf16"
        elif iou is None:
            why_not[precision] = (f"no {precision} encoder with a manifest (the set-up step makes them on a CPU "
                                  f"with native bf16: `{export_command(precision, 'openvino')}`)")
        elif judged_inside != inner_precision(precision):
            why_not[precision] = (f"{precision} was judged with {judged_inside} around it, this CPU runs "
                                  f"{inner_precision(precision)}")
        elif iou < AUTO_INT8_MIN_IOU:
            why_not[precision] = f"{precision} mean mask IoU {iou:.3f} < {AUTO_INT8_MIN_IOU}"
        elif precision == "int8" and (risk := saturation_risk(record or {}, this_cpu()["int8_kernels"])):
            why_not[precision] = f"int8: {risk}"
        else:
            judged[precision] = (iou, judged_inside)
    if len(judged) == 2 and (cache / "lite_sam" / SPEED_FILE).exists():
        require(cache, f"lite_sam/{SPEED_FILE}")  # the set-up's timing, checksummed like every cache file
        if slower := int8_not_worth_it(cache / "lite_sam"):
            why_not["int8"] = slower
            del judged["int8"]
    for precision, (iou, judged_inside) in judged.items():
        inside = f"{judged_inside} around it" if precision == "int8" else "native bf16"
        return (cache / "lite_sam" / encoder_file(precision, "openvino"),
                f"{precision} (auto: {inside}, mean mask IoU {iou:.3f} vs fp32 >= {AUTO_INT8_MIN_IOU}"
                + (f"; {why_not['int8']}" if precision == "bf16" and "int8" in why_not else "") + ")", precision)
    return require(cache, "lite_sam/encoder.onnx"), f"fp32 (auto: {'; '.join(why_not.values())})", "fp32"


def _lite_sam_openvino(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.openvino_graph import OvGraph, require_openvino
    from reasonseg.segmenters import DECODER_FILE, OnnxLiteSam

    require_openvino()  # a ConfigError naming the package, before any file is looked at
    enc, why, precision = openvino_encoder(seg, cache)
    if enc.suffix == ".xml":  # an IR's weights live beside it: checked like every cache file
        require(cache, f"lite_sam/{enc.with_suffix('.bin').name}")
    dec = require(cache, f"lite_sam/{DECODER_FILE}")
    log.info("LiteSAM encoder: %s on openvino, %s", enc.name, why)
    # the decoder runs at the encoder's precision (int8: the floating-point one around it): judged together
    return load_model("LiteSAM OpenVINO", lambda: OnnxLiteSam(
        OvGraph(enc, "LiteSAM encoder", precision=precision, threads=seg.threads),
        OvGraph(dec, "LiteSAM decoder", precision=precision, threads=seg.threads), mask_choice=seg.mask_choice))


def _lite_sam_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters import TorchLiteSam
    from reasonseg.torch_device import resolve_device

    weights = require(cache, "lite_sam.safetensors")
    device = resolve_device(seg.device, "segmenter.device")
    return load_model("LiteSAM weights", lambda: TorchLiteSam(weights, num_threads=seg.threads or None, device=device,
                                                              mask_choice=seg.mask_choice))


def _sam2_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.sam2 import Sam2Segmenter

    if not seg.model:
        raise ConfigError("segmenter.kind sam2 needs segmenter.model (HF id or local dir, e.g. "
                          "facebook/sam2.1-hiera-tiny)")
    return load_hf_model(f"SAM2 {seg.model}", seg.model,
                         lambda: Sam2Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None))


def tensorrt_engines(seg: SegmenterSettings, cache: Path) -> list[tuple[Path, str]]:
    """(ONNX file, TensorRT precision) of every engine `segmenter.*` needs: what build-only mode builds and the
    tensorrt backend loads. auto = fp16 on a GPU; int8 needs the calibrated QDQ encoder (static method)."""
    from reasonseg.export.manifest import read_manifest
    from reasonseg.segmenters import DECODER_FILE

    if seg.kind != "lite_sam":
        raise ConfigError(f"segmenter.kind {seg.kind} has no tensorrt backend yet (export its ONNX with "
                          "`reasonseg export` and use segmenter.backend=onnxruntime with the TensorRT provider)")
    precision = "fp16" if seg.precision == "auto" else seg.precision
    enc = require(cache, "lite_sam/encoder.int8.onnx" if precision == "int8" else "lite_sam/encoder.onnx")
    if precision == "int8" and (read_manifest(enc) or {}).get("int8_method") != "static":
        raise ConfigError("segmenter.precision=int8 on tensorrt needs the calibrated QDQ encoder: "
                          "reasonseg export lite-sam --precision int8 --int8-method static")
    return [(enc, precision), (require(cache, f"lite_sam/{DECODER_FILE}"), "fp16" if precision == "int8" else precision)]


def _lite_sam_tensorrt(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.export.tensorrt import TrtGraph, engine_path, gpu_name, require_tensorrt
    from reasonseg.segmenters import OnnxLiteSam

    require_tensorrt()  # a ConfigError naming what is missing, before any file is looked at
    gpu_name()
    (enc, p_enc), (dec, p_dec) = tensorrt_engines(seg, cache)
    engines = cache / "engines"
    return load_model("LiteSAM TensorRT", lambda: OnnxLiteSam(TrtGraph(engine_path(enc, engines, p_enc)),
                                                              TrtGraph(engine_path(dec, engines, p_dec)),
                                                              mask_choice=seg.mask_choice),
                      "build the engines ahead: reasonseg export tensorrt --config YOUR.yaml")


def _sam2_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.export.sam2 import ENCODER
    from reasonseg.sam2_onnx import OnnxSam2Segmenter

    if not seg.model or not (Path(seg.model) / ENCODER).is_file():
        raise ConfigError(f"segmenter.model={seg.model!r} has no {ENCODER}: on onnxruntime it must be the folder "
                          "`reasonseg export sam2 --checkpoint CKPT --out DIR` wrote (a checkpoint runs on "
                          "segmenter.backend=torch)")
    return load_model(f"SAM2 ONNX {seg.model}",
                      lambda: OnnxSam2Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None),
                      "export it with `reasonseg export sam2 --checkpoint CKPT --out DIR`")


BUILDERS: dict[tuple[str, str], Callable[[SegmenterSettings, Path], Segmenter]] = {
    ("lite_sam", "onnxruntime"): _lite_sam_onnxruntime,
    ("lite_sam", "torch"): _lite_sam_torch,
    ("sam2", "torch"): _sam2_torch,
    ("sam2", "onnxruntime"): _sam2_onnxruntime,
    ("lite_sam", "tensorrt"): _lite_sam_tensorrt,
    ("lite_sam", "openvino"): _lite_sam_openvino,
}


# The reduced precisions `segmenter.precision` can pick, per pair; every other pair runs fp32 and refuses an
# explicit fp16 / int8 / bf16 rather than silently running fp32 (issue 10: never a silent wrong result).
REDUCED_PRECISION: dict[tuple[str, str], tuple[str, ...]] = {
    ("lite_sam", "onnxruntime"): ("fp16", "int8"), ("lite_sam", "tensorrt"): ("fp16", "int8"),
    ("lite_sam", "openvino"): ("bf16", "int8")}


def auto_backend(seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
    """What `segmenter.backend: auto` runs, and why. lite_sam: openvino where it would run int8 or bf16 (a judged
    encoder: 1.3-2.8x onnxruntime's int8 encoder on a CPU with native bf16), else onnxruntime; sam2:
    onnxruntime for a folder `reasonseg export sam2` wrote, else torch."""
    if seg.kind == "sam2":
        from reasonseg.export.sam2 import ENCODER

        exported = bool(seg.model) and (Path(seg.model) / ENCODER).is_file()
        return ("onnxruntime", f"{ENCODER} in segmenter.model") if exported else ("torch", "a checkpoint")
    if seg.precision not in ("auto", "bf16"):
        return "onnxruntime", f"segmenter.precision={seg.precision} runs there"
    if seg.device != "cpu":
        from reasonseg.onnx_session import providers_for

        first = providers_for(seg.device)[0]  # cuda without a CUDA onnxruntime: the error names the fix
        if first != "CPUExecutionProvider":
            return "onnxruntime", f"a GPU ({first if isinstance(first, str) else first[0]})"
    try:
        _, why, precision = openvino_encoder(replace(seg, precision="auto"), cache)
    except ConfigError as exc:  # openvino not installed: the onnxruntime default does not need it
        return "onnxruntime", str(exc).split(";")[0]
    if precision != "fp32" or seg.precision == "bf16":
        return "openvino", why
    return "onnxruntime", f"openvino would run {why}"


def build_segmenter(seg: SegmenterSettings, cache: Path) -> Segmenter:
    if seg.backend == "auto":
        backend, why = auto_backend(seg, cache)
        log.info("segmenter.backend auto -> %s: %s", backend, why)
        seg = replace(seg, backend=backend)
    builder = BUILDERS.get((seg.kind, seg.backend))
    if builder is None:
        have = ", ".join(b for k, b in BUILDERS if k == seg.kind)
        raise ConfigError(f"segmenter.kind {seg.kind} has no {seg.backend} backend yet (set segmenter.backend "
                          f"to {have})")
    allowed = REDUCED_PRECISION.get((seg.kind, seg.backend), ())
    if seg.precision not in ("auto", "fp32", *allowed):
        have = " or ".join(f"{k} on {b}" for (k, b), p in sorted(REDUCED_PRECISION.items()) if seg.precision in p)
        runs = " / ".join(("fp32", *allowed)) if allowed else "fp32 only"
        raise ConfigError(f"segmenter.precision={seg.precision}: segmenter.kind {seg.kind} on {seg.backend} runs "
                          f"{runs} ({seg.precision} is for {have}); set segmenter.precision=auto or fp32")
    return builder(seg, cache)
