"""SAM2 on each backend it runs on: a checkpoint on torch, the folder `reasonseg export sam2` wrote on onnxruntime;
one builder per `segmenter.backend` (rows of `segmenters/registry.py`) and what `auto` picks."""
from __future__ import annotations

from pathlib import Path

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_loading import load_hf_model, load_model
from reasonseg.core.prompt import Segmenter
from reasonseg.core.settings import SegmenterSettings
from reasonseg.segmenters.sam2.graphs import ENCODER


def build_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    if not seg.model:
        raise ConfigError("segmenter.kind sam2 needs segmenter.model (HF id or local dir, e.g. "
                          "facebook/sam2.1-hiera-tiny)")
    return load_hf_model(f"SAM2 {seg.model}", seg.model,
                         lambda: Sam2Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None))


def build_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter

    if not seg.model or not (Path(seg.model) / ENCODER).is_file():
        raise ConfigError(f"segmenter.model={seg.model!r} has no {ENCODER}: on onnxruntime it must be the folder "
                          "`reasonseg export sam2 --checkpoint CKPT --out DIR` wrote (a checkpoint runs on "
                          "segmenter.backend=torch)")
    return load_model(f"SAM2 ONNX {seg.model}",
                      lambda: OnnxSam2Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None),
                      "export it with `reasonseg export sam2 --checkpoint CKPT --out DIR`")


def auto_backend(seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
    """onnxruntime for a folder `reasonseg export sam2` wrote, else torch (a checkpoint)."""
    exported = bool(seg.model) and (Path(seg.model) / ENCODER).is_file()
    return ("onnxruntime", f"{ENCODER} in segmenter.model") if exported else ("torch", "a checkpoint")
