"""Dataset readers on tiny fixtures written here in the sources' own formats."""
from __future__ import annotations

import json
import os
import pickle

import cv2
import numpy as np
import pytest

from reasonseg.data.referring import read_reasonseg, read_refcoco, semi_supervised_split


@pytest.fixture()
def refcoco(tmp_path):
    from pycocotools import mask as cocomask

    (tmp_path / "images").mkdir()
    (tmp_path / "refcoco").mkdir()
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / "images" / f"COCO_train2014_{i:012d}.jpg"), np.zeros((40, 60, 3), np.uint8))
    rle_mask = np.zeros((40, 60), np.uint8, order="F")
    rle_mask[5:15, 30:50] = 1
    compressed = cocomask.encode(rle_mask)
    compressed["counts"] = compressed["counts"].decode()
    coco = {"images": [{"id": i, "height": 40, "width": 60, "file_name": f"COCO_train2014_{i:012d}.jpg"} for i in (1, 2)],
            "annotations": [
                {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 20, 20, 10],
                 "segmentation": [[10, 20, 30, 20, 30, 30, 10, 30]]},                      # polygon
                {"id": 11, "image_id": 2, "category_id": 18, "bbox": [30, 5, 20, 10], "segmentation": compressed},
                {"id": 12, "image_id": 2, "category_id": 18, "bbox": [0, 0, 2, 2],
                 "segmentation": {"size": [40, 60], "counts": [0, 2, 38, 2, 2358]}}]}     # uncompressed RLE
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps(coco))
    refs = [{"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "train", "category_id": 1,
             "sentences": [{"sent": "man on the left", "tokens": ["man"], "raw": "Man on the left", "sent_id": 0},
                           {"sent": "left guy", "tokens": ["left"], "raw": "left guy", "sent_id": 1}]},
            {"ref_id": 1, "ann_id": 11, "image_id": 2, "split": "train", "category_id": 18,
             "sentences": [{"sent": "the dog", "tokens": ["dog"], "raw": "the dog", "sent_id": 2}]},
            {"ref_id": 2, "ann_id": 12, "image_id": 2, "split": "val", "category_id": 18,
             "sentences": [{"sent": "corner", "tokens": ["corner"], "raw": "corner", "sent_id": 3}]}]
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)  # the refer toolkit's pickles are Python 2 era
    return tmp_path


def test_refcoco_reader_decodes_polygons_and_rle(refcoco) -> None:
    train = list(read_refcoco(refcoco, "refcoco", "unc", "train"))
    assert [s.sample_id for s in train] == ["refcoco/0", "refcoco/1"]
    poly, rle = train
    assert poly.expressions == ("man on the left", "left guy") and poly.image.is_file()
    assert poly.mask.shape == (40, 60) and poly.box == (10.0, 20.0, 30.0, 30.0)  # COCO's rasterisation = its bbox
    assert poly.mask.sum() == 200
    assert rle.mask[5:15, 30:50].all() and rle.mask.sum() == 200 and rle.box == (30.0, 5.0, 50.0, 15.0)
    (val,) = read_refcoco(refcoco, "refcoco", "unc", "val")
    assert val.mask.sum() == 4 and val.mask[0:2, 0:2].all()  # column-major RLE: 2 rows of 2 columns


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_refs_pickle_with_code_in_it_is_refused_not_run(refcoco) -> None:
    with open(refcoco / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump([_Boom()], f)
    with pytest.raises(ValueError, match="posix.system|os.system|only plain data"):
        list(read_refcoco(refcoco))


def test_reasonseg_reader_marks_targets_and_ignored_regions(tmp_path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((30, 40, 3), np.uint8))
    (tmp_path / "a.json").write_text(json.dumps({
        "text": ["what keeps the rain off?"], "is_sentence": True,
        "shapes": [{"label": "target", "points": [[5, 5], [20, 5], [20, 20], [5, 20]], "shape_type": "polygon"},
                   {"label": "ignore", "points": [[15, 15], [25, 15], [25, 25], [15, 25]], "shape_type": "polygon"},
                   {"label": "flag", "points": [[30, 0], [39, 0], [39, 5]], "shape_type": "polygon"}]}))
    (s,) = read_reasonseg(tmp_path)
    assert s.expressions == ("what keeps the rain off?",) and s.sample_id == "a"
    assert s.mask[10, 10] == 1 and s.mask[18, 18] == 255 and s.mask[2, 35] == 0
    assert set(np.unique(s.mask)) == {0, 1, 255} and s.box == (5.0, 5.0, 21.0, 21.0)


def test_semi_supervised_split_is_by_image_seeded_and_disjoint() -> None:
    ids = [3, 1, 2, 2, 5, 8, 13, 21, 34, 55]
    lab, unl = semi_supervised_split(ids, 0.25, seed=7)
    assert semi_supervised_split(list(reversed(ids)), 0.25, seed=7) == (lab, unl)  # order does not matter
    assert len(lab) == 2 and not set(lab) & set(unl) and set(lab) | set(unl) == {str(i) for i in ids}
    assert semi_supervised_split(ids, 0.25, seed=8) != (lab, unl)
    with pytest.raises(ValueError):
        semi_supervised_split(ids, 1.0)


def test_cityscapes_reader_maps_label_ids_to_train_ids(tmp_path) -> None:
    from reasonseg.data.semantic import read_cityscapes

    (tmp_path / "gtFine" / "val" / "ulm").mkdir(parents=True)
    (tmp_path / "leftImg8bit" / "val" / "ulm").mkdir(parents=True)
    ids = np.array([[7, 26, 0], [24, 33, 34]], np.uint8)  # road, car, unlabeled / person, bicycle, out of range
    cv2.imwrite(str(tmp_path / "gtFine" / "val" / "ulm" / "ulm_000000_000019_gtFine_labelIds.png"), ids)
    cv2.imwrite(str(tmp_path / "leftImg8bit" / "val" / "ulm" / "ulm_000000_000019_leftImg8bit.png"),
                np.zeros((2, 3, 3), np.uint8))
    (s,) = read_cityscapes(tmp_path, "val")
    assert s.sample_id == "ulm_000000_000019" and s.labels.tolist() == [[0, 13, 255], [11, 18, 255]]


def test_pannuke_reader_turns_instance_maps_into_classes(tmp_path) -> None:
    from reasonseg.data.semantic import read_pannuke

    masks = np.zeros((2, 4, 4, 6), np.float64)
    masks[0, 0, 0, 0] = 3      # a neoplastic nucleus (instance 3)
    masks[0, 1, 1, 4] = 7      # an epithelial one
    masks[1, 2, 2, 1] = 1      # inflammatory
    masks[..., 5] = 1 - (masks[..., :5].sum(-1) > 0)
    np.save(tmp_path / "images.npy", np.zeros((2, 4, 4, 3), np.float64))
    np.save(tmp_path / "masks.npy", masks)
    first, second = read_pannuke(tmp_path)
    assert first.labels[0, 0] == 1 and first.labels[1, 1] == 5 and first.labels.sum() == 6
    assert second.labels[2, 2] == 2 and first.image.dtype == np.uint8 and first.image.shape == (4, 4, 3)
    np.save(tmp_path / "masks.npy", masks[..., :5])
    with pytest.raises(ValueError, match="do not pair up"):
        next(read_pannuke(tmp_path))
