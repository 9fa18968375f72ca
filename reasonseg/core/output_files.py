"""Writing files so that a failed write is an error, never a silent success, and never a half-written file.

`cv2.imwrite` returns False on failure (full disk, bad path) and is easy to ignore; here every
file is encoded in memory, written to a temporary name, flushed and renamed into place, and any
failure raises `OutputError` naming the file. `atomic_target` is the same rename for libraries that
write the file themselves (torch.onnx.export, onnx.save, OpenVINO's .xml + .bin pair, np.save).
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from reasonseg.core.errors import ReasonSegError


class OutputError(ReasonSegError, OSError):
    """An output location cannot be used or a file could not be written."""


def prepare_output_dir(path: Path) -> Path:
    """Create `path` if needed and prove a file can be written there; raises OutputError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"output path {path} exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"output folder {path} is not writable: {exc.strerror or exc}") from None
    return path


@contextmanager
def atomic_target(final: Path, companions: Sequence[str] = ()) -> Iterator[Path]:
    """A temporary sibling of `final` to write to; renamed to `final` when the block ends without an error,
    removed when it raises, so readers see the old file or the complete new one, never a partial write.

    The temporary name keeps `final`'s suffix (libraries pick the format by it). `companions` are suffixes of
    files the library writes beside it under the same stem (OpenVINO: ".bin" next to the ".xml"); they are
    renamed first, as a reader finds them by the main file's name. Anything else the library left under the
    temporary name (external data, say) is removed either way. The parent folder must exist."""
    # same directory so os.replace is atomic; a unique name per writer (processes and threads)
    tag = f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = final.with_name(tag + final.suffix)
    try:
        yield tmp
        for suffix in companions:
            os.replace(tmp.with_suffix(suffix), final.with_suffix(suffix))
        os.replace(tmp, final)
    finally:
        for leftover in final.parent.glob(glob.escape(tag) + "*"):
            leftover.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic: readers see the old file or the complete new one, never a partial write."""
    try:
        with atomic_target(path) as tmp, open(tmp, "xb") as f:  # "x" keeps umask permissions (mkstemp forces 0600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputError(f"could not write {path}: {exc.strerror or exc}") from None


def write_png(path: Path, image: np.ndarray) -> None:
    """HxW (grey) or HxWx3 (BGR) uint8 -> PNG file."""
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OutputError(f"could not encode {path} as PNG")
    write_bytes(path, buf.tobytes())


def write_json(path: Path, record: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
