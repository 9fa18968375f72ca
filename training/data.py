"""Semi-supervised referring segmentation data for Lightning: a labeled part, an unlabeled part (weak and
strong views, the external prior) and a validation part, split by image with a seed (UniMatch-style lists).

Sources: `synthetic` (procedural street scenes, `reasonseg.data.synthetic`: exact masks, any size, made
here) or a RefCOCO-family / ReasonSeg folder read by `reasonseg.data`. Priors — the MLLM + SAM2 soft masks
SPM fuses — come from `priors_dir` (`<sample id>.npy`, written by `python -m training.priors`), or, for the
synthetic source only, from `simulated_prior`: a documented stand-in for a frozen MLLM + SAM2 with its
failure modes (a softened correct mask, grounding drift to another object, a hallucinated blob).

Every random choice (split, flips, strong ops, EDA, simulated priors) is drawn from a generator seeded by
(seed, epoch, sample), so a resumed run sees exactly the data an uninterrupted one does, on any rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reasonseg.core.errors import ConfigError, one_line
from reasonseg.data.synthetic import SyntheticSample, draw_object, make_scenes
from reasonseg.models.l2l import MEAN, STD

from .augment import eda, strong_image, weak_view
from .paths import require_dir

SOURCES = ("synthetic", "refcoco", "refcoco+", "refcocog", "reasonseg")
_LAYOUT = {"reasonseg": "<name>.json + <name>.jpg pairs of a ReasonSeg split",
           "refcoco": "{root}/{source}/refs(unc).p + instances.json, the COCO images in {root}/images"}


@dataclass(frozen=True)
class Item:
    sample_id: str
    image: np.ndarray        # HxWx3 uint8 RGB
    expression: str
    mask: np.ndarray         # HxW uint8 {0, 1}; 255 = ignore
    image_key: str = ""      # the split is by image: every expression of an image on one side


def synthetic_items(n: int, seed: int, size: int) -> list[Item]:
    return [Item(f"synthetic-{seed}-{i}", s.image, s.expression, s.mask)
            for i, s in enumerate(make_scenes(n, seed=seed, size=size))]


def check_source(source: str, root: str) -> None:
    """At data-module construction, before the Trainer starts: a known source, and its folder where it needs one."""
    if source not in SOURCES:
        raise ConfigError(f"data.init_args.source {source!r} is not one of {', '.join(SOURCES)}")
    if source != "synthetic":
        require_dir(root, "data.init_args.root", f"give the folder holding {source} ({_layout(source, root)}), or "
                                                  "use source: synthetic")


def _layout(source: str, root: str) -> str:
    return _LAYOUT.get(source, _LAYOUT["refcoco"]).format(root=root or "ROOT", source=source)


def load_items(source: str, root: str, num: int, seed: int, size: int) -> list[Item]:
    """`synthetic`: `num` procedural scenes; `refcoco` / `refcoco+` / `refcocog` / `reasonseg`: every expression of
    the reader's samples under `root` (one Item each, split later by image)."""
    if source == "synthetic":
        return synthetic_items(num, seed, size)
    from reasonseg.data.referring import read_reasonseg, read_refcoco

    check_source(source, root)
    items = []
    try:
        reader = read_reasonseg(Path(root)) if source == "reasonseg" else read_refcoco(Path(root), source)
        for s in reader:
            bgr = cv2.imread(str(s.image))
            if bgr is None:
                raise OSError(f"{s.image}: not a readable image")
            image = np.ascontiguousarray(bgr[:, :, ::-1])
            items += [Item(f"{s.sample_id}-{k}", image, e, s.mask, str(s.image)) for k, e in enumerate(s.expressions)]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:  # the readers' own errors, any file
        raise ConfigError(f"data.init_args.root {root}: cannot read {source} ({one_line(exc, 160)}). Fix: the folder "
                          f"must hold {_layout(source, root)}") from None
    if not items:
        raise ConfigError(f"data.init_args.root {root}: no {source} samples there. Fix: the folder must hold "
                          f"{_layout(source, root)}")
    return items


def simulated_prior(sample: SyntheticSample | Item, rng: np.random.Generator, objects_masks: Sequence[np.ndarray] = (),
                    p_correct: float = 0.7, p_drift: float = 0.2) -> np.ndarray:
    """A frozen MLLM + SAM2 as a noise model (probabilities, float32): with p_correct the target's mask,
    eroded or dilated by a pixel and blurred, 0.01 / 0.99 away from edges (SAM2's |logit| > 4.6 there); with p_drift another object's mask
    (grounding drift; the target's when there is no other); else a hallucinated ellipse."""
    mask = sample.mask.astype(np.float32)
    h, w = mask.shape
    u = rng.random()
    if u < p_correct:
        k = np.ones((3, 3), np.uint8)
        m = cv2.dilate(mask, k) if rng.random() < 0.5 else cv2.erode(mask, k)
    elif u < p_correct + p_drift and len(objects_masks):
        m = objects_masks[int(rng.integers(len(objects_masks)))].astype(np.float32)
    else:
        m = np.zeros_like(mask)
        cv2.ellipse(m, (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
                    (int(rng.uniform(2, w / 6)), int(rng.uniform(2, h / 6))), 0, 0, 360, 1.0, -1)
    return (0.01 + 0.98 * cv2.GaussianBlur(m, (0, 0), 1.0)).astype(np.float32)


def synthetic_priors(n: int, seed: int, size: int, prior_seed: int) -> dict[str, np.ndarray]:
    """Simulated priors for `synthetic_items(n, seed, size)`, fixed per sample (cached like real ones)."""
    out = {}
    for i, s in enumerate(make_scenes(n, seed=seed, size=size)):
        others = []
        for j, obj in enumerate(s.objects):
            if j != s.target:
                m = np.zeros(s.mask.shape, np.uint8)
                draw_object(m, obj, 1)
                others.append(m)
        out[f"synthetic-{seed}-{i}"] = simulated_prior(s, np.random.default_rng([prior_seed, i]), others)
    return out


def to_pixels(image: np.ndarray) -> torch.Tensor:
    x = (image.astype(np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class _Views(Dataset):
    """labeled / val: weak view + mask (+ prior). unlabeled: weak and strong views, weak and strong texts,
    prior (weak-aligned), and the true mask for monitoring pseudo-label quality only (never a loss)."""

    def __init__(self, items: list[Item], kind: str, tokenize: Callable, size: int, seed: int,
                 priors: dict[str, np.ndarray] | None, synonyms: Callable[[str], Sequence[str]] | None) -> None:
        self.items, self.kind, self.tokenize, self.size, self.seed = items, kind, tokenize, size, seed
        self.priors, self.synonyms = priors, synonyms
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index, {"labeled": 0, "unlabeled": 1, "val": 2}[self.kind]])
        prior = self.priors.get(it.sample_id) if self.priors else None
        maps = [it.mask] + ([prior.astype(np.float32)] if prior is not None else [])
        if self.kind == "val":
            image = cv2.resize(it.image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            text, maps = it.expression, [cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
                                         for m in maps]
        else:
            image, text, _, maps = weak_view(it.image, it.expression, self.size, rng, *maps)
        ids, attn = self.tokenize(text)
        out = {"pixels": to_pixels(image), "input_ids": ids, "attention_mask": attn,
               "mask": torch.from_numpy(maps[0].astype(np.int64))}
        if prior is not None:
            out["prior"] = torch.from_numpy(maps[1].astype(np.float32))[None]
        if self.kind == "unlabeled":
            out["strong_pixels"] = to_pixels(strong_image(image, rng))
            strong_text = text
            if self.synonyms is not None:
                strong_text = str(rng.choice(eda(text, rng, self.synonyms)))
            out["strong_input_ids"], out["strong_attention_mask"] = self.tokenize(strong_text)
        return out


class EpochSampler(Sampler[int]):
    """A permutation seeded by (seed, epoch): the same order after a resume. Lightning calls set_epoch (and
    wraps it for DDP, giving each rank its share)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class SemiSupervisedReferring(L.LightningDataModule):
    def __init__(self, tokenizer_dir: str, source: str = "synthetic", root: str = "", num_samples: int = 512,
                 num_val: int = 128, image_size: int = 64, labeled_share: float = 0.1, seed: int = 0,
                 priors_dir: str = "", simulated_prior_seed: int | None = 1, text_augment: bool = False,
                 batch_size: int = 8, num_workers: int = 0, max_text_len: int = 20) -> None:
        super().__init__()
        self.save_hyperparameters()
        require_dir(tokenizer_dir, "data.init_args.tokenizer_dir", "the starting checkpoint's folder: "
                    "`python -m training.init_model l2l` writes the tokenizer beside the model", hf_ok=True)
        check_source(source, root)
        if priors_dir:
            require_dir(priors_dir, "data.init_args.priors_dir", "write the priors first: python -m training.priors "
                        "--config <this YAML> (training/README.md), or leave priors_dir empty")

    def setup(self, stage: str | None = None) -> None:
        from transformers import BertTokenizerFast

        from reasonseg.data.referring import semi_supervised_split

        h = self.hparams
        tok = BertTokenizerFast.from_pretrained(h.tokenizer_dir, local_files_only=True)

        def tokenize(text: str) -> tuple[torch.Tensor, torch.Tensor]:
            enc = tok(text, padding="max_length", truncation=True, max_length=h.max_text_len, return_tensors="pt")
            return enc.input_ids[0], enc.attention_mask[0]

        items, priors = self._items()
        val, train = items[:h.num_val], items[h.num_val:]
        key = lambda it: it.image_key or it.sample_id  # noqa: E731
        labeled = set(semi_supervised_split([key(it) for it in train], h.labeled_share, seed=h.seed)[0])
        synonyms = None
        if h.text_augment:
            from reasonseg.core.model_cache import resolve_cache_dir
            from reasonseg.grounding.wordnet import WordNet

            synonyms = WordNet(resolve_cache_dir() / "wordnet").synonyms
        args = dict(tokenize=tokenize, size=h.image_size, seed=h.seed, priors=priors, synonyms=synonyms)
        self.labeled = _Views([it for it in train if key(it) in labeled], "labeled", **args)
        self.unlabeled = _Views([it for it in train if key(it) not in labeled], "unlabeled", **args)
        self.val = _Views(val, "val", **args)

    def _items(self) -> tuple[list[Item], dict[str, np.ndarray] | None]:
        h = self.hparams
        items = load_items(h.source, h.root, h.num_samples + h.num_val, h.seed, h.image_size)
        priors = None
        if h.priors_dir:
            priors = {it.sample_id: np.load(Path(h.priors_dir) / f"{it.sample_id}.npy").astype(np.float32)
                      for it in items if (Path(h.priors_dir) / f"{it.sample_id}.npy").is_file()}
        elif h.source == "synthetic" and h.simulated_prior_seed is not None:
            priors = synthetic_priors(len(items), h.seed, h.image_size, h.simulated_prior_seed)
        return items, priors

    def set_epoch(self, epoch: int) -> None:
        for ds in (self.labeled, self.unlabeled):
            ds.epoch = epoch

    def _loader(self, ds: _Views, batch_size: int) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=EpochSampler(len(ds), self.hparams.seed),
                          num_workers=self.hparams.num_workers, drop_last=len(ds) >= batch_size)

    def train_dataloader(self) -> dict[str, DataLoader]:
        b = self.hparams.batch_size
        loaders = {"labeled": self._loader(self.labeled, b)}
        if len(self.unlabeled):
            loaders["unlabeled"] = self._loader(self.unlabeled, b)
        return loaders

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


__all__ = ["SemiSupervisedReferring", "Item", "EpochSampler", "load_items", "simulated_prior", "synthetic_items"]
