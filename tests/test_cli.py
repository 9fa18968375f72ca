"""`reasonseg segment` as a user runs it: a subprocess, real weights, real files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from openai_server import OpenAiServer
from targets import BOXES, mask_in_box

EXE = [sys.executable, "-m", "reasonseg.cli.main"]
ROOT_DIR = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_extra: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def run_cli_peak_rss(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI run from a wrapper whose only child it is, so the wrapper reports the CLI's peak RSS (kB) as the
    kernel counted it."""
    wrapper = ("import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps([p.returncode, p.stdout, p.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    run = subprocess.run([sys.executable, "-c", wrapper, *EXE, *args], capture_output=True, text=True, timeout=timeout)
    rc, stdout, stderr, peak_kb = json.loads(run.stdout)
    return subprocess.CompletedProcess([*EXE, *args], rc, stdout, stderr), peak_kb


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


def test_undecodable_bytes_in_instruction_or_file_name(photos, tmp_path):
    """Bytes that are not UTF-8 reach Python as lone surrogates; OpenCV once segfaulted drawing them in the
    overlay caption and summary.md raised UnicodeEncodeError. Strict stdio, as under a UTF-8 locale."""
    strict = {"PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.run([*EXE, "segment", str(photos / "dog.jpg"), b"\xff\xfe the dog", "--out", str(tmp_path / "i")],
                          capture_output=True, text=True, timeout=180, env={**os.environ, **strict})
    _one_error_line(proc, "instruction is not valid UTF-8")
    folder = tmp_path / "in"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"d\xffg.jpg"), "wb") as f:
        f.write((photos / "dog.jpg").read_bytes())
    proc = run_cli("segment", str(folder), "the dog, caf\u00e9 \U0001f415", "--out", str(tmp_path / "o"), env_extra=strict)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "d\ufffdg.jpg: 'the dog, caf\u00e9 \U0001f415'" in proc.stdout
    record = json.loads((tmp_path / "o" / "summary.json").read_text())["results"][0]
    assert Path(record["image"]).name == "d\ufffdg.jpg" and record["found"], record
    assert "| d\ufffdg.jpg |" in (tmp_path / "o" / "summary.md").read_text(encoding="utf-8")
    assert os.path.isfile(os.path.join(os.fsencode(tmp_path / "o"), b"d\xffg.jpg", b"overlay.png"))


def test_a_cache_path_the_system_refuses_is_one_line(tmp_path):
    _one_error_line(run_cli("prepare-models", "--cache", "/proc/reasonseg-cache"), "No such file or directory")


def test_missing_model_cache(photos, tmp_path):
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "o"),
                   env_extra={"REASONSEG_CACHE": str(tmp_path / "no-cache")})
    _one_error_line(proc, "model file missing")
    assert "scripts/setup.sh" in proc.stderr


def _linked_cache(tmp_path, cache_dir, damaged: str):
    """A cache of symlinks to the real one, with a private copy of `damaged` (and of the manifest)."""
    cache = tmp_path / "cache"
    for src in cache_dir.rglob("*"):
        rel = src.relative_to(cache_dir)
        if src.is_file() and not rel.name.startswith(".") and rel.parts[0] not in ("sample_drive",):
            dst = cache / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if str(rel) in (damaged, "MANIFEST.json"):
                dst.write_bytes(src.read_bytes())
            else:
                dst.symlink_to(src)
    return cache


def _flip_byte(path, offset: int) -> None:
    assert not path.is_symlink(), f"{path} links into the real cache: damage only the private copy"
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage, needle", [
    ("centernet.onnx", lambda p: p.write_bytes(b"garbage" * 100), "centernet.onnx has 700 bytes"),
    ("lite_sam/encoder.int8.onnx", lambda p: _flip_byte(p, 5_000_000), "encoder.int8.onnx does not match its sha256"),
    ("minilm/model.safetensors", lambda p: _flip_byte(p, 1000), "model.safetensors does not match"),
    ("minilm/tokenizer.json", lambda p: p.unlink(), "model file missing"),
])
def test_damaged_model_file_refused_with_one_line(photos, tmp_path, cache_dir, name, damage, needle):
    cache = _linked_cache(tmp_path, cache_dir, name)
    damage(cache / name)
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "o"),
                   "--set", "segmenter.backend=onnxruntime", env_extra={"REASONSEG_CACHE": str(cache)})
    _one_error_line(proc, needle)
    assert "scripts/setup.sh" in proc.stderr and not (tmp_path / "o" / "result.json").exists()


@pytest.mark.parametrize("suffix", [".xml", ".bin"])
def test_damaged_openvino_encoder_refused_with_one_line(photos, tmp_path, cache_dir, suffix):
    """The default backend (auto) runs an OpenVINO IR (int8 or bf16) where this CPU has native bf16: a flipped byte
    in either of its two files is refused, not run with wrong weights."""
    from reasonseg.core.settings import SegmenterSettings
    from reasonseg.segmenters.registry import auto_backend
    from reasonseg.segmenters.lite_sam.precision import openvino_encoder

    if auto_backend(SegmenterSettings(device="cpu"), cache_dir)[0] != "openvino":
        pytest.skip("the default runs onnxruntime on this CPU (no native bf16 or no judged OpenVINO encoder)")
    name = f"lite_sam/{openvino_encoder(SegmenterSettings(backend='openvino'), cache_dir)[0].with_suffix(suffix).name}"
    cache = _linked_cache(tmp_path, cache_dir, name)
    _flip_byte(cache / name, 100_000)
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "o"),
                   env_extra={"REASONSEG_CACHE": str(cache)})
    _one_error_line(proc, f"{Path(name).name} does not match its sha256")
    assert not (tmp_path / "o" / "result.json").exists()


def test_output_location_checked_before_inference(photos, tmp_path):
    existing = tmp_path / "a-file"
    existing.write_text("x")
    for out, needle in ((existing, "exists and is not a folder"), ("/proc/reasonseg-out", "cannot create output")):
        proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(out),
                       env_extra={"REASONSEG_CACHE": str(tmp_path / "no-cache")})  # would fail later
        _one_error_line(proc, needle)


def test_failed_write_is_an_error_not_a_success(photos, tmp_path):
    """Disk full while writing: with a 20 kB file-size limit the overlay PNG cannot be written."""
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # EFBIG past it (Python ignores SIGXFSZ)

    out = tmp_path / "o"
    proc = subprocess.run([*EXE, "segment", str(photos / "dog.jpg"), "the dog", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, preexec_fn=small_files)
    _one_error_line(proc, "could not write")
    assert "overlay.png" in proc.stderr and not (out / "result.json").exists()
    assert "->" not in proc.stdout  # no success line


@pytest.mark.parametrize("side", [20_000, 11_000])
def test_huge_image_refused_from_its_header(tmp_path, side):
    """A 20000 x 20000 PNG (400 KB on disk, 1.2 GB decoded) is refused before decoding."""
    import struct
    import zlib

    w = h = side
    comp = zlib.compressobj(1)
    row = b"\0" + bytes(w)  # filter byte + one grey row
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = tmp_path / "huge.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    proc, peak_kb = run_cli_peak_rss("segment", str(png), "the dog", "--out", str(tmp_path / "o"))
    _one_error_line(proc, "exceeds max_image_pixels")
    assert peak_kb < 400_000, f"peak RSS {peak_kb / 1024:.0f} MB: the pixels were decoded"


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


def test_mllm_pipeline_from_the_command_line(photos, tmp_path, sam2_dir):
    """--pipeline mllm --set ... against a scripted VLM on 127.0.0.1; a broken endpoint with auto -> refine, said."""
    import socket

    from openai_server import scripted_vlm

    w, h = 768, 576
    rel = tuple(v / s for v, s in zip(BOXES[("dog.jpg", "truck")], (w, h, w, h)))
    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"truck": rel})
        proc = run_cli("segment", str(photos / "dog.jpg"), "the truck behind the fence", "--out", str(tmp_path / "a"),
                       "--pipeline", "mllm", "--set", "mllm.backend=openai", "--set", "mllm.model=scripted-vlm",
                       "--set", f"mllm.base_url={srv.base_url}", env_extra={"OPENAI_API_KEY": "sk-vlm-secret"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["pipeline"] == "mllm" and result["label"] == "truck" and result["grounding_source"] == "mllm:openai"
    mask_in_box(cv2.imread(str(tmp_path / "a" / "mask.png"), cv2.IMREAD_UNCHANGED) > 127, BOXES[("dog.jpg", "truck")])
    assert "sk-vlm-secret" not in proc.stdout + proc.stderr + (tmp_path / "a" / "result.json").read_text()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "b"), "--pipeline", "auto",
                   "--set", "mllm.backend=openai", "--set", "mllm.model=scripted-vlm", "--set", f"mllm.base_url={dead}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "b" / "result.json").read_text())
    assert result["pipeline"] == "refine" and result["label"] == "dog"
    assert "mllm failed" in result["grounding_source"] and "unreachable" in result["grounding_source"]
    mask_in_box(cv2.imread(str(tmp_path / "b" / "mask.png"), cv2.IMREAD_UNCHANGED) > 127, BOXES[("dog.jpg", "dog")])
    shipped = ROOT_DIR / "ros_ws/src/reasonseg_bringup/config/mllm_served.yaml"  # the README's served-VLM YAML
    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"truck": rel})
        proc = run_cli("segment", str(photos / "dog.jpg"), "the white truck", "--out", str(tmp_path / "d"),
                       "--config", str(shipped), "--set", f"mllm.base_url={srv.base_url}",
                       "--set", f"segmenter.model={sam2_dir}")  # a tiny SAM2 in place of sam2.1-hiera-tiny
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "d" / "result.json").read_text())
    assert result["pipeline"] == "mllm" and result["label"] == "truck"
    assert srv.requests[-1]["body"]["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "c"), "--set", "mllm.timeout_s=nan")
    _one_error_line(proc, "mllm.timeout_s=nan must be a finite number")


def test_many_images_in_one_call_load_the_models_once(photos, tmp_path):
    """Files and a folder in one call: a result folder each, one summary; a broken file is reported, not fatal."""
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("dog.jpg", "person.jpg"):
        shutil.copy(photos / name, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: ignored
    proc = run_cli("segment", str(folder), str(photos / "horses.jpg"), "the horse", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr  # one image failed
    assert "broken.png: error:" in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["images"] == 4 and summary["failed"] == 1 and summary["model_load_ms"] > 0
    by_name = {Path(r["image"]).name: r for r in summary["results"]}
    assert set(by_name) == {"broken.png", "dog.jpg", "person.jpg", "horses.jpg"}
    assert by_name["person.jpg"]["label"] == "horse" and by_name["horses.jpg"]["label"] == "horse"
    assert not by_name["dog.jpg"]["found"]  # no horse there: honestly not found
    mask = cv2.imread(str(tmp_path / "o" / "person.jpg" / "mask.png"), cv2.IMREAD_UNCHANGED) > 127
    mask_in_box(mask, BOXES[("person.jpg", "horse")])
    assert "model_load" not in by_name["person.jpg"]["timings_ms"]  # loaded once, reported once
    assert "| person.jpg | horse |" in (tmp_path / "o" / "summary.md").read_text()
    proc = run_cli("segment", str(tmp_path / "o"), "the horse", "--out", str(tmp_path / "p"))  # no images there
    _one_error_line(proc, "no image files")
