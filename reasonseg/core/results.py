"""What a pipeline answers: a `Grounding` (the instruction resolved on one frame into `Target`s, each with a
segmenter `Prompt`) and a `FrameResult` per frame (the mask, the `Instance`s found, and what a user needs to
trust it). Nodes, the CLI, the renderer and the benchmarks read these; pipelines make them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from reasonseg.core.prompt import Box, Prompt

SEGMENTED, PROPAGATED = "segmented", "propagated"


@dataclass(frozen=True)
class Target:
    """One grounded object: what it is, how sure, and how to prompt the segmenter for it."""

    label: str
    score: float
    prompt: Prompt


@dataclass(frozen=True)
class Grounding:
    """What the instruction refers to, resolved on one frame."""

    instruction: str
    labels: tuple[str, ...]            # what the instruction names (reported even when nothing is found)
    targets: tuple[Target, ...]        # chosen instance(s) in the grounding frame, best first
    reasoning: str
    source: str                        # "llm", "local", "mllm:<backend>", or "... (<why a fallback happened>)"
    pipeline: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    detail: Any = None                 # pipeline-private (refine: parsed query and reference labels)
    fallback: str = ""                 # why the preferred grounder (an LLM / VLM, a model) failed; "" when it answered

    @property
    def boxes(self) -> tuple[Box, ...]:
        return tuple(t.prompt.box for t in self.targets if t.prompt.box is not None)

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(t.score for t in self.targets)


@dataclass(frozen=True)
class Instance:
    """One chosen object: what it is, how sure, where (source pixels)."""

    label: str
    score: float
    box: Box


@dataclass(frozen=True)
class FrameResult:
    """Mask for one frame plus what a user needs to trust it."""

    mask: np.ndarray                   # bool HxW, source pixels
    valid: bool                        # a target was found in this frame
    labels: tuple[str, ...]
    boxes: tuple[Box, ...]
    score: float
    grounding: Grounding | None
    timings_ms: dict[str, float]
    note: str = ""                     # e.g. "re-acquired by rules", "target lost"
    instances: tuple[Instance, ...] = ()  # every chosen instance, best first (boxes[i] is instances[i].box)
    mask_source: str = SEGMENTED       # SEGMENTED: the pipeline ran on this frame; PROPAGATED: optical flow carried
                                       # the last segmented mask here (reasonseg/runtime/propagation.py)

    @classmethod
    def found(cls, mask: np.ndarray, instances: Sequence[Instance], grounding: Grounding | None,
              timings_ms: dict[str, float], note: str = "") -> FrameResult:
        """A frame where `instances` (at least one, best first) were found: their labels (each once, in order),
        boxes and best score."""
        return cls(mask, True, tuple(dict.fromkeys(i.label for i in instances)), tuple(i.box for i in instances),
                   max(i.score for i in instances), grounding, timings_ms, note, tuple(instances))

    @classmethod
    def not_found(cls, mask: np.ndarray, grounding: Grounding, timings_ms: dict[str, float],
                  note: str) -> FrameResult:
        """A frame where the grounded target was not found (`note` says why): the grounding's labels, no boxes."""
        return cls(mask, False, grounding.labels, (), 0.0, grounding, timings_ms, note)

    @property
    def box(self) -> Box | None:
        """Union box of all chosen instances."""
        if not self.boxes:
            return None
        b = np.asarray(self.boxes)
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


__all__ = ["Target", "Grounding", "Instance", "FrameResult", "SEGMENTED", "PROPAGATED"]
