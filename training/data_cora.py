"""CORA's three training sets as Lightning data (cora.txt §3.4, Fig. 5), from procedural street scenes:

* stage 1 — semantic ("every car": the union of a class's masks) and attribute (the scene's referring
  expression) instructions on labeled images;
* stage 2 — conditional-relationship instructions: a target and an anchor, the anchor given as its masked
  image and box (§3.3), the relation in the camera frame (`training.cora_instructions`);
* stage 3 — adds unlabeled images: a class's pseudo-mask from an off-the-shelf semi-supervised segmenter,
  read from `pseudo_dir/<sample id>_<class>.png` (0/255), and its K rephrasings (§3.2.1).
Every labeled sample carries its class id (the token bank's key). Batches hold one sample each (Qwen's
variable image patches; accumulate for larger batches).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reasonseg.core.prompt import mask_box
from reasonseg.data.synthetic import KINDS, draw_object, make_scenes
from reasonseg.models.cora import SEG_ANSWER, seg_prompt

from .cora_instructions import InstructionWriter, rephrasings, semantic_instructions
from .data import EpochSampler
from .paths import require_checkpoint_dir, require_dir


def object_masks(scene) -> list[np.ndarray]:  # noqa: ANN001
    """Visible pixels of each object of a synthetic scene (drawn back to front, as the scene was)."""
    owner = np.full(scene.mask.shape, -1, np.int16)
    for i, obj in enumerate(scene.objects):
        draw_object(owner, obj, i)
    return [(owner == i).astype(np.uint8) for i in range(len(scene.objects))]


def write_pseudo_masks(out_dir: Path, n: int, seed: int, size: int, flip_share: float = 0.15) -> Path:
    """A stand-in for UniMatch's output on the unlabeled scenes (the benchmark's; real runs point pseudo_dir at the
    segmenter's PNGs): each class's true mask with `flip_share` of its object pixels' neighbourhood corrupted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(make_scenes(n, seed=seed, size=size)):
        rng = np.random.default_rng([seed, i])
        masks = object_masks(scene)
        for c in {o.kind for o in scene.objects}:
            m = np.zeros(scene.mask.shape, np.uint8)
            for obj, om in zip(scene.objects, masks):
                if obj.kind == c:
                    m |= om
            noise = cv2.GaussianBlur(rng.random(m.shape).astype(np.float32), (0, 0), 2.0)
            flip = noise > np.quantile(noise, 1 - flip_share)
            m = np.where(flip, 1 - m, m).astype(np.uint8)
            cv2.imwrite(str(out_dir / f"unlabeled-{seed}-{i}_{c}.png"), m * 255)
    return out_dir


class _CoraSamples(Dataset):
    def __init__(self, scenes: list, kind: str, processor, sam_size: int, seed: int, pseudo_dir: str = "",
                 writer: InstructionWriter | None = None, ids: list[str] | None = None) -> None:
        self.scenes, self.kind, self.processor, self.sam_size, self.seed = scenes, kind, processor, sam_size, seed
        self.pseudo_dir, self.writer, self.ids = pseudo_dir, writer or InstructionWriter(), ids
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.scenes)

    def _encode(self, image: np.ndarray, text: str) -> dict[str, torch.Tensor]:
        from PIL import Image

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
                    {"role": "assistant", "content": SEG_ANSWER}]
        enc = self.processor(text=[self.processor.apply_chat_template(messages)],
                             images=[Image.fromarray(image).resize((56, 56))], return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}

    def __getitem__(self, index: int) -> dict[str, Any]:
        from reasonseg.segmenters.sam2.torch_runner import sam2_pixels

        scene = self.scenes[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        masks = object_masks(scene)
        out: dict[str, Any] = {"sam_pixels": torch.from_numpy(sam2_pixels(scene.image, self.sam_size))[None]}
        if self.kind == "unlabeled":
            classes = sorted({o.kind for o in scene.objects})
            c = classes[int(rng.integers(len(classes)))]
            pseudo = cv2.imread(str(Path(self.pseudo_dir) / f"{self.ids[index]}_{c}.png"), cv2.IMREAD_GRAYSCALE)
            out["mask"] = torch.from_numpy((pseudo > 127).astype(np.float32))[None]
            out["class_id"] = torch.tensor([KINDS.index(c)])
            out["views"] = [self._encode(scene.image, t) for t in rephrasings(f"every {c}")]
            return out
        if self.kind == "conditional" and len(scene.objects) > 1:
            t, a = (int(v) for v in rng.choice(len(scene.objects), 2, replace=False))
            ins = self.writer.conditional([o.kind for o in scene.objects], masks, t, a)
            target = masks[t]
            anchor_image = scene.image * masks[a][..., None]
            x0, y0, x1, y1 = mask_box(masks[a])  # a scene object: never empty
            h, w = masks[a].shape
            enc = self._encode(scene.image, ins.text)
            from PIL import Image

            anchor = self.processor.image_processor(images=[Image.fromarray(anchor_image).resize((56, 56))],
                                                    return_tensors="pt")
            enc |= {"anchor_pixels": anchor["pixel_values"], "anchor_grid": anchor["image_grid_thw"],
                    "anchor_boxes": torch.tensor([[x0 / w, y0 / h, x1 / w, y1 / h]], dtype=torch.float32)}
            class_name = scene.objects[t].kind
        elif rng.random() < 0.5:  # semantic: every instance of a class
            class_name = scene.objects[scene.target].kind
            target = np.zeros_like(scene.mask)
            for o, m in zip(scene.objects, masks):
                if o.kind == class_name:
                    target |= m
            enc = self._encode(scene.image, semantic_instructions(class_name, scene.target, 1, int(rng.integers(99)))[0].text)
        else:  # attribute: the scene's referring expression
            class_name = scene.objects[scene.target].kind
            target = scene.mask
            enc = self._encode(scene.image, seg_prompt(scene.expression))
        return out | enc | {"mask": torch.from_numpy(target.astype(np.float32))[None],
                            "class_id": torch.tensor([KINDS.index(class_name)])}


def _single(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


class CoraData(L.LightningDataModule):
    def __init__(self, checkpoint: str, stage: int = 1, num_labeled: int = 16, num_unlabeled: int = 48,
                 num_val: int = 16, image_size: int = 64, seed: int = 0, pseudo_dir: str = "",
                 num_workers: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        require_checkpoint_dir(checkpoint, "data.init_args.checkpoint", "cora")
        if pseudo_dir:
            require_dir(pseudo_dir, "data.init_args.pseudo_dir", "the folder of stage 3's pseudo-masks, or leave it "
                        "empty (the synthetic ones are written beside the checkpoint)")

    def setup(self, stage: str | None = None) -> None:
        from transformers import AutoProcessor

        from reasonseg.models.mllm_sam import read_sam2_config
        from reasonseg.models.weights import resolve_checkpoint
        from reasonseg.segmenters.sam2.graphs import sam2_image_size

        h = self.hparams
        processor = AutoProcessor.from_pretrained(h.checkpoint, local_files_only=True)
        config = read_sam2_config(resolve_checkpoint(h.checkpoint))
        size = sam2_image_size(config) if config is not None else 1024
        labeled = make_scenes(h.num_labeled, seed=h.seed, size=h.image_size)
        kind = "conditional" if h.stage == 2 else "labeled"
        self.labeled = _CoraSamples(labeled, kind, processor, size, h.seed)
        # held-out scenes (their own seed), semantic and attribute instructions, drawn once
        self.val = _CoraSamples(make_scenes(h.num_val, seed=h.seed + 2, size=h.image_size), "labeled", processor,
                                size, h.seed)
        self.unlabeled = None
        if h.stage == 3:
            pseudo = h.pseudo_dir or str(write_pseudo_masks(Path(h.checkpoint) / "pseudo", h.num_unlabeled,
                                                            h.seed + 1, h.image_size))
            scenes = make_scenes(h.num_unlabeled, seed=h.seed + 1, size=h.image_size)
            self.unlabeled = _CoraSamples(scenes, "unlabeled", processor, size, h.seed, pseudo,
                                          ids=[f"unlabeled-{h.seed + 1}-{i}" for i in range(len(scenes))])

    def _loader(self, ds: _CoraSamples) -> DataLoader:
        return DataLoader(ds, batch_size=1, sampler=EpochSampler(len(ds), self.hparams.seed), collate_fn=_single,
                          num_workers=self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=1, collate_fn=_single, num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> Any:
        if self.unlabeled is None:
            return self._loader(self.labeled)
        return {"labeled": self._loader(self.labeled), "unlabeled": self._loader(self.unlabeled)}


__all__ = ["CoraData", "object_masks", "write_pseudo_masks"]
