"""Writing result files so that a failed write is an error, never a silent success.

`cv2.imwrite` returns False on failure (full disk, bad path) and is easy to ignore; here every
file is encoded in memory, written to a temporary name, flushed and renamed into place, and any
failure raises `OutputError` naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

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


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic: readers see the old file or the complete new one, never a partial write."""
    # same directory so os.replace is atomic; a unique name per writer (processes and threads)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x" keeps umask permissions (mkstemp would force 0600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
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
