"""Referring / reasoning segmentation data as published.

RefCOCO / RefCOCO+ / RefCOCOg (`refer` layout): `<root>/<dataset>/refs(<split_by>).p`, a pickled list of refs
({ref_id, ann_id, image_id, split, sentences: [{sent, ...}], category_id, ...}), and
`<root>/<dataset>/instances.json`, COCO instances whose segmentation is polygons or RLE; images in
`<images>/COCO_train2014_%012d.jpg` (or the image record's `file_name`).
The pickle is read with an unpickler that builds only plain containers and numbers: a refer pickle holds
nothing else, and anything else in the file is refused rather than executed.

ReasonSeg: `<split>/<name>.jpg` + `<name>.json` with {"text": [...], "is_sentence": bool, "shapes":
[{"label": "target" | "ignore" | ..., "points": [[x, y], ...], "shape_type": "polygon"}]}: target polygons
are 1, "ignore" polygons 255, the rest 0.
"""
from __future__ import annotations

import json
import pickle
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from reasonseg.core.prompt import Box, mask_box

IGNORE = 255


@dataclass(frozen=True)
class ReferringSample:
    image: Path
    expressions: tuple[str, ...]
    mask: np.ndarray                 # uint8 HxW: 1 target, 0 background, 255 ignore
    box: Box                         # of the target pixels
    sample_id: str


class _PlainUnpickler(pickle.Unpickler):
    _ALLOWED = {("builtins", n) for n in ("dict", "list", "tuple", "set", "str", "int", "float", "bool", "bytes")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refs pickle refers to {module}.{name}: only plain data is read")


def _box_of(mask: np.ndarray) -> Box:
    return mask_box(mask == 1) or (0.0, 0.0, 0.0, 0.0)


def read_refcoco(root: Path, dataset: str = "refcoco", split_by: str = "unc", split: str = "train",
                 images: Path | None = None) -> Iterator[ReferringSample]:
    """One sample per ref of `split` (all its sentences), its mask decoded by pycocotools."""
    from pycocotools import mask as cocomask

    folder = Path(root) / dataset
    refs_file = folder / f"refs({split_by}).p"
    with open(refs_file, "rb") as f:
        try:
            refs = _PlainUnpickler(f).load()
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{refs_file}: {exc}") from None
    coco = json.loads((folder / "instances.json").read_text())
    anns = {a["id"]: a for a in coco["annotations"]}
    imgs = {i["id"]: i for i in coco["images"]}
    image_dir = Path(images) if images else Path(root) / "images"
    for ref in refs:
        if ref["split"] != split:
            continue
        ann, img = anns[ref["ann_id"]], imgs[ref["image_id"]]
        h, w = img["height"], img["width"]
        seg = ann["segmentation"]
        if isinstance(seg, list):  # polygons
            rle = cocomask.merge(cocomask.frPyObjects(seg, h, w))
        elif isinstance(seg["counts"], list):  # uncompressed RLE
            rle = cocomask.frPyObjects(seg, h, w)
        else:
            rle = seg
        with warnings.catch_warnings():  # pycocotools 2.0.x vs numpy 2's __array__ copy keyword
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = cocomask.decode(rle).astype(np.uint8)
        yield ReferringSample(image_dir / img["file_name"], tuple(s["sent"] for s in ref["sentences"]), mask,
                              _box_of(mask), f"{dataset}/{ref['ref_id']}")


def read_reasonseg(folder: Path) -> Iterator[ReferringSample]:
    """Every `<name>.json` + image pair of a ReasonSeg split folder."""
    for meta in sorted(Path(folder).glob("*.json")):
        data = json.loads(meta.read_text())
        image = next((meta.with_suffix(s) for s in (".jpg", ".png", ".jpeg") if meta.with_suffix(s).is_file()), None)
        if image is None:
            raise FileNotFoundError(f"{meta}: no image beside it")
        h, w = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
        mask = np.zeros((h, w), np.uint8)
        # targets first, then "ignore" on top: the source's convention (LISA's reader)
        for wanted, value in (("target", 1), ("ignore", IGNORE)):
            for shape in data.get("shapes", []):
                if shape.get("label", "").lower() == wanted:
                    pts = np.round(np.asarray(shape["points"], np.float64)).astype(np.int32)
                    cv2.fillPoly(mask, [pts], value)
        texts = data["text"] if isinstance(data["text"], list) else [data["text"]]
        yield ReferringSample(image, tuple(texts), mask, _box_of(mask), meta.stem)


def semi_supervised_split(image_ids: Sequence[str | int], labeled_share: float, seed: int = 0
                          ) -> tuple[list[str], list[str]]:
    """Split by *image* (all expressions of an image on one side), seeded: (labeled, unlabeled), sorted."""
    if not 0 < labeled_share < 1:
        raise ValueError(f"labeled_share must be in (0, 1), got {labeled_share}")
    unique = sorted({str(i) for i in image_ids})
    shuffled = unique[:]
    random.Random(seed).shuffle(shuffled)
    n = max(1, round(labeled_share * len(unique)))
    return sorted(shuffled[:n]), sorted(shuffled[n:])
