"""Referring data as LENS sees it: the release's prompt + a ground-truth answer, Qwen2.5-VL image tensors, SAM2
pixels and the target mask. Same sources and seeded split as `training.data` (synthetic scenes or the
RefCOCO / ReasonSeg readers); batches are left-padded (the queries go after each full sequence).
"""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reasonseg.core.prompt import Box, mask_box
from reasonseg.grounding.vlm.lens import QUESTION, SYSTEM_PROMPT

from .data import EpochSampler, Item, check_source, load_items
from .paths import require_checkpoint_dir


def box_answer(expression: str, mask: np.ndarray, sent_size: tuple[int, int]) -> str:
    """Qwen2.5-VL's grounding answer for the mask's box, absolute pixels of the image the model is sent
    (the format the release's stage-1 format reward checks)."""
    x0, y0, x1, y1 = (int(v) for v in _sent_box(mask, sent_size))
    return (f"<|object_ref_start|>{expression}<|object_ref_end|><|box_start|>({x0},{y0}),({x1},{y1})"
            "<|box_end|><|im_end|>")


def _sent_box(mask: np.ndarray, sent_size: tuple[int, int]) -> Box:
    """The box of the target pixels (1) in pixels of the (w, h) image the model is sent; zeros when none."""
    box = mask_box(mask == 1)
    if box is None:
        return (0.0, 0.0, 0.0, 0.0)
    sx, sy = sent_size[0] / mask.shape[1], sent_size[1] / mask.shape[0]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


class _LensItems(Dataset):
    def __init__(self, items: list[Item], checkpoint: str, sam_size: int, with_answer: bool = True) -> None:
        from transformers import AutoProcessor

        from reasonseg.grounding.vlm.qwen_vl import pixel_bounds

        self.items, self.sam_size, self.with_answer = items, sam_size, with_answer
        self.processor = AutoProcessor.from_pretrained(checkpoint, local_files_only=True)
        self.bounds = pixel_bounds(self.processor.image_processor)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image

        from reasonseg.grounding.vlm.answer import smart_resize
        from reasonseg.segmenters.sam2.torch_runner import sam2_pixels

        it = self.items[index]
        h, w = smart_resize(*it.image.shape[:2], min_pixels=self.bounds[0], max_pixels=self.bounds[1])
        image = Image.fromarray(it.image).resize((w, h), Image.BICUBIC)
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": QUESTION.format(question=it.expression)}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        if self.with_answer:  # stage 1 reads a ground-truth answer; stage 2 (GRPO) samples its own
            text += box_answer(it.expression, it.mask, (w, h))
        enc = self.processor(text=[text], images=[image], return_tensors="pt")
        return {"input_ids": enc["input_ids"][0], "pixel_values": enc["pixel_values"],
                "box": torch.tensor(_sent_box(it.mask, (w, h)), dtype=torch.float32), "sent_size": torch.tensor([w, h]),
                "image_grid_thw": enc["image_grid_thw"], "mask": torch.from_numpy((it.mask == 1).astype(np.float32)),
                "sam_pixels": torch.from_numpy(sam2_pixels(it.image, self.sam_size, antialias=True))}


def collate_left_padded(samples: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(s["input_ids"]) for s in samples)
    ids = torch.full((len(samples), n), pad_id, dtype=torch.long)
    attn = torch.zeros((len(samples), n), dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, n - len(s["input_ids"]):] = s["input_ids"]
        attn[i, n - len(s["input_ids"]):] = 1
    return {"input_ids": ids, "attention_mask": attn,
            "pixel_values": torch.cat([s["pixel_values"] for s in samples]),
            "image_grid_thw": torch.cat([s["image_grid_thw"] for s in samples]),
            "mask": torch.stack([s["mask"] for s in samples]), "sam_pixels": torch.stack([s["sam_pixels"] for s in samples]),
            "box": torch.stack([s["box"] for s in samples]), "sent_size": torch.stack([s["sent_size"] for s in samples])}


class LensReferringData(L.LightningDataModule):
    def __init__(self, checkpoint: str, source: str = "synthetic", root: str = "", num_samples: int = 64,
                 num_val: int = 16, image_size: int = 64, seed: int = 0, batch_size: int = 2,
                 num_workers: int = 0, with_answer: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        require_checkpoint_dir(checkpoint, "data.init_args.checkpoint", "lens")
        check_source(source, root)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        from reasonseg.models.mllm_sam import read_sam2_config
        from reasonseg.models.weights import resolve_checkpoint
        from reasonseg.segmenters.sam2.graphs import sam2_image_size

        config = read_sam2_config(resolve_checkpoint(h.checkpoint))  # the checkpoint's own SAM2 (none: Hiera-L)
        size = sam2_image_size(config) if config is not None else 1024
        items = load_items(h.source, h.root, h.num_samples + h.num_val, h.seed, h.image_size)
        self.val = _LensItems(items[:h.num_val], h.checkpoint, size, h.with_answer)
        self.train = _LensItems(items[h.num_val:], h.checkpoint, size, h.with_answer)
        self.pad_id = int(self.train.processor.tokenizer.pad_token_id or 0)

    def _loader(self, ds: _LensItems, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers,
                          sampler=EpochSampler(len(ds), self.hparams.seed) if shuffle else None,
                          collate_fn=lambda b: collate_left_padded(b, self.pad_id))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, False)


__all__ = ["LensReferringData", "box_answer", "collate_left_padded"]
