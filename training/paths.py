"""The folders a recipe names, checked when its module or data module is built (before the Trainer starts): a
missing one is one line naming the setting and how to make it (issue 29: they were 40-75-line tracebacks from
deep inside a reader or transformers)."""
from __future__ import annotations

from pathlib import Path

from reasonseg.core.errors import ConfigError

INIT_HINT = "make it with `python -m training.init_model {method} ... --out {path}` (training/README.md)"


def _hf_id(ref: str) -> bool:
    """`owner/name` that is not a local path: it may name a model in the local Hugging Face cache."""
    return ref.count("/") == 1 and not ref.startswith(("/", ".", "~")) and not Path(ref).exists()


def require_dir(path: str, setting: str, fix: str, *, hf_ok: bool = False) -> Path:
    """`path` as a folder (with `hf_ok`, an HF id already in the local cache: its snapshot folder), or
    ConfigError: `<setting> <path>: no such folder. Fix: <fix>`."""
    text = str(path or "")
    p = Path(text).expanduser()
    if text and p.is_dir():
        return p
    if text and hf_ok and _hf_id(text):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - huggingface_hub: not cached, malformed id, ...
            raise ConfigError(f"{setting} {text}: no such folder, and not in the local HF cache "
                              f"({type(exc).__name__}). Fix: {fix}") from None
    what = "is a file, not a folder" if p.is_file() else "no such folder"
    raise ConfigError(f"{setting} {text or '(empty)'}: {what}. Fix: {fix}")


def require_checkpoint_dir(path: str, setting: str, method: str) -> Path:
    """The model directory a module or data module starts from (a local dir with config.json, or an HF id in the
    local cache), with the init_model command as the fix."""
    fix = INIT_HINT.format(method=method, path=path or "DIR")
    root = require_dir(path, setting, fix, hf_ok=True)
    if not (root / "config.json").is_file():
        raise ConfigError(f"{setting} {path}: no config.json there, not a model directory. Fix: {fix}")
    return root


__all__ = ["require_dir", "require_checkpoint_dir"]
