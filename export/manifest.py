"""The manifest written next to every exported file: where it came from and what parity it met.

`<file>.manifest.json`: format, precision, source checkpoint + sha256, the file's own sha256, opset, input /
output shapes, tolerance and measured errors (max abs / max relative on logits; mask IoU vs fp32 for fp16 /
int8). The runtime reads it to choose a precision (`segmenter.precision: auto`) and to refuse a stale file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reasonseg.core.graph_manifest import manifest_path
from reasonseg.core.model_cache import sha256
from reasonseg_export.onnx_io import graph_io


def write_manifest(artifact: Path, *, format: str, precision: str, source: Path | str | None,
                   parity: dict[str, Any], **extra: Any) -> dict:
    src = Path(source) if source else None
    record: dict[str, Any] = {
        "format": format, "precision": precision, "file": artifact.name, "sha256": sha256(artifact),
        "source": str(src) if src else None,
        "source_sha256": sha256(src) if src and src.is_file() else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "parity": parity, **extra,
    }
    if artifact.suffix == ".onnx":
        record.update(graph_io(artifact))
    manifest_path(artifact).write_text(json.dumps(record, indent=2) + "\n")
    return record


