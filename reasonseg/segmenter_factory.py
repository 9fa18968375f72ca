"""One factory for every segmenter: `segmenter.kind` x `segmenter.backend` x `segmenter.device`.

Callers get a `reasonseg.prompt.Segmenter` and never branch on what it is; a new backend (TensorRT, the
export issue) is one more row in `BUILDERS`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from .config import SegmenterSettings
from .errors import CheckpointError, ConfigError, ModelCacheError
from .model_cache import SETUP_HINT, require
from .prompt import Segmenter

T = TypeVar("T")
HF_HINT = "the model must be a local dir or an HF id already in the local cache (nothing downloads at run time)"


def load_model(what: str, fn: Callable[[], T], hint: str = SETUP_HINT) -> T:
    """Loaders raise all kinds of errors on files they cannot read (ValueError, OSError, the safetensors
    and onnxruntime error types): one line that names the model and the fix."""
    try:
        return fn()
    except (ModelCacheError, CheckpointError):
        raise  # already one line naming the file / keys and the fix
    except Exception as exc:
        raise ModelCacheError(f"{what} cannot be loaded ({' '.join(str(exc).split())[:200]}); {hint}") from None


def _cpu_only(seg: SegmenterSettings) -> None:
    if seg.device.startswith("cuda"):
        raise ConfigError(f"segmenter.device={seg.device}: LiteSAM on {seg.backend} runs on the CPU here")


def _lite_sam_onnxruntime(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from .segmenters import OnnxLiteSam

    _cpu_only(seg)
    from .segmenters import DECODER_FILE

    enc, dec = require(cache, "lite_sam/encoder.onnx"), require(cache, f"lite_sam/{DECODER_FILE}")
    return load_model("LiteSAM ONNX", lambda: OnnxLiteSam(enc, dec, num_threads=seg.threads or None,
                                                          mask_choice=seg.mask_choice))


def _lite_sam_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from .segmenters import TorchLiteSam
    from .torch_device import resolve_device

    weights = require(cache, "lite_sam.safetensors")
    device = resolve_device(seg.device, "segmenter.device")
    return load_model("LiteSAM weights", lambda: TorchLiteSam(weights, num_threads=seg.threads or None, device=device,
                                                              mask_choice=seg.mask_choice))


def _sam2_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from .sam2 import Sam2Segmenter

    if not seg.model:
        raise ConfigError("segmenter.kind sam2 needs segmenter.model (HF id or local dir, e.g. "
                          "facebook/sam2.1-hiera-tiny)")
    return load_model(f"SAM2 {seg.model}",
                      lambda: Sam2Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None), HF_HINT)


BUILDERS: dict[tuple[str, str], Callable[[SegmenterSettings, Path], Segmenter]] = {
    ("lite_sam", "onnxruntime"): _lite_sam_onnxruntime,
    ("lite_sam", "torch"): _lite_sam_torch,
    ("sam2", "torch"): _sam2_torch,
}


def build_segmenter(seg: SegmenterSettings, cache: Path) -> Segmenter:
    builder = BUILDERS.get((seg.kind, seg.backend))
    if builder is None:
        have = ", ".join(b for k, b in BUILDERS if k == seg.kind)
        raise ConfigError(f"segmenter.kind {seg.kind} has no {seg.backend} backend yet (set segmenter.backend "
                          f"to {have})")
    return builder(seg, cache)
