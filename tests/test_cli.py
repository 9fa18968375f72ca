"""`reasonseg segment` as a user runs it: a subprocess, real weights, real files."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from openai_server import OpenAiServer
from targets import BOXES, mask_in_box

EXE = [sys.executable, "-m", "reasonseg.cli"]


def run_cli(*args: str, env_extra: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("photo, instruction, target", [
    ("dog.jpg", "the white truck parked on the street", "truck"),
    ("dog.jpg", "the dog", "dog"),
    ("person.jpg", "the horse", "horse"),
])
def test_segment_writes_mask_overlay_result(photos, tmp_path, photo, instruction, target):
    out = tmp_path / "out"
    proc = run_cli("segment", str(photos / photo), instruction, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    src = cv2.imread(str(photos / photo))
    mask = cv2.imread(str(out / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and mask.shape == src.shape[:2] and set(np.unique(mask)) <= {0, 255}
    assert cv2.imread(str(out / "overlay.png")).shape == src.shape
    result = json.loads((out / "result.json").read_text())
    assert result["label"] == target and result["pipeline"] == "refine" and 0 < result["score"] <= 1
    x0, y0, x1, y1 = result["box"]
    assert 0 <= x0 < x1 <= src.shape[1] and 0 <= y0 < y1 <= src.shape[0]
    assert {"detector", "sam_encoder", "sam_decoder", "total"} <= set(result["timings_ms"])
    mask_in_box(mask > 127, BOXES[(photo, target)])


def _one_error_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "Loading weights" not in l]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("reasonseg: error:"), proc.stderr


def test_bad_inputs_exit_nonzero_with_one_line(photos, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = str(tmp_path / "o")
    _one_error_line(run_cli("segment", str(tmp_path / "nope.jpg"), "the dog", "--out", out), "image not found")
    _one_error_line(run_cli("segment", str(corrupt), "the dog", "--out", out), "cannot decode image")
    _one_error_line(run_cli("segment", str(empty), "the dog", "--out", out), "cannot decode image")
    _one_error_line(run_cli("segment", str(photos / "dog.jpg"), "  ", "--out", out), "instruction is empty")
    _one_error_line(run_cli("segment", str(photos / "dog.jpg"), "x" * 100_000, "--out", out), "limit is")
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("segmenter: {backend: cuda9}\n")
    _one_error_line(run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", out, "--config", str(bad_cfg)),
                    "segmenter.backend")


def test_missing_model_cache(photos, tmp_path):
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "o"),
                   env_extra={"REASONSEG_CACHE": str(tmp_path / "no-cache")})
    _one_error_line(proc, "model file missing")
    assert "scripts/setup.sh" in proc.stderr


def test_corrupt_model_file(photos, tmp_path, cache_dir):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("minilm", "lite_sam", "lite_sam.safetensors"):
        (cache / name).symlink_to(cache_dir / name)
    (cache / "centernet.onnx").write_bytes(b"garbage" * 100)
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "o"),
                   env_extra={"REASONSEG_CACHE": str(cache)})
    _one_error_line(proc, "CenterNet detector cannot be loaded")


def test_llm_endpoint_from_environment(photos, tmp_path):
    with OpenAiServer() as srv:
        srv.behaviour = lambda m: json.dumps({"labels": ["horse"], "reference_labels": []})
        env = {"OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "sk-secret-should-not-leak"}
        proc = run_cli("segment", str(photos / "person.jpg"), "the grazing animal", "--out", str(tmp_path / "a"),
                       env_extra=env)
        assert proc.returncode == 0, proc.stderr
        result = json.loads((tmp_path / "a" / "result.json").read_text())
        assert result["grounding_source"] == "llm" and result["label"] == "horse"
        assert "sk-secret-should-not-leak" not in proc.stdout + proc.stderr
        srv.behaviour = lambda m: "not json at all"
        proc = run_cli("segment", str(photos / "person.jpg"), "the horse", "--out", str(tmp_path / "b"),
                       env_extra=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "b" / "result.json").read_text())
    assert result["grounding_source"].startswith("local_fallback") and result["label"] == "horse"
