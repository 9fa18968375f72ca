"""Checkpoints with their sha256 (issue 29): a `last.ckpt` with 64 bytes corrupted inside a tensor used to resume
with exit 0 and train to NaN, and an empty, truncated or random one ended in a 40-75-line traceback.

`DigestCheckpointIO` wraps the strategy's own checkpoint IO (`python -m training` installs it on every Trainer):
each checkpoint file it writes gets `<file>.sha256` (sha256sum's format) written atomically after it, the old
record removed first so that a crash in between leaves no record rather than a wrong one; a removed checkpoint
takes its record with it. Loading (resume, `validate --ckpt_path`) checks the record when there is one and turns
an unreadable file into one line (`CheckpointError`) naming it and the fix. Strategies that write a checkpoint
directory themselves (DeepSpeed, FSDP sharded) do not go through this IO: their checkpoints have no record.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import CheckpointIO

from reasonseg.core.errors import CheckpointError, one_line
from reasonseg.core.model_cache import drop_digest, verify_digest, write_digest

FIX = "resume from an intact checkpoint (--ckpt_path another file of the run's checkpoints/) or start afresh " \
      "without --ckpt_path"


class DigestCheckpointIO(CheckpointIO):
    def __init__(self, inner: CheckpointIO) -> None:
        self.inner = inner

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        local = _local(path)
        if local is not None:
            drop_digest(local)
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        if local is not None and local.is_file():
            write_digest(local)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        local = _local(path)
        if local is not None:
            check_checkpoint(local)
        try:
            return self.inner.load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except CheckpointError:
            raise
        except FileNotFoundError:
            raise CheckpointError(f"--ckpt_path {path}: no such checkpoint file. Fix: {FIX}") from None
        except Exception as exc:  # noqa: BLE001 - torch.load fails on a damaged file in many ways (EOF, pickle, zip)
            raise CheckpointError(f"--ckpt_path {path} is not a readable checkpoint ({type(exc).__name__}: "
                                  f"{one_line(exc, 120)}). Fix: {FIX}") from None

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)
        local = _local(path)
        if local is not None:
            drop_digest(local)

    def teardown(self) -> None:
        self.inner.teardown()


def check_checkpoint(path: Path) -> None:
    """A checkpoint file to resume from: present, not empty, equal to the sha256 recorded when it was written, or,
    with no record (a checkpoint from elsewhere), a whole zip archive whose records match their CRCs. A directory
    (DeepSpeed, FSDP sharded) is left to its strategy."""
    if path.is_dir():
        return
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path {path}: no such checkpoint file. Fix: {FIX}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"--ckpt_path {path} is empty (a write that never finished?). Fix: {FIX}")
    if verify_digest(path, FIX):
        return
    # no record (a checkpoint from elsewhere): torch.save's zip archive still has a CRC per tensor record
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"--ckpt_path {path} is not a readable checkpoint (not a complete PyTorch archive: "
                              f"{one_line(exc, 80)}; truncated, or another kind of file). Fix: {FIX}") from None
    if bad is not None:
        raise CheckpointError(f"--ckpt_path {path} is damaged: {bad} does not match its CRC (bytes changed after "
                              f"writing). Fix: {FIX}")


def check_resume(ckpt_path: Any) -> None:
    """`--ckpt_path` before LightningCLI reads its hyper-parameters (it torch.loads the file first thing): a
    file must pass `check_checkpoint`; "last" / "best" / "hpc" / "registry" are Lightning's to resolve."""
    if ckpt_path and str(ckpt_path) not in ("last", "best", "hpc", "registry") and _local(ckpt_path) is not None:
        check_checkpoint(_local(ckpt_path))


def _local(path: Any) -> Path | None:
    """The local file behind a checkpoint path (None for a remote URL such as s3://)."""
    text = str(path)
    return None if "://" in text and not text.startswith("file://") else Path(text.removeprefix("file://"))


__all__ = ["DigestCheckpointIO", "check_checkpoint", "check_resume"]
