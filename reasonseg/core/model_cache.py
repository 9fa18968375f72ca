"""The model cache: where the set-up step puts model files, and the checks made when loading them.

The set-up step records the sha256 and size of every model file in `MANIFEST.json`
(`record_files`); loaders call `require`, which refuses a missing, empty or altered file
with one line naming it and the fix. A damaged file must stop the node, not make it publish
empty masks. Hashing ~200 MB costs ~0.5 s, so a verified file's (size, mtime) is remembered in
`.verified.json` beside the manifest and in-process: later starts only stat the files.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Iterable

from reasonseg.core.errors import CheckpointError, ModelCacheError
from reasonseg.core.output_files import write_bytes

SETUP_HINT = "run the set-up step: bash scripts/setup.sh (or `reasonseg prepare-models`)"
MANIFEST = "MANIFEST.json"
_VERIFIED = ".verified.json"

# name in cache -> what it is (for messages and the set-up summary)
FILES = {
    "centernet.onnx": "COCO detector (MobileNetV3 CenterNet, converted from TF.js)",
    "lite_sam.safetensors": "LiteMedSAM box/point-prompted segmenter weights",
    "lite_sam/encoder.onnx": "LiteMedSAM image encoder (ONNX)",
    "lite_sam/decoder_multimask.onnx": "LiteMedSAM prompt decoder, all mask tokens (ONNX)",
    "minilm": "all-MiniLM-L6-v2 text encoder (weights, tokenizer, config)",
}

_memo: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, this process
_memo_lock = threading.Lock()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_path(path: Path) -> Path:
    """`<file>.sha256` beside a model or checkpoint file that our training / save_pretrained wrote."""
    return path.with_name(path.name + ".sha256")


def write_digest(path: Path) -> str:
    """Record the sha256 of the file as written, in sha256sum's format (`sha256sum -c` checks it too). Written
    atomically after the file: write `path` only after `drop_digest(path)`, so that a crash in between leaves a
    file with no record (not checked), never a stale record (refused)."""
    digest = _remembered_sha256(path)
    write_bytes(digest_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def drop_digest(path: Path) -> None:
    digest_path(path).unlink(missing_ok=True)


def verify_digest(path: Path, fix: str) -> bool:
    """Check a file against the sha256 recorded beside it: False when none was recorded (a checkpoint from
    elsewhere); CheckpointError naming the file when it differs (bytes damaged or edited after writing). A
    symlink is checked against its target's record when it has none of its own."""
    record = digest_path(path)
    if not record.is_file() and path.is_symlink():
        record = digest_path(path.resolve())
    if not record.is_file():
        return False
    try:
        expected = record.read_text(encoding="utf-8").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        expected = ""
    if _remembered_sha256(path) != expected:
        raise CheckpointError(f"{path} does not match the sha256 recorded in {record.name} when it was written: "
                              f"the file was damaged or changed since. Fix: {fix}")
    return True


def _remembered_sha256(path: Path, compute: Callable[[Path], str] = sha256) -> str:
    """sha256 of a file, remembered in this process by (path, size, mtime): a resume or a load right after the
    write, or checked twice on the way in, hashes it once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    digest = compute(path)
    with _memo_lock:
        _memo[key] = digest
    return digest


def read_manifest(cache_dir: Path) -> dict:
    """{"steps": {marker: sha256}, "files": {relpath: {"sha256", "size"}}}; an older flat manifest
    (marker -> sha256 only) is read as steps with no file records."""
    path = cache_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if "files" not in data:
        data = {"steps": {k: v for k, v in data.items() if isinstance(v, str)}, "files": {}}
    return data


def write_manifest(cache_dir: Path, manifest: dict) -> None:
    write_bytes(cache_dir / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def files_under(cache_dir: Path, names: Iterable[str]) -> list[str]:
    """Relative paths of the regular files that make up `names` (files or folders) in the cache."""
    out = []
    for name in names:
        p = cache_dir / name
        if p.is_dir():
            out += sorted(str(f.relative_to(cache_dir)) for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            out.append(name)
    return out


def record_files(cache_dir: Path, manifest: dict, names: Iterable[str]) -> None:
    """Checksum the files of `names` into the manifest (set-up step), replacing older records."""
    names = list(names)
    files = manifest.setdefault("files", {})
    for rel in [r for r in files if any(r == n or r.startswith(n.rstrip("/") + "/") for n in names)]:
        del files[rel]
    for rel in files_under(cache_dir, names):
        path = cache_dir / rel
        files[rel] = {"sha256": _hash_cached(cache_dir, path), "size": path.stat().st_size}


def check_files(cache_dir: Path, name: str, manifest: dict | None = None) -> str | None:
    """None when every recorded file of `name` is present and intact, else why not (one line)."""
    manifest = read_manifest(cache_dir) if manifest is None else manifest
    prefix = name.rstrip("/") + "/"
    records = {rel: rec for rel, rec in manifest.get("files", {}).items() if rel == name or rel.startswith(prefix)}
    what = FILES.get(name, name)
    if not records:
        if not (cache_dir / name).exists():
            return f"model file missing: {cache_dir / name} ({what})"
        return f"model cache {cache_dir} has no checksums for {name} (made by an older set-up)"
    for rel, rec in sorted(records.items()):
        path = cache_dir / rel
        if not path.is_file():
            return f"model file missing: {path} ({what})"
        size = path.stat().st_size
        if size != rec.get("size"):
            return f"model file damaged: {path} has {size} bytes, the set-up recorded {rec.get('size')} ({what})"
        if _hash_cached(cache_dir, path) != rec.get("sha256"):
            return f"model file damaged: {path} does not match its sha256 in {MANIFEST} ({what})"
    return None


def require(cache_dir: Path, name: str) -> Path:
    """Path of a model file or folder in the cache, verified against the manifest; else ModelCacheError."""
    problem = check_files(cache_dir, name)
    if problem:
        raise ModelCacheError(f"{problem}; {SETUP_HINT}")
    return cache_dir / name


def _hash_cached(cache_dir: Path, path: Path) -> str:
    return _remembered_sha256(path, lambda p: _verified_sha256(cache_dir, p))


def _verified_sha256(cache_dir: Path, path: Path) -> str:
    """sha256 of a cache file, kept across processes in the cache's verified list by (size, mtime)."""
    st = path.stat()
    name = str(path.resolve())
    verified = _read_verified(cache_dir)
    rec = verified.get(name)
    if rec and rec[:2] == [st.st_size, st.st_mtime_ns]:
        return rec[2]
    digest = sha256(path)
    verified[name] = [st.st_size, st.st_mtime_ns, digest]
    try:  # best effort: a read-only cache (installed image) just hashes again next start
        write_bytes(cache_dir / _VERIFIED, (json.dumps(verified) + "\n").encode("utf-8"))
    except OSError:
        pass
    return digest


def _read_verified(cache_dir: Path) -> dict:
    try:
        data = json.loads((cache_dir / _VERIFIED).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def resolve_cache_dir(configured: str = "") -> Path:
    return Path(configured or os.environ.get("REASONSEG_CACHE") or Path.home() / ".cache" / "reasonseg").expanduser()
