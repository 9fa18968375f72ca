"""Issue 29, image input / CLI / config items: hostile images, lost stderr lines, EXIF orientation, colliding output
folders, control characters in printed results, config files that explode, empty folders for failed images."""
from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from reasonseg.core.errors import ConfigError, InputError

from test_cli import run_cli, run_cli_peak_rss


def one_error_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("reasonseg: error:") and needle in lines[0], lines[0]


def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)


def _png(width: int, height: int, extra: bytes = b"", rows: int = 64) -> bytes:
    """A grey PNG declaring width x height, `extra` chunks before its pixels, and only `rows` rows of pixel data
    (enough for a decoder to start: the test stays small and never holds the declared image)."""
    idat = zlib.compress((b"\0" + bytes(width)) * rows, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + extra
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


# Headers Pillow's reader gives up on (so the old code read no size and decoded blind), each declaring 30000 x 30000.
BOMBS = {
    "bad_crc_text": _png(30000, 30000, _chunk(b"tEXt", b"Comment\0hello", crc=1234)),
    "big_ztxt": _png(30000, 30000, _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(4 << 20), 9))),
    "radiance_hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + bytes(4096),
}


# -- item 5: an image whose size its header does not give is refused, never decoded blind -------------------------

@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_whose_header_pillow_cannot_read_is_refused_from_its_header(tmp_path, name):
    from reasonseg.core.image_codec import decode_compressed, read_image_file

    path = tmp_path / f"{name}.png"
    path.write_bytes(BOMBS[name])
    t0 = time.perf_counter()
    for decode in (lambda: read_image_file(path), lambda: decode_compressed(BOMBS[name], "png")):
        with pytest.raises(InputError) as info:
            decode()
        msg = str(info.value)
        assert "\n" not in msg and ("exceeds max_image_pixels" in msg or "no size" in msg), msg
    assert time.perf_counter() - t0 < 2.0


def test_cli_refuses_the_bomb_in_one_line_with_little_memory(tmp_path):
    """The reported case through the command line: refused by size, peak RSS far below the 2.7 GB of its pixels."""
    png = tmp_path / "bomb.png"
    png.write_bytes(BOMBS["bad_crc_text"])
    proc, peak_kb = run_cli_peak_rss("segment", str(png), "the dog", "--out", str(tmp_path / "o"))
    one_error_line(proc, "image 30000x30000 exceeds max_image_pixels")
    assert peak_kb < 600_000, f"peak RSS {peak_kb / 1024:.0f} MB"


def _encoded(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def test_every_listed_format_still_decodes_with_its_own_size(tmp_path):
    """The header reader knows each format the CLI lists (and Sun raster): sizes read right, pixels as before."""
    from PIL import Image

    from reasonseg.core.image_codec import IMAGE_SUFFIXES
    from reasonseg.core.image_codec import decode_compressed, read_image_file

    rgb = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8), (0, 0), 2)
    files = {ext: _encoded(ext, rgb[:, :, ::-1]) for ext in IMAGE_SUFFIXES - {".pgm"}}
    files[".pgm"] = _encoded(".pgm", rgb[:, :, 0])
    files[".sr"] = _encoded(".sr", rgb[:, :, ::-1])
    files["progressive.jpg"] = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    files["16bit.png"] = _encoded(".png", rgb[:, :, ::-1].astype(np.uint16) * 257)
    files["grey16.png"] = _encoded(".png", rgb[:, :, 0].astype(np.uint16) * 257)
    for mode, fmt in (("P", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP"), ("CMYK", "JPEG"), ("RGB", "BMP")):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, fmt)
        files[f"pil-{mode}.{fmt.lower()}"] = buf.getvalue()
    bmp = bytearray(files[".bmp"])  # the same pixels stored top-down: a negative height, rows in reverse
    (offset,) = struct.unpack("<I", bmp[10:14])
    row = (len(bmp) - offset) // 37
    bmp[22:26] = struct.pack("<i", -37)
    bmp[offset:] = b"".join(bmp[offset + y * row: offset + (y + 1) * row] for y in reversed(range(37)))
    files["top_down.bmp"] = bytes(bmp)
    for name, data in files.items():
        path = tmp_path / f"img{name}"
        path.write_bytes(data)
        out = read_image_file(path)
        assert out.shape == rgb.shape, name
        want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert np.abs(out.astype(int) - want).max() <= 1, name  # CMYK rounds by one
        if name.endswith((".jpg", ".jpeg", ".png")):
            assert np.array_equal(decode_compressed(data, "jpeg"), out), name


# -- item 10: decoding never points the process's stderr elsewhere ---------------------------------------------------

_TALKER = r"""
import sys, threading, time, zlib, struct
import cv2, numpy as np
from reasonseg.core.errors import InputError
from reasonseg.core.image_codec import decode_compressed

img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
jpg = cv2.imencode(".jpg", img)[1].tobytes()
png = cv2.imencode(".png", img)[1].tobytes()
def chunk(k, d, crc): return struct.pack(">I", len(d)) + k + d + struct.pack(">I", crc)
frames = [jpg, jpg[: len(jpg) // 2] + b"\xff\xd0" + jpg[len(jpg) // 2:],  # libjpeg: "Corrupt JPEG data"
          png[:33] + chunk(b"tEXt", b"a\0b", 1) + png[33:], png[: len(png) // 2]]  # libpng: CRC error, truncated
N = 600
def talk():
    for i in range(N):
        print(f"tick {i}", file=sys.stderr, flush=True)
        time.sleep(0.0003)
t = threading.Thread(target=talk)
t.start()
decoded = 0
while t.is_alive():
    for f in frames:
        try:
            decode_compressed(f, "jpeg")
            decoded += 1
        except InputError:
            pass
t.join()
print(decoded)
"""


def test_decoding_frames_loses_no_line_another_thread_writes_to_stderr():
    proc = subprocess.run([sys.executable, "-c", _TALKER], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) > 0
    lines = proc.stderr.splitlines()
    assert lines == [f"tick {i}" for i in range(600)], (  # whole lines, in order; the codecs said nothing
        f"{600 - len(set(lines) & {f'tick {i}' for i in range(600)})} of 600 lines lost or cut, "
        f"{len([line for line in lines if not line.startswith('tick ')])} other lines, e.g. "
        f"{[line for line in lines if not line.startswith('tick ')][:2]}")


# -- item 11: EXIF orientation is not applied: the mask has the stored frame's size --------------------------------

def _exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def test_exif_orientation_is_not_applied_to_the_decoded_frame(tmp_path):
    from reasonseg.core.image_codec import decode_compressed, read_image_file

    rgb = np.zeros((48, 96, 3), np.uint8)
    rgb[:, :48] = (255, 0, 0)  # red left half, as stored
    data = _exif_rotated_jpeg(rgb)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    for out in (read_image_file(path), decode_compressed(data, "jpeg")):
        assert out.shape == (48, 96, 3)
        assert out[24, 10, 0] > 200 and out[24, 86, 0] < 50  # not rotated, not mirrored


# -- items 14, 17, 11 through the command line: one run over a batch of images ------------------------------------

@pytest.fixture(scope="module")
def batch(photos, tmp_path_factory):
    """a/x.jpg b/x-2.jpg c/x.jpg d/summary.json e/summary.md f/ (three undecodable + an EXIF-rotated JPEG)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("batch")
    inputs = {"a/x.jpg": photos / "dog.jpg", "b/x-2.jpg": photos / "person.jpg", "c/x.jpg": photos / "horses.jpg",
              "d/summary.json": photos / "dog.jpg", "e/summary.md": photos / "person.jpg"}
    for rel, src in inputs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    folder = root / "f"
    folder.mkdir()
    for name, data in (("broken.png", b"\x89PNG\r\n\x1a\n not really"), ("broken.jpg", b"\xff\xd8\xff\xe0 nope" * 9),
                       ("broken.webp", b"RIFF\0\0\0\0WEBPVP8 nothing")):
        (folder / name).write_bytes(data)
    rgb = np.asarray(Image.open(photos / "dog.jpg").convert("RGB"))
    (folder / "rotated.jpg").write_bytes(_exif_rotated_jpeg(rgb))
    out = root / "out"
    proc = run_cli("segment", *(str(root / rel) for rel in inputs), str(folder), "the dog", "--out", str(out))
    return root, out, proc


def test_output_folders_are_unique_and_never_shadow_the_summaries(batch):
    root, out, proc = batch
    assert proc.returncode == 2, proc.stderr  # the three broken files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 9 and summary["failed"] == 3
    assert (out / "summary.md").read_text().count("| x.jpg |") == 2
    written = {d.name: json.loads((d / "result.json").read_text())["image"] for d in out.iterdir() if d.is_dir()}
    sources = sorted(written.values())
    assert len(sources) == 6 and len(set(sources)) == 6, written  # every decodable image has its own folder
    assert written["x.jpg"].endswith("a/x.jpg") and written["x-2.jpg"].endswith("b/x-2.jpg")
    by_image = {r["image"]: r for r in summary["results"]}
    for name, image in written.items():
        assert by_image[image]["output"] == name


def test_undecodable_images_leave_no_output_folder(batch):
    root, out, proc = batch
    for name in ("broken.png", "broken.jpg", "broken.webp"):
        assert f"{name}: error:" in proc.stderr
        assert not (out / name).exists()
    assert not [d for d in out.iterdir() if d.is_dir() and not any(d.iterdir())]


def test_mask_of_an_exif_rotated_jpeg_has_the_stored_size(batch):
    root, out, proc = batch
    stored = cv2.imread(str(root / "f" / "rotated.jpg"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    mask = cv2.imread(str(out / "rotated.jpg" / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == stored.shape[:2] == (576, 768)
    assert cv2.imread(str(out / "rotated.jpg" / "overlay.png")).shape == stored.shape


# -- item 12: what the CLI prints from a result passes clean_model_text --------------------------------------------

HOSTILE = "dog\x1b]0;owned\x07\x1b[31m\n[ERROR] reasonseg: fake line\u202e"


class _HostilePipeline:
    """A pipeline whose model answered with escape sequences, a forged log line and a bidi override."""

    name = "refine"

    def run(self, rgb, instruction):
        from reasonseg.core.results import FrameResult, Grounding

        g = Grounding(instruction, (HOSTILE,), (), HOSTILE, "llm" + HOSTILE, "refine")
        return FrameResult(mask=np.zeros(rgb.shape[:2], bool), valid=True, labels=(HOSTILE,),
                           boxes=((1.0, 1.0, 5.0, 5.0),), score=0.5, grounding=g, timings_ms={})


@pytest.mark.parametrize("count", [1, 2])
def test_printed_results_carry_no_control_characters(tmp_path, monkeypatch, capsys, count):
    import reasonseg.pipelines.registry
    import reasonseg.cli.main as cli

    monkeypatch.setattr(reasonseg.pipelines.registry, "build_pipeline", lambda settings: _HostilePipeline())
    images = []
    for i in range(count):
        images.append(tmp_path / f"img{i}.png")
        images[-1].write_bytes(_encoded(".png", np.zeros((32, 48, 3), np.uint8)))
    assert cli.main(["segment", *map(str, images), "the dog", "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr()
    text = printed.out + printed.err + ((tmp_path / "o" / "summary.md").read_text() if count > 1 else "")
    assert not any(ord(c) < 32 and c != "\n" or c in "\x7f\u202e" for c in text), repr(text)
    assert not [line for line in text.splitlines() if line.startswith("[ERROR]")]


# -- item 15: config files and --set values that explode: one line, exit 2, fast -----------------------------------

def _nested_block(depth: int) -> str:
    return "".join(f"{' ' * i}k:\n" for i in range(depth)) + f"{' ' * depth}v\n"


def _laughs() -> str:
    lines = ['l0: &l0 {a: "lol", b: "lol", c: "lol", d: "lol", e: "lol", f: "lol", g: "lol", h: "lol", i: "lol"}']
    for n in range(1, 10):
        lines.append(f"l{n}: &l{n} {{" + ", ".join(f"{k}: *l{n - 1}" for k in "abcdefghi") + "}")
    return "\n".join(lines) + "\nreasonseg:\n  ros__parameters:\n    segmenter: *l9\n"


CONFIGS = {
    "nested_flow": "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "nested_block": _nested_block(1000),  # 500 kB: within the size bound
    "billion_laughs_ros": _laughs(),
    "huge_integer": "segmenter:\n  num_points: " + "9" * 5000 + "\n",
}


@pytest.mark.parametrize("name, needle", [("nested_flow", "nested deeper than"), ("nested_block", "nested deeper than"),
                                          ("billion_laughs_ros", "expands to more than"),
                                          ("huge_integer", "more than 4300 digits"),
                                          ("dev_zero", "larger than"), ("directory", "cannot be read")])
def test_hostile_config_file_is_one_line_and_fast(tmp_path, name, needle):
    if name == "dev_zero":
        path = "/dev/zero"
    elif name == "directory":
        path = str(tmp_path)
    else:
        path = str(tmp_path / f"{name}.yaml")
        Path(path).write_text(CONFIGS[name])
    t0 = time.perf_counter()
    proc = run_cli("segment", "nothing.jpg", "the dog", "--out", str(tmp_path / "o"), "--config", path, timeout=60)
    one_error_line(proc, needle)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("assignment, needle", [
    ("x=" + "9" * 5000, "more than 4300 digits"),
    ("segmenter.num_points=" + "9" * 4000, "segmenter.num_points="),
    ("segmenter.model=" + "[" * 3000 + "]" * 3000, "nested deeper than"),
])
def test_hostile_set_value_is_one_line(tmp_path, assignment, needle):
    proc = run_cli("segment", "nothing.jpg", "the dog", "--out", str(tmp_path / "o"), "--set", assignment, timeout=60)
    one_error_line(proc, needle)
    assert len(proc.stderr) < 400  # the value is shown in part, not whole


def test_node_params_file_check_bounds_the_same_way(tmp_path):
    """The node's start-up check of --params-file reads through the same bounded loader."""
    from reasonseg.settings.ros_args import check_ros_args

    for name in ("nested_flow", "billion_laughs_ros", "huge_integer"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(CONFIGS[name])
        with pytest.raises(ConfigError) as info:
            check_ros_args(["--params-file", str(path)])
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="larger than"):
        check_ros_args(["--params-file", "/dev/zero"])
