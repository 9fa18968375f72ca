"""Grounding pipelines behind one interface (DESIGN §4)."""
from reasonseg.pipelines.base import FrameResult, Grounding, Pipeline
from reasonseg.pipelines.registry import BUILDERS, build_pipeline

__all__ = ["FrameResult", "Grounding", "Pipeline", "BUILDERS", "build_pipeline"]
