"""Every segmenter, one row per `segmenter.kind` x `segmenter.backend`: the builder, the precisions it runs and
the cache files it loads. Callers get a `core.prompt.Segmenter` and never branch on what it is.

Add a backend: a builder in the kind's `build.py` and one row in `SPECS`; add a kind: a folder beside
`lite_sam/` and `sam2/` (graph contract, runners, `build.py` with `auto_backend`) and its rows. The choice lists
of `segmenter.kind` / `.backend` / `.precision` (settings validation, the parameter schema, the launch file's
`backend:=`, the CLI) are derived from this table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from reasonseg.core.errors import ConfigError
from reasonseg.core.prompt import Segmenter
from reasonseg.core.settings import SegmenterSettings
from reasonseg.segmenters.lite_sam import build as lite_sam
from reasonseg.segmenters.lite_sam.graphs import graph_files
from reasonseg.segmenters.sam2 import build as sam2
from reasonseg.segmenters.sam2.graphs import DECODER, ENCODER
from reasonseg.segmenters.sam3 import build as sam3
from reasonseg.segmenters.sam3 import graphs as sam3_graphs

log = logging.getLogger(__name__)
Builder = Callable[[SegmenterSettings, Path], Segmenter]


@dataclass(frozen=True)
class SegmenterSpec:
    kind: str
    backend: str
    build: Builder
    # what `segmenter.precision` may name besides auto; every other precision is refused at start rather than
    # silently run as fp32 (issue 10: never a silent wrong result)
    precisions: tuple[str, ...]
    # the files it loads, as the kind's graph contract names them (cache-relative, or inside segmenter.model)
    files: tuple[str, ...]


SPECS: tuple[SegmenterSpec, ...] = (
    SegmenterSpec("lite_sam", "torch", lite_sam.build_torch, ("fp32",), graph_files("torch", ())),
    SegmenterSpec("lite_sam", "onnxruntime", lite_sam.build_onnxruntime, ("fp32", "fp16", "int8"),
                  graph_files("onnxruntime", ("fp32", "fp16", "int8"))),
    SegmenterSpec("lite_sam", "tensorrt", lite_sam.build_tensorrt, ("fp32", "fp16", "int8"),
                  graph_files("tensorrt", ("fp32", "int8"))),
    SegmenterSpec("lite_sam", "openvino", lite_sam.build_openvino, ("fp32", "bf16", "int8"),
                  graph_files("openvino", ("fp32", "bf16", "int8"))),
    SegmenterSpec("sam2", "torch", sam2.build_torch, ("fp32",), ()),  # a transformers checkpoint
    SegmenterSpec("sam2", "onnxruntime", sam2.build_onnxruntime, ("fp32",), (ENCODER, DECODER)),
    SegmenterSpec("sam3", "torch", sam3.build_torch, ("fp32",), ()),  # a transformers checkpoint
    SegmenterSpec("sam3", "onnxruntime", sam3.build_onnxruntime, ("fp32",),
                  (sam3_graphs.ENCODER, sam3_graphs.DECODER)),
)
AUTO: dict[str, Callable[[SegmenterSettings, Path], tuple[str, str]]] = {
    "lite_sam": lite_sam.auto_backend, "sam2": sam2.auto_backend, "sam3": sam3.auto_backend}

# the choice lists, derived (first-seen order)
KINDS: tuple[str, ...] = tuple(dict.fromkeys(s.kind for s in SPECS))
BACKENDS: tuple[str, ...] = ("auto", *dict.fromkeys(s.backend for s in SPECS))
PRECISIONS: tuple[str, ...] = ("auto", *dict.fromkeys(p for s in sorted(SPECS, key=lambda s: -len(s.precisions))
                                                      for p in s.precisions))


def spec_for(kind: str, backend: str) -> SegmenterSpec | None:
    return next((s for s in SPECS if (s.kind, s.backend) == (kind, backend)), None)


def auto_backend(seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
    """What `segmenter.backend: auto` runs for this kind, and why (logged)."""
    return AUTO[seg.kind](seg, cache)


def build_segmenter(seg: SegmenterSettings, cache: Path) -> Segmenter:
    if seg.backend == "auto":
        backend, why = auto_backend(seg, cache)
        log.info("segmenter.backend auto -> %s: %s", backend, why)
        seg = replace(seg, backend=backend)
    spec = spec_for(seg.kind, seg.backend)
    if spec is None:
        have = ", ".join(s.backend for s in SPECS if s.kind == seg.kind)
        raise ConfigError(f"segmenter.kind {seg.kind} has no {seg.backend} backend yet (set segmenter.backend "
                          f"to {have})")
    if seg.precision not in ("auto", *spec.precisions):
        have = " or ".join(f"{s.kind} on {s.backend}" for s in sorted(SPECS, key=lambda s: (s.kind, s.backend))
                           if seg.precision in s.precisions)
        runs = " / ".join(spec.precisions) if len(spec.precisions) > 1 else "fp32 only"
        raise ConfigError(f"segmenter.precision={seg.precision}: segmenter.kind {seg.kind} on {seg.backend} runs "
                          f"{runs} ({seg.precision} is for {have}); set segmenter.precision=auto or fp32")
    return spec.build(seg, cache)
