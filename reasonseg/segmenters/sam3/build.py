"""SAM 3 on each backend it runs on (torch only so far): the builder of its `segmenters/registry.py` row and what
`segmenter.backend: auto` picks."""
from __future__ import annotations

from pathlib import Path

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_loading import load_hf_model
from reasonseg.core.prompt import Segmenter
from reasonseg.core.settings import SegmenterSettings


def build_torch(seg: SegmenterSettings, cache: Path) -> Segmenter:
    from reasonseg.segmenters.sam3.torch_runner import Sam3Segmenter

    if not seg.model:
        raise ConfigError("segmenter.kind sam3 needs segmenter.model (HF id or local dir of a sam3_tracker / "
                          "sam3_tracker_video / sam3_video checkpoint, e.g. facebook/sam3)")
    return load_hf_model(f"SAM 3 {seg.model}", seg.model,
                         lambda: Sam3Segmenter(seg.model, device=seg.device, num_threads=seg.threads or None))


def auto_backend(seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
    """torch: SAM 3 has no exported backend yet."""
    return "torch", "the only SAM 3 backend so far"
