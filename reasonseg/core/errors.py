"""Error types that callers (CLI, nodes) turn into one clear log line."""


def one_line(exc: BaseException | str, limit: int | None = 200) -> str:
    """A library's exception message (often a multi-line trace) as one line of at most `limit` characters
    (None: all of it)."""
    return " ".join(str(exc).split())[:limit]


class ReasonSegError(Exception):
    """Base class: the message is meant to be shown to a user as one line."""


class InputError(ReasonSegError, ValueError):
    """A malformed image or instruction: drop it, keep serving."""


class ModelCacheError(ReasonSegError, FileNotFoundError):
    """A model file is missing or corrupt in the cache: run the set-up step."""


class ConfigError(ReasonSegError, ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


class CheckpointError(ReasonSegError, ValueError):
    """A checkpoint's tensors do not fit the model its config describes: the message names keys and the fix."""
