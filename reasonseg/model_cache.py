"""Where the set-up step puts model files, and one clear error when one is missing."""
from __future__ import annotations

from pathlib import Path

from .errors import ModelCacheError

SETUP_HINT = "run the set-up step: bash scripts/setup.sh"

# name in cache -> what it is (for messages and the set-up summary)
FILES = {
    "centernet.onnx": "COCO detector (MobileNetV3 CenterNet, converted from TF.js)",
    "lite_sam.safetensors": "LiteMedSAM box/point-prompted segmenter weights",
    "lite_sam/encoder.onnx": "LiteMedSAM image encoder (ONNX)",
    "lite_sam/decoder.onnx": "LiteMedSAM prompt decoder (ONNX)",
    "minilm/config.json": "all-MiniLM-L6-v2 text encoder",
}


def require(cache_dir: Path, name: str) -> Path:
    path = cache_dir / name
    if not path.exists():
        raise ModelCacheError(f"model file missing: {path} ({FILES.get(name, name)}); {SETUP_HINT}")
    if path.is_file() and path.stat().st_size == 0:
        raise ModelCacheError(f"model file empty: {path}; {SETUP_HINT}")
    return path
