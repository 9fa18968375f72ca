"""Read the manifest beside an exported graph (`<file>.manifest.json`, written by the export tree).

The runtime reads it to choose a precision (`segmenter.precision: auto`) and to refuse a stale file; a manifest
that no longer describes its file (sha256) is as good as none.
"""
from __future__ import annotations

import json
from pathlib import Path

from reasonseg.core.model_cache import sha256


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".manifest.json")


def read_manifest(artifact: Path) -> dict | None:
    """The manifest, or None when there is none or it no longer describes this file (stale / edited)."""
    path = manifest_path(artifact)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if artifact.is_file() and record.get("sha256") == sha256(artifact) else None
