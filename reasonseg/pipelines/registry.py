"""Build a pipeline by name from settings; `auto` picks the best that loads."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, TypeVar

from ..config import SegmenterSettings, Settings
from ..errors import ModelCacheError
from ..model_cache import SETUP_HINT, require
from .base import Pipeline

log = logging.getLogger(__name__)
T = TypeVar("T")


def _load(what: str, fn: Callable[[], T]) -> T:
    """Loaders raise all kinds of errors on files they cannot read (ValueError, OSError, the
    safetensors and onnxruntime error types): one line that names the model and the fix."""
    try:
        return fn()
    except ModelCacheError:
        raise
    except Exception as exc:
        raise ModelCacheError(f"{what} cannot be loaded ({' '.join(str(exc).split())[:200]}); {SETUP_HINT}") from None


def build_segmenter(seg: SegmenterSettings, cache: Path):
    from ..segmenters import OnnxLiteSam, TorchLiteSam

    threads = seg.threads or None
    if seg.backend == "onnxruntime":
        enc, dec = require(cache, "lite_sam/encoder.onnx"), require(cache, "lite_sam/decoder.onnx")
        return _load("LiteSAM ONNX", lambda: OnnxLiteSam(enc, dec, num_threads=threads))
    weights = require(cache, "lite_sam.safetensors")
    return _load("LiteSAM weights", lambda: TorchLiteSam(weights, num_threads=threads))


def _build_refine(settings: Settings) -> Pipeline:
    from ..label_resolver import LabelResolver
    from ..llm.client import ChatLlm
    from ..models.centernet import COCO_LABELS, CenterNetDetector
    from ..text_embedding import TextEmbedder
    from .refine import RefinePipeline

    cache = settings.cache_path
    onnx = require(cache, "centernet.onnx")
    detector = _load("CenterNet detector", lambda: CenterNetDetector(onnx))  # input size is fixed by the model
    segmenter = build_segmenter(settings.segmenter, cache)
    minilm = require(cache, "minilm")
    resolver = LabelResolver(COCO_LABELS, _load("MiniLM text encoder", lambda: TextEmbedder(minilm)),
                             min_similarity=settings.resolver.min_similarity)
    llm = ChatLlm.from_env(settings.llm.model, timeout_s=settings.llm.timeout_s, max_tokens=settings.llm.max_tokens)
    log.info("refine pipeline: detector=CenterNet, segmenter=LiteSAM/%s, LLM=%s", settings.segmenter.backend,
             f"{settings.llm.model} @ {llm.endpoint}" if llm else "none (local resolver)")
    return RefinePipeline(detector, segmenter, resolver, settings, llm)


PIPELINES: dict[str, Callable[[Settings], Pipeline]] = {"refine": _build_refine}
# `auto` prefers MLLM pipelines (mllm, lens) once they are registered and their models load.
AUTO_ORDER = ("mllm", "lens", "refine")


def build_pipeline(settings: Settings) -> Pipeline:
    if settings.pipeline != "auto":
        return PIPELINES[settings.pipeline](settings)
    for name in AUTO_ORDER:
        if name in PIPELINES:
            log.info("pipeline auto -> %s", name)
            return PIPELINES[name](settings)
    raise RuntimeError("no pipeline registered")
