"""Grounding pipelines behind one interface (DESIGN §4)."""
from .base import FrameResult, Grounding, Pipeline
from .registry import PIPELINES, build_pipeline

__all__ = ["FrameResult", "Grounding", "Pipeline", "PIPELINES", "build_pipeline"]
