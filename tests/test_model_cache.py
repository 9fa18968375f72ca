"""Model cache integrity: every model file checksummed at set-up, verified at load, repaired by set-up."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reasonseg.cli import prepare_models
from reasonseg.core import model_cache
from reasonseg.core.errors import ModelCacheError
from reasonseg.core.model_cache import read_manifest, record_files, require, write_manifest


def _cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    (cache / "minilm").mkdir(parents=True)
    (cache / "centernet.onnx").write_bytes(os.urandom(4096))
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (cache / "minilm" / name).write_bytes(os.urandom(512))
    manifest = read_manifest(cache)
    record_files(cache, manifest, ["centernet.onnx", "minilm"])
    write_manifest(cache, manifest)
    return cache


def _flip(path: Path, offset: int = 100) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    # the filesystem's mtime clock ticks every few ms: make sure this edit is seen as one
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_intact_cache_loads_and_every_file_is_recorded(tmp_path):
    cache = _cache(tmp_path)
    assert require(cache, "centernet.onnx") == cache / "centernet.onnx"
    assert require(cache, "minilm") == cache / "minilm"
    files = json.loads((cache / "MANIFEST.json").read_text())["files"]
    assert set(files) == {"centernet.onnx", "minilm/config.json", "minilm/tokenizer.json", "minilm/model.safetensors"}


@pytest.mark.parametrize("damage, name, match", [
    (lambda c: _flip(c / "centernet.onnx"), "centernet.onnx", r"damaged: .*centernet.onnx does not match its sha256"),
    (lambda c: (c / "minilm" / "tokenizer.json").unlink(), "minilm", r"missing: .*minilm/tokenizer.json"),
    (lambda c: (c / "minilm" / "model.safetensors").write_bytes(b"garbage"), "minilm",
     r"damaged: .*model.safetensors has 7 bytes"),
    (lambda c: (c / "MANIFEST.json").unlink(), "centernet.onnx", "no checksums"),
])
def test_damaged_cache_is_refused_with_one_line_naming_file_and_fix(tmp_path, damage, name, match):
    cache = _cache(tmp_path)
    require(cache, name)  # verified once: the (size, mtime) memo must not hide a later change
    damage(cache)
    with pytest.raises(ModelCacheError, match=match) as info:
        require(cache, name)
    assert "scripts/setup.sh" in str(info.value) and "\n" not in str(info.value)


def test_verified_files_are_not_hashed_again(tmp_path, monkeypatch):
    cache = _cache(tmp_path)
    model_cache._memo.clear()
    calls = []
    real = model_cache.sha256
    monkeypatch.setattr(model_cache, "sha256", lambda p: calls.append(p) or real(p))
    require(cache, "minilm")
    model_cache._memo.clear()  # a new process: only .verified.json remains
    require(cache, "minilm")
    assert calls == [], "hashed again although size and mtime are unchanged"
    _flip(cache / "minilm" / "config.json", 3)
    with pytest.raises(ModelCacheError):
        require(cache, "minilm")
    assert [p.name for p in calls] == ["config.json"]


def test_setup_step_reruns_when_an_output_is_damaged(tmp_path, monkeypatch):
    runs = []

    def step(cache: Path) -> None:
        runs.append(1)
        (cache / "model").mkdir(exist_ok=True)
        (cache / "model" / "weights.bin").write_bytes(b"w" * 1000)
        (cache / "model" / "vocab.txt").write_text("a b c")

    monkeypatch.setattr(prepare_models, "STEPS", [("tiny model", ("model",), step)])
    cache = tmp_path / "c"
    prepare_models.prepare_all(cache)
    prepare_models.prepare_all(cache)
    assert len(runs) == 1  # cached the second time
    _flip(cache / "model" / "weights.bin")
    with pytest.raises(ModelCacheError):
        require(cache, "model")
    prepare_models.prepare_all(cache)
    assert len(runs) == 2 and require(cache, "model")
    (cache / "model" / "vocab.txt").unlink()
    prepare_models.prepare_all(cache)
    assert len(runs) == 3 and require(cache, "model")


def test_setup_step_reruns_when_an_intact_output_is_stale(tmp_path, monkeypatch):
    runs, stale = [], [False]

    def step(cache: Path) -> None:
        runs.append(1)
        (cache / "timing.json").write_text("{}")

    monkeypatch.setattr(prepare_models, "STEPS", [("timing", ("timing.json",), step)])
    monkeypatch.setattr(prepare_models, "STALE_IF", {"timing.json": lambda cache: stale[0]})
    cache = tmp_path / "c"
    prepare_models.prepare_all(cache)
    prepare_models.prepare_all(cache)
    assert len(runs) == 1  # intact and current
    stale[0] = True  # e.g. the files it timed were re-made
    prepare_models.prepare_all(cache)
    assert len(runs) == 2
