"""Shared fixtures: model cache, sample photos, ROS environment for subprocess nodes."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("OPENAI_BASE_URL", None)  # tests choose their own endpoint
os.environ.pop("OPENAI_API_KEY", None)

ROOT = Path(__file__).resolve().parents[1]

from rosnode_harness import use_ros_transport  # noqa: E402

use_ros_transport()  # before any test creates a DDS participant, whatever the test order

# The stop tests play a terminal's Ctrl-C and hang-up to commands started as their own foreground group. Run as
# a background job of a shell without job control (`bash .ci/run &`) this process inherits SIGINT ignored, under
# nohup SIGHUP; every command it starts would too, and rightly keep ignoring them (reasonseg.core.signals). A Python
# handler here is reset to the default action in each command it starts, which is what a terminal gives them;
# this process itself still ignores a hang-up, as nohup asked.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda _signum, _frame: None)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    from reasonseg.core.model_cache import resolve_cache_dir

    cache = resolve_cache_dir()
    missing = [n for n in ("centernet.onnx", "lite_sam.safetensors", "minilm/config.json", "images/dog.jpg")
               if not (cache / n).exists()]
    if missing:
        pytest.fail(f"model cache {cache} lacks {missing}: run `bash scripts/setup.sh` first")
    return cache


@pytest.fixture(scope="session")
def photos(cache_dir: Path) -> Path:
    return cache_dir / "images"


@pytest.fixture(scope="session")
def load_rgb():
    import cv2

    def load(path: Path):
        return cv2.imread(str(path))[:, :, ::-1].copy()

    return load


@pytest.fixture(scope="session")
def refine_pipeline(cache_dir: Path):
    """The embedded-default pipeline, loaded once (a few seconds)."""
    from reasonseg.core.settings import Settings
    from reasonseg.pipelines.registry import build_pipeline

    return build_pipeline(Settings(pipeline="refine"))


@pytest.fixture(scope="session")
def sam2_dir(tmp_path_factory) -> Path:
    """A tiny random-weight sam2_video checkpoint dir whose object head says "present" (tests/tiny_models.py)."""
    from tiny_models import tiny_sam2

    return tiny_sam2(tmp_path_factory.mktemp("sam2") / "tiny-sam2", presence_logit=6.0)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny random-weight LiteSAM (test_lite_sam.TINY) saved as the set-up saves the real one."""
    from reasonseg.models.lite_sam.convert import save_lite_sam
    from reasonseg.models.lite_sam.modeling import build_lite_sam
    from test_lite_sam import TINY, _randomized

    out = tmp_path_factory.mktemp("w") / "tiny_lite_sam.safetensors"
    save_lite_sam(_randomized(build_lite_sam(TINY), seed=3), out)
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_weights: Path, photos: Path, tmp_path_factory) -> Path:
    """`reasonseg export lite-sam` of the tiny model: fp32 + fp16 + int8, judged on 2 sample photos."""
    from reasonseg_export.formats import read_photos
    from reasonseg_export.lite_sam import export_lite_sam
    from reasonseg.segmenters.lite_sam.graphs import ENCODER
    from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE
    from test_lite_sam import TINY

    out = tmp_path_factory.mktemp("export") / "lite_sam"
    written = export_lite_sam(tiny_weights, out, precisions=("fp32", "fp16", "int8"),
                              photos=read_photos(photos, limit=2), cfg=TINY)
    assert [p.name for p in written] == [ENCODER, DECODER_FILE, "encoder.fp16.onnx", "encoder.int8.onnx"]
    return out
