"""CORA's instruction sets (cora.txt §3.4.2, Fig. 5) from labeled masks, and the K rephrasings §3.2.1 needs.

* semantic: class names fitted into segmentation query templates;
* attribute: the object described by what it looks like and where it is rather than by its class;
* conditional relationship: "the <target> that is <relation> the <anchor_mask><anchor_box>" for two objects of
  the image, the relation computed from their masks with the camera as the frame of reference (left / right
  as the camera sees them, "in front of" = nearer the camera = lower ground contact).
An OpenAI-compatible LLM writes the descriptions and question wording from the image size, the classes and
the mask polygons (Fig. 5's two calls); its answer must be one JSON object with the fields asked for, is
checked (lengths, the anchor placeholders present exactly once, no other markup) and never executed. When
no endpoint is configured, the endpoint fails, or the answer is unusable, the offline templates answer
instead and the record says so. The supplementary's exact GPT-4o prompts are not in cora.txt: the prompts
below follow its description (and are ours).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from reasonseg.core.model_text import clean_model_text
from reasonseg.grounding.llm.client import ChatLlm, LlmError, parse_json_object
from reasonseg.models.cora import ANCHOR_BOX_TOKEN, ANCHOR_MASK_TOKEN, seg_prompt

SEMANTIC_TEMPLATES = ("the {c}", "every {c}", "all the {c} pixels", "the {c} in the scene", "each {c} you can see",
                      "whatever is a {c}", "the region of the {c}")
REPHRASE_TEMPLATES = ("Can you segment {q} in this image?", "Please segment {q}.", "Segment {q}.",
                      "Where is {q}? Give me its mask.", "Show me {q} with a mask.", "I need a mask of {q}.",
                      "Could you outline {q} in this picture?")
K_REPHRASINGS = 7  # §3.2.1: the trained query plus K - 1 = 6 frozen passes
MAX_TEXT = 200
ANCHOR = ANCHOR_MASK_TOKEN + ANCHOR_BOX_TOKEN

SYSTEM_DESCRIBE = ("You write referring expressions for segmentation training data. You get an image's size, the "
                   "class of each object and its mask polygon in pixels. Reply with one JSON object "
                   '{"target": "...", "anchor": "..."}: a short noun phrase (at most 12 words) for each of the two '
                   "objects named, saying what it is and how it looks or where it is, never naming coordinates.")
SYSTEM_RELATION = ("You write segmentation questions about the spatial relation of two objects. The camera is the "
                   "frame of reference: left and right as the camera sees them; in front of means nearer the camera. "
                   'Reply with one JSON object {"question": "..."}: a question asking to segment the target, that '
                   f"refers to the anchor only as {ANCHOR} (exactly once) and states the given relation.")


@dataclass(frozen=True)
class Instruction:
    kind: str            # "semantic" | "attribute" | "conditional"
    text: str            # the user text (a CORA query: "Can you segment ... in this image?")
    target: int          # index of the target object
    anchor: int | None   # index of the anchor object (conditional), else None
    source: str          # "template" | "llm" | "template (llm: <why not>)"


def mask_polygons(mask: np.ndarray, tolerance: float = 1.0, max_points: int = 40) -> list[list[tuple[int, int]]]:
    """Outer contours of a binary mask, simplified, as [(x, y), ...] pixel lists (largest first)."""
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True):
        eps = tolerance
        poly = cv2.approxPolyDP(c, eps, True)
        while len(poly) > max_points:
            eps *= 1.5
            poly = cv2.approxPolyDP(c, eps, True)
        out.append([(int(p[0][0]), int(p[0][1])) for p in poly])
    return out


def spatial_relation(target: np.ndarray, anchor: np.ndarray) -> str:
    """The dominant relation of the target to the anchor, camera frame: horizontal offset of centroids against
    the difference in ground contact (lowest row: nearer the camera)."""
    ty, tx = np.nonzero(target)
    ay, ax = np.nonzero(anchor)
    if not len(tx) or not len(ax):
        raise ValueError("both masks must have pixels")
    dx = (tx.mean() - ax.mean()) / target.shape[1]
    depth = (ty.max() - ay.max()) / target.shape[0]
    if abs(dx) >= abs(depth):
        return "to the left of" if dx < 0 else "to the right of"
    return "in front of" if depth > 0 else "behind"


def semantic_instructions(class_name: str, target: int, n: int = 3, seed: int = 0) -> list[Instruction]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(SEMANTIC_TEMPLATES), size=min(n, len(SEMANTIC_TEMPLATES)), replace=False)
    return [Instruction("semantic", seg_prompt(SEMANTIC_TEMPLATES[i].format(c=class_name)), target, None, "template")
            for i in picks]


def rephrasings(query: str, k: int = K_REPHRASINGS) -> list[str]:
    """K semantically equivalent user texts for one referring phrase (`query` without the question frame)."""
    return [REPHRASE_TEMPLATES[i % len(REPHRASE_TEMPLATES)].format(q=query.strip().rstrip("?.!")) for i in range(k)]


def _clean(text: object, field: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise LlmError(f"LLM answer has no usable {field!r}")
    text = clean_model_text(text, max_chars=8 * MAX_TEXT)  # no escape / bidi / control characters into a data set
    if len(text) > MAX_TEXT or any(ch in text for ch in "{}`\\"):
        raise LlmError(f"LLM {field!r} is too long or carries markup")
    return text


class InstructionWriter:
    """Attribute and conditional instructions for one labeled image: LLM first (when configured), templates else."""

    def __init__(self, llm: ChatLlm | None = None) -> None:
        self.llm = llm

    def _ask(self, system: str, payload: dict) -> dict:
        return parse_json_object(self.llm.complete(system, json.dumps(payload)))

    def conditional(self, classes: Sequence[str], masks: Sequence[np.ndarray], target: int, anchor: int,
                    attributes: Sequence[str] = ()) -> Instruction:
        """Fig. 5: describe target and anchor from polygons, then the question with the relation."""
        relation = spatial_relation(masks[target], masks[anchor])
        offline = (attributes[target] if attributes else f"the {classes[target]}")
        text = f"{offline} that is {relation} {ANCHOR}"
        source = "template"
        if self.llm is not None:
            h, w = masks[target].shape
            scene = {"image_size": [w, h], "objects": [{"id": i, "class": c, "polygon": mask_polygons(m)[0]}
                                                       for i, (c, m) in enumerate(zip(classes, masks)) if m.any()]}
            try:
                names = self._ask(SYSTEM_DESCRIBE, {**scene, "target_id": target, "anchor_id": anchor})
                target_text = _clean(names.get("target"), "target")
                q = self._ask(SYSTEM_RELATION, {"target": target_text, "anchor": _clean(names.get("anchor"), "anchor"),
                                                "relation": relation})
                question = _clean(q.get("question"), "question")
                if question.count(ANCHOR) != 1 or question.count(ANCHOR_MASK_TOKEN) != 1:
                    raise LlmError(f"the question must name the anchor as {ANCHOR} exactly once")
                return Instruction("conditional", question, target, anchor, "llm")  # the LLM's own wording
            except LlmError as exc:
                source = f"template (llm: {exc})"
        return Instruction("conditional", seg_prompt(text, anchor=True), target, anchor, source)


__all__ = ["Instruction", "InstructionWriter", "K_REPHRASINGS", "mask_polygons", "rephrasings", "semantic_instructions",
           "spatial_relation"]
