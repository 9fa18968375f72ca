"""SAM 3 on each backend it runs on: a checkpoint on torch, the folder `reasonseg export sam3` wrote on onnxruntime;
one builder per `segmenter.backend` (rows of `segmenters/registry.py`) and what `auto` picks."""
from __future__ import annotations

from pathlib import Path

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_loading import load_hf_model, load_model
from reasonseg.core.prompt import Segmenter
from reasonseg.core.settings import SegmenterSettings
from reasonseg.segmenters.sam3.graphs import ENCODER


def build_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam3.torch_runner import Sam3Segmenter

    if not seg.model:
        raise ConfigError("segmenter.kind sam3 needs segmenter.model (HF id or local dir of a sam3_tracker / "
                          "sam3_tracker_video / sam3_video checkpoint, e.g. facebook/sam3)")
    return load_hf_model(f"SAM 3 {seg.model}", seg.model,
                         lambda: Sam3Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None))


def build_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam3.onnx_runner import OnnxSam3Segmenter

    if not seg.model or not (Path(seg.model) / ENCODER).is_file():
        raise ConfigError(f"segmenter.model={seg.model!r} has no {ENCODER}: on onnxruntime it must be the folder "
                          "`reasonseg export sam3 --checkpoint CKPT --out DIR` wrote (a checkpoint runs on "
                          "segmenter.backend=torch)")
    return load_model(f"SAM 3 ONNX {seg.model}",
                      lambda: OnnxSam3Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None),
                      "export it with `reasonseg export sam3 --checkpoint CKPT --out DIR`")


def auto_backend(seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
    """onnxruntime for a folder `reasonseg export sam3` wrote, else torch (a checkpoint)."""
    exported = bool(seg.model) and (Path(seg.model) / ENCODER).is_file()
    return ("onnxruntime", f"{ENCODER} in segmenter.model") if exported else ("torch", "a checkpoint")
