"""Instructions that name a purpose or an action instead of a thing.

"something to drink from" / "something I can ride" (purpose) and "what the player is kicking" /
"what the man is holding" (action) carry no class noun: the verb does. Each verb lists the label-set
classes it typically takes as its object (COCO labels); an action's subject ("the player") becomes the
reference the target must be near. The OpenAI-compatible LLM path answers these better where one is
configured; this is the local resolver's reading.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_FOOD = ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake")
_HANDHELD = ("sports ball", "cup", "bottle", "cell phone", "umbrella", "book", "remote", "frisbee", "knife",
             "wine glass", "teddy bear", "handbag", "toothbrush", "scissors", "kite", "tennis racket",
             "baseball bat", "banana", "apple", "donut", "hot dog", "sandwich")
# verb lemma -> the classes it acts on, most typical first
VERB_OBJECTS: dict[str, tuple[str, ...]] = {
    "drink": ("cup", "wine glass", "bottle"),
    "sip": ("cup", "wine glass", "bottle"),
    "eat": _FOOD,
    "ride": ("bicycle", "motorcycle", "horse", "skateboard", "surfboard", "elephant", "skis", "snowboard"),
    "kick": ("sports ball",),
    "throw": ("frisbee", "sports ball"),
    "catch": ("frisbee", "sports ball"),
    "hit": ("sports ball",),
    "fly": ("kite", "airplane"),
    "hold": _HANDHELD,
    "carry": ("handbag", "backpack", "suitcase", "umbrella", *_HANDHELD),
    "read": ("book",),
    "write": ("book",),
    "sit": ("chair", "bench", "couch", "toilet", "bed"),
    "sleep": ("bed", "couch"),
    "lie": ("bed", "couch", "bench"),
    "cut": ("knife", "scissors"),
    "drive": ("car", "truck", "bus"),
    "walk": ("dog",),
    "pet": ("dog", "cat"),
    "feed": ("dog", "cat", "horse", "bird"),
    "watch": ("tv", "laptop"),
    "call": ("cell phone",),
    "phone": ("cell phone",),
    "type": ("keyboard", "laptop"),
    "wear": ("tie", "backpack", "handbag"),
    "pour": ("bottle", "cup", "wine glass"),
    "play": ("sports ball", "frisbee", "kite", "teddy bear"),
    "sail": ("boat",),
    "surf": ("surfboard",),
    "ski": ("skis",),
    "cook": ("oven", "microwave"),
    "store": ("refrigerator",),
    "wash": ("sink",),
    "use": _HANDHELD,
}

_PURPOSE = re.compile(
    r"\b(?:something|anything|a thing|things|an object|objects|stuff)\s+"
    r"(?:(?:that\s+)?(?:i|we|you|one|someone|people|a person)\s+(?:can|could|may|might|would|should)\s+|"
    r"(?:to|for)\s+|(?:used\s+(?:to|for)\s+))?"
    r"(?:be\s+)?([a-z]+)")
_ACTION = re.compile(
    r"\b(?:what|whatever|the\s+(?:thing|object|item)(?:\s+that)?)\s+(?:the\s+|a\s+|an\s+|this\s+|that\s+)?"
    r"([a-z][a-z ]*?)\s+(?:is|are|was|were|'s)\s+([a-z]+ing)\b"
    r"|\bwhat\s+(?:is|are|was|were)\s+(?:the\s+|a\s+|an\s+)?([a-z][a-z ]*?)\s+([a-z]+ing)\b")


@dataclass(frozen=True)
class Affordance:
    verb: str                  # lemma
    labels: tuple[str, ...]    # classes the verb acts on
    subject: str               # who acts ("" for a purpose)


def lemma(word: str) -> str:
    """kicking -> kick, riding -> ride, sitting -> sit, drinks -> drink (only for verbs we know)."""
    w = word.lower()
    if w in VERB_OBJECTS:
        return w
    cands = []
    if w.endswith("ing"):
        stem = w[:-3]
        cands = [stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else stem]
    elif w.endswith("s"):
        cands = [w[:-1], w[:-2]]
    return next((c for c in cands if c in VERB_OBJECTS), w)


def parse_affordance(text: str, labels: tuple[str, ...]) -> Affordance | None:
    """The verb-led reading of an instruction, restricted to `labels`; None when it names a thing."""
    t = " ".join(text.lower().replace("’", "'").split())
    m = _ACTION.search(t)
    if m:
        subject, verb = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        verb = lemma(verb)
        objs = tuple(x for x in VERB_OBJECTS.get(verb, ()) if x in labels)
        if objs:
            return Affordance(verb, objs, subject.strip())
    m = _PURPOSE.search(t)
    if m:
        verb = lemma(m.group(1))
        objs = tuple(x for x in VERB_OBJECTS.get(verb, ()) if x in labels)
        if objs:
            return Affordance(verb, objs, "")
    return None
