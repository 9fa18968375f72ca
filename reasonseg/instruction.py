"""Instruction hygiene: instructions come from a topic anyone can publish on."""
from __future__ import annotations

import re
import unicodedata

from .errors import InputError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


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
    text = unicodedata.normalize("NFKC", raw)
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if not text:
        raise InputError("instruction is empty")
    if len(text) > max_chars:
        raise InputError(f"instruction has {len(text)} characters, limit is max_instruction_chars={max_chars}")
    return text
