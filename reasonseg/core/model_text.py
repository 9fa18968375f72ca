"""Text that came from a model (LLM / VLM answers: labels, reasoning, phrases) made safe to log, print and publish.

A model's answer is untrusted: it can carry ANSI escapes (colours, terminal-title and hyperlink sequences),
carriage returns and newlines that forge log lines ("\\n[ERROR] ..."), and bidi overrides that make a label
read differently than it is stored. Every string taken from an answer passes through `clean_model_text`
before anything else sees it.
"""
from __future__ import annotations

import re
import unicodedata

from reasonseg.core.errors import ReasonSegError

# ESC-introduced sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ST), and two-character escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# C1 CSI / OSC introducers (U+009B, U+009D) with their parameters, as some terminals honour them too.
_C1 = re.compile(r"\x9b[0-?]*[ -/]*[@-~]|\x9d[^\x07\x9c]*[\x07\x9c]?")


def clean_model_text(text: object, *, max_chars: int = 2000) -> str:
    """`text` as one printable line: escape sequences removed, control / line-separator characters as spaces,
    format characters (bidi overrides and isolates, zero-width joiners) dropped, runs of spaces collapsed,
    at most `max_chars` characters (an ellipsis marks a cut)."""
    s = text if isinstance(text, str) else str(text)
    if len(s) > 8 * max_chars:  # bound the regex and per-character work on a hostile answer
        s = s[: 8 * max_chars]
    s = _C1.sub("", _ANSI.sub("", s))
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat == "Cf" or cat == "Cs" or cat == "Co" or cat == "Cn":
            continue
        out.append(" " if cat in ("Cc", "Zl", "Zp") else ch)
    s = " ".join("".join(out).split())
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


MAX_JSON_DEPTH = 32  # an answer's JSON is 2-4 levels deep; deeper is hostile (json's C scanner recurses)


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets outside JSON strings nest deeper than `limit` anywhere in `text`: one linear pass
    (no recursion, no backtracking regex), before any JSON decoder sees the text."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "[" or ch == "{":
            depth += 1
            if depth > limit:
                return True
        elif (ch == "]" or ch == "}") and depth:
            depth -= 1
    return False


def reason_of(exc: BaseException, limit: int = 300) -> str:
    """A failure as one clean line: the message of our own errors, the type too for anything else (it may
    carry text from a model's answer, so it is cleaned like one)."""
    text = str(exc) if isinstance(exc, ReasonSegError) else f"{type(exc).__name__}: {exc}"
    return clean_model_text(text, max_chars=limit)
