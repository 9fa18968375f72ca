"""The ONNX Runtime GenAI package of a Qwen2.5-VL (`reasonseg export qwen-vl` writes it, `mllm.backend:
onnxruntime-genai` reads it): file names, the check of every file against the manifest, and the image processor
in numpy (Qwen2VLImageProcessor's resize, normalisation and merge-block patch order), so no PyTorch or
transformers is needed on the frame path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reasonseg.core.errors import CheckpointError, ModelCacheError
from reasonseg.core.graph_manifest import manifest_path
from reasonseg.core.model_cache import sha256
from reasonseg.grounding.vlm.answer import smart_resize

CONFIG = "genai_config.json"
VISION = "vision.onnx"
EMBEDDING = "embedding.onnx"
PROMPT = "prompt.json"          # the chat template rendered around the instruction: {"prefix", "suffix"}
PROCESSOR = "processor_config.json"
DECODER = "model.onnx"          # ORT GenAI's builder writes it (+ model.onnx.data)
GRAPH_FILES = (CONFIG, VISION, EMBEDDING, DECODER)  # in each <precision>/ folder `reasonseg export qwen-vl` writes
GENAI_MODEL_TYPE = "qwen2_5_vl"
SUPPORTED_MODEL_TYPES = ("qwen2_5_vl",)
# ORT GenAI 0.18 runs Qwen3-VL's decoder without DeepStack (the vision features it adds to the first layers'
# hidden states): its tokens differ from transformers' from the first one.
REFUSED = {"qwen3_vl": "Qwen3-VL", "qwen3_vl_moe": "Qwen3-VL MoE", "qwen3_vl_text": "Qwen3-VL"}


def check_model_type(kind: str | None) -> None:
    """Refuse, in one line, a family this backend would run wrongly."""
    if kind in SUPPORTED_MODEL_TYPES:
        return
    if kind in REFUSED:
        raise CheckpointError(f"{REFUSED[kind]} is refused by mllm.backend=onnxruntime-genai: ORT GenAI 0.18 has no "
                              "DeepStack, so its answers differ from the model's; serve it (mllm.backend=openai) or "
                              "export a Qwen2.5-VL")
    raise CheckpointError(f"model_type {kind!r} is not Qwen2.5-VL, the family mllm.backend=onnxruntime-genai runs")


def verify_package(folder: Path) -> dict:
    """The package's manifest, after checking that every file it lists is there with its sha256: a missing,
    truncated or edited file is one line naming it (never a crash inside ORT, never a silently different model)."""
    folder = Path(folder)
    config = folder / CONFIG
    try:
        kind = json.loads(config.read_text())["model"].get("type")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ModelCacheError(f"{folder}: no readable {CONFIG}; not an ORT GenAI package (reasonseg export qwen-vl "
                              "--checkpoint QWEN25_VL_DIR --out DIR writes one)") from None
    check_model_type(kind)  # a family it would run wrongly is refused first, whatever else is wrong
    try:
        record = json.loads(manifest_path(config).read_text())
        files = dict(record["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelCacheError(f"{folder}: no readable {manifest_path(config).name}; re-export the package") from None
    if record.get("sha256") != sha256(config):
        raise ModelCacheError(f"{config} differs from the one exported (sha256); re-export the package")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise ModelCacheError(f"{folder}: {name} is missing; re-export the package")
        if sha256(path) != digest:
            raise ModelCacheError(f"{path} differs from the one exported (truncated or edited: sha256); "
                                  "re-export the package")
    return record


@dataclass(frozen=True)
class ImageProcessor:
    """Qwen2VLImageProcessor's numbers (the checkpoint's, copied into the package)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float
    patch: int
    temporal: int
    merge: int
    min_pixels: int
    max_pixels: int

    @classmethod
    def from_file(cls, path: Path) -> "ImageProcessor":
        c = json.loads(Path(path).read_text())
        return cls(tuple(c["image_mean"]), tuple(c["image_std"]), float(c["rescale_factor"]), int(c["patch_size"]),
                   int(c["temporal_patch_size"]), int(c["merge_size"]), int(c["min_pixels"]), int(c["max_pixels"]))

    def to_dict(self) -> dict:
        return {"image_mean": list(self.mean), "image_std": list(self.std), "rescale_factor": self.rescale,
                "patch_size": self.patch, "temporal_patch_size": self.temporal, "merge_size": self.merge,
                "min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    def sent_size(self, height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
        """(height, width) of the image the model sees: smart_resize within the tighter of both bounds."""
        return smart_resize(height, width, factor=self.patch * self.merge, min_pixels=max(min_pixels, self.min_pixels),
                            max_pixels=min(max_pixels, self.max_pixels))

    def patches(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An RGB image already at its sent size -> (pixel_values [N, 3*T*P*P] float32, image_grid_thw [1, 3])."""
        h, w = image_rgb.shape[:2]
        p, m, t = self.patch, self.merge, self.temporal
        if h % (p * m) or w % (p * m):
            raise ValueError(f"image {w}x{h} is not a multiple of {p * m} px")
        x = (image_rgb.astype(np.float32) * np.float32(self.rescale) - np.float32(self.mean)) / np.float32(self.std)
        x = np.repeat(x.transpose(2, 0, 1)[None], t, axis=0)           # [T, C, H, W]: a still image, T frames
        gh, gw = h // p, w // p
        x = x.reshape(t, 3, gh // m, m, p, gw // m, m, p)
        x = x.transpose(2, 5, 3, 6, 1, 0, 4, 7)                          # unit row, unit col, i, j, C, T, P, P
        return (np.ascontiguousarray(x.reshape(gh * gw, 3 * t * p * p)),
                np.array([[1, gh, gw]], dtype=np.int64))
