"""Instruction hygiene: instructions come from a topic anyone can publish on."""
from __future__ import annotations

import unicodedata

from reasonseg.core.errors import InputError

# Letters that render as nothing (Hangul fillers, braille blank): text of only these is empty too.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANK_LETTERS


def sanitize_instruction(raw: str | bytes, *, max_chars: int = 500) -> str:
    """Return a clean one-line instruction or raise InputError.

    Rejects empty, over-long and non-UTF-8 input instead of truncating it: a
    half instruction can name a different target than the user meant.
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"instruction is not valid UTF-8 (byte {exc.start})") from None
    if "\ufffd" in raw:  # what a transport leaves of invalid UTF-8 after decoding with replacement
        raise InputError("instruction is not valid UTF-8 (replacement characters)")
    if any("\ud800" <= ch <= "\udfff" for ch in raw):  # lone surrogates: Python's stand-in for undecodable
        raise InputError("instruction is not valid UTF-8 (undecodable bytes)")  # argv bytes; C code crashes on them
    if len(raw) > 8 * max_chars:  # bound the per-character work below; whitespace padding is no excuse
        raise InputError(f"instruction has {len(raw)} characters, limit is max_instruction_chars={max_chars}")
    text = unicodedata.normalize("NFKC", raw)
    # Control characters (tabs, newlines, bell) separate words; format characters (zero-width
    # spaces and joiners, BOM, bidi marks) are invisible and dropped.
    text = "".join(" " if cat == "Cc" else ch for ch in text if (cat := unicodedata.category(ch)) != "Cf")
    text = " ".join(text.split())
    if not any(_visible(ch) for ch in text):  # empty, or only invisible/combining characters
        raise InputError("instruction is empty (no visible characters)")
    if len(text) > max_chars:
        raise InputError(f"instruction has {len(text)} characters, limit is max_instruction_chars={max_chars}")
    return text
