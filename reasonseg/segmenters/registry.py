"""One factory for every segmenter: `segmenter.kind` x `segmenter.backend` x `segmenter.device`.

Callers get a `reasonseg.core.prompt.Segmenter` and never branch on what it is; a new backend (TensorRT, the
export issue) is one more row in `BUILDERS`.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_cache import require
from reasonseg.core.prompt import Segmenter
from reasonseg.core.model_loading import load_hf_model, load_model
from reasonseg.segmenters.lite_sam.precision import lite_sam_encoder, openvino_encoder, tensorrt_engines

if TYPE_CHECKING:  # settings sit above this layer: annotations only
    from reasonseg.settings.sections import SegmenterSettings

T = TypeVar("T")
log = logging.getLogger(__name__)


def _lite_sam_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.lite_sam.runners import DECODER_FILE, OnnxLiteSam

    enc, why = lite_sam_encoder(seg, cache)
    dec = require(cache, f"lite_sam/{DECODER_FILE}")
    log.info("LiteSAM encoder: %s, %s", enc.name, why)
    # device: cpu, cuda[:N] (an error naming the fix where this onnxruntime has no CUDA provider) or auto
    return load_model("LiteSAM ONNX", lambda: OnnxLiteSam(enc, dec, num_threads=seg.threads or None,
                                                          device=seg.device, mask_choice=seg.mask_choice))


def _lite_sam_openvino(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.backends.openvino_graph import OvGraph, require_openvino
    from reasonseg.segmenters.lite_sam.runners import DECODER_FILE, OnnxLiteSam

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
    from reasonseg.segmenters.lite_sam.runners import TorchLiteSam
    from reasonseg.core.torch_device import resolve_device

    weights = require(cache, "lite_sam.safetensors")
    device = resolve_device(seg.device, "segmenter.device")
    return load_model("LiteSAM weights", lambda: TorchLiteSam(weights, num_threads=seg.threads or None, device=device,
                                                              mask_choice=seg.mask_choice))


def _sam2_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    if not seg.model:
        raise ConfigError("segmenter.kind sam2 needs segmenter.model (HF id or local dir, e.g. "
                          "facebook/sam2.1-hiera-tiny)")
    return load_hf_model(f"SAM2 {seg.model}", seg.model,
                         lambda: Sam2Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None))


def _lite_sam_tensorrt(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.backends.tensorrt_graph import TrtGraph, engine_path, gpu_name, require_tensorrt
    from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam

    require_tensorrt()  # a ConfigError naming what is missing, before any file is looked at
    gpu_name()
    (enc, p_enc), (dec, p_dec) = tensorrt_engines(seg, cache)
    engines = cache / "engines"
    return load_model("LiteSAM TensorRT", lambda: OnnxLiteSam(TrtGraph(engine_path(enc, engines, p_enc)),
                                                              TrtGraph(engine_path(dec, engines, p_dec)),
                                                              mask_choice=seg.mask_choice),
                      "build the engines ahead: reasonseg export tensorrt --config YOUR.yaml")


def _sam2_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam2.graphs import ENCODER
    from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter

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
        from reasonseg.segmenters.sam2.graphs import ENCODER

        exported = bool(seg.model) and (Path(seg.model) / ENCODER).is_file()
        return ("onnxruntime", f"{ENCODER} in segmenter.model") if exported else ("torch", "a checkpoint")
    if seg.precision not in ("auto", "bf16"):
        return "onnxruntime", f"segmenter.precision={seg.precision} runs there"
    if seg.device != "cpu":
        from reasonseg.backends.onnxruntime_graph import providers_for

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
