"""Grounding pipelines behind one interface (DESIGN §4)."""
from .base import FrameResult, Grounding, Pipeline
from .registry import BUILDERS, build_pipeline

__all__ = ["FrameResult", "Grounding", "Pipeline", "BUILDERS", "build_pipeline"]
