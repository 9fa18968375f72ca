"""Semantic-segmentation data as published (the semi-supervised baselines CORA reads pseudo-labels from).

Cityscapes: `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` with `gtFine/<split>/<city>/<name>_gtFine_labelIds.png`;
label ids map to the 19 train ids of cityscapesScripts' `labels.py`, everything else to 255 (ignore).
PanNuke: per fold `images.npy` [N, 256, 256, 3], `masks.npy` [N, 256, 256, 6] (instance maps of neoplastic,
inflammatory, connective, dead, epithelial; channel 5 background) and `types.npy` (tissue): the semantic map is
1..5 for the five nucleus classes, 0 elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IGNORE = 255
# cityscapesScripts labels.py: labelId -> trainId for the 19 evaluated classes
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
PANNUKE_CLASSES = ("background", "neoplastic", "inflammatory", "connective", "dead", "epithelial")


@dataclass(frozen=True)
class SemanticSample:
    image: np.ndarray | Path   # RGB array (PanNuke) or the image file (Cityscapes)
    labels: np.ndarray         # uint8 HxW class ids, 255 = ignore
    sample_id: str


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, IGNORE, np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut[label_ids]


def read_cityscapes(root: Path, split: str = "train") -> Iterator[SemanticSample]:
    for gt in sorted((Path(root) / "gtFine" / split).glob("*/*_gtFine_labelIds.png")):
        name = gt.name[: -len("_gtFine_labelIds.png")]
        image = Path(root) / "leftImg8bit" / split / gt.parent.name / f"{name}_leftImg8bit.png"
        if not image.is_file():
            raise FileNotFoundError(f"{gt}: its image {image} is missing")
        yield SemanticSample(image, cityscapes_train_ids(cv2.imread(str(gt), cv2.IMREAD_UNCHANGED)), name)


def pannuke_labels(masks: np.ndarray) -> np.ndarray:
    """[N, H, W, 6] instance maps -> [N, H, W] class ids 0..5 (a pixel in several maps takes the first)."""
    nuclei = masks[..., :5] > 0
    return np.where(nuclei.any(-1), nuclei.argmax(-1) + 1, 0).astype(np.uint8)


def read_pannuke(fold: Path) -> Iterator[SemanticSample]:
    fold = Path(fold)
    images = np.load(fold / "images.npy", mmap_mode="r", allow_pickle=False)
    masks = np.load(fold / "masks.npy", mmap_mode="r", allow_pickle=False)
    if images.shape[:3] != masks.shape[:3] or masks.shape[-1] != 6:
        raise ValueError(f"{fold}: images {images.shape} and masks {masks.shape} do not pair up as PanNuke")
    for i in range(images.shape[0]):
        yield SemanticSample(np.asarray(images[i], np.uint8), pannuke_labels(np.asarray(masks[i])[None])[0],
                             f"{fold.name}/{i}")
