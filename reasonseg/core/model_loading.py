"""Load a model from the cache or a checkpoint with one error line that names the model and the fix.

Every loader in the tree (segmenters, grounders, pipelines, the export tree) goes through `load_model` /
`load_hf_model`, so a missing, corrupt or foreign file reads the same everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from reasonseg.core.errors import CheckpointError, ModelCacheError, one_line
from reasonseg.core.model_cache import SETUP_HINT

T = TypeVar("T")


HF_HINT = "the model must be a local dir or an HF id already in the local cache (nothing downloads at run time)"


def load_model(what: str, fn: Callable[[], T], hint: str = SETUP_HINT) -> T:
    """Loaders raise all kinds of errors on files they cannot read (ValueError, OSError, the safetensors
    and onnxruntime error types): one line that names the model and the fix."""
    try:
        return fn()
    except ModelCacheError:
        raise  # already one line naming the file and the fix
    except CheckpointError as exc:  # one line naming the keys and the fix: add which checkpoint
        raise type(exc)(f"{what}: {exc}") from None
    except Exception as exc:
        raise ModelCacheError(f"{what} cannot be loaded ({one_line(exc)}); {hint}") from None


def load_hf_model(what: str, ref: str | Path, fn: Callable[[], T]) -> T:
    """`load_model` for a model named by a local dir or a cached HF id. A path that does not exist is said to
    be missing; transformers reports one as a malformed repo id ("Repo id must use alphanumeric chars")."""
    text = str(ref)
    if (text.startswith(("/", ".", "~")) or text.count("/") > 1) and not Path(text).expanduser().exists():
        raise ModelCacheError(f"{what}: no such file or folder; {HF_HINT}")
    return load_model(what, fn, HF_HINT)
