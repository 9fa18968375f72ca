"""LiteSAM on each backend it runs on: one builder per `segmenter.backend`, and what `auto` picks.

A builder takes the `segmenter` settings and the cache folder and returns a `core.prompt.Segmenter`; the rows of
`segmenters/registry.py` name them. Runners are imported when built, so the registry imports nothing heavy.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_cache import require
from reasonseg.core.model_loading import load_model
from reasonseg.core.prompt import Segmenter
from reasonseg.core.settings import SegmenterSettings
from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE, FOLDER, WEIGHTS
from reasonseg.segmenters.lite_sam.precision import lite_sam_encoder, openvino_encoder, tensorrt_engines

log = logging.getLogger(__name__)


def build_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam

    enc, why = lite_sam_encoder(seg, cache)
    dec = require(cache, f"{FOLDER}/{DECODER_FILE}")
    log.info("LiteSAM encoder: %s, %s", enc.name, why)
    # device: cpu, cuda[:N] (an error naming the fix where this onnxruntime has no CUDA provider) or auto
    return load_model("LiteSAM ONNX", lambda: OnnxLiteSam(enc, dec, num_threads=seg.threads or None,
                                                          device=seg.device, mask_choice=seg.mask_choice))


def build_openvino(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.backends.openvino_graph import OvGraph, require_openvino
    from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam

    require_openvino()  # a ConfigError naming the package, before any file is looked at
    enc, why, precision = openvino_encoder(seg, cache)
    if enc.suffix == ".xml":  # an IR's weights live beside it: checked like every cache file
        require(cache, f"{FOLDER}/{enc.with_suffix('.bin').name}")
    dec = require(cache, f"{FOLDER}/{DECODER_FILE}")
    log.info("LiteSAM encoder: %s on openvino, %s", enc.name, why)
    # the decoder runs at the encoder's precision (int8: the floating-point one around it): judged together
    return load_model("LiteSAM OpenVINO", lambda: OnnxLiteSam(
        OvGraph(enc, "LiteSAM encoder", precision=precision, threads=seg.threads),
        OvGraph(dec, "LiteSAM decoder", precision=precision, threads=seg.threads), mask_choice=seg.mask_choice))


def build_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.core.torch_device import resolve_device
    from reasonseg.segmenters.lite_sam.runners import TorchLiteSam

    weights = require(cache, WEIGHTS)
    device = resolve_device(seg.device, "segmenter.device")
    return load_model("LiteSAM weights", lambda: TorchLiteSam(weights, num_threads=seg.threads or None, device=device,
                                                              mask_choice=seg.mask_choice))


def build_tensorrt(seg: SegmenterSettings, cache: Path) -> Segmenter:
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


def auto_backend(seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
    """What `segmenter.backend: auto` runs for LiteSAM, and why: openvino where it would run int8 or bf16 (an
    encoder the set-up judged: 1.3-2.8x onnxruntime's int8 encoder on a CPU with native bf16), else onnxruntime."""
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
