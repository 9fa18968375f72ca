"""CORA (cora.txt §3, eq. 4-9) as a LightningModule, one class for its three equal stages (`stage`: 1 semantic +
attribute instructions, 2 conditional-relationship instructions with anchors, 3 + unlabeled images).

Labeled loss (eq. 4-5): α · CE on the answer tokens ("Sure, it is <SEG>.") + BCE + Dice on the mask.
Stage 3 adds, per unlabeled image: the class's pseudo-mask from an off-the-shelf semi-supervised segmenter
(from disk), the K = 7 rephrasings — one trained pass and K − 1 frozen (no-gradient) passes whose per-pixel
variance gives the weights (eq. 6; `consistency_weights`) of the weighted BCE + Dice (eq. 7) — and the
contrastive loss of its `<SEG>` token against the bank of labeled tokens of the same class (eq. 8); total
eq. 9 with σ = 0.001. `pseudo_weighting: confidence` is the ablation's baseline instead: pixels where the
trained pass is confident (max(p, 1 − p) ≥ 0.95) weigh 1, the rest 0 (Table 4, "confidence-thresholded").
Trained (LISA's set, CoraModel's groups): the `<SEG>` projection, the anchor encoders, the token embeddings /
LM head, the SAM2 mask decoder; the vision towers and the language model's layers stay frozen.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from reasonseg.models.cora import CoraModel

from ..objectives.cora import (
    TokenBank,
    consistency_weights,
    labeled_loss,
    segmentation_loss,
    token_contrastive_loss,
    total_loss,
)
from ..paths import require_checkpoint_dir
from .checkpointing import TrainedTensorsCheckpoint
from .validation import ReferringValidation

CORA_GROUPS = ("seg_projection", "anchor_encoder", "token_embeddings", "sam_mask_decoder")


class CoraModule(TrainedTensorsCheckpoint, ReferringValidation, L.LightningModule):
    def __init__(self, checkpoint: str, stage: int = 1, lr: float = 3e-4, alpha: float = 1.0, sigma: float = 1e-3,
                 pseudo_weighting: str = "consistency", confidence: float = 0.95, bank_per_class: int = 64,
                 out_dir: str = "") -> None:
        super().__init__()
        if stage not in (1, 2, 3) or pseudo_weighting not in ("consistency", "confidence"):
            raise ValueError("stage is 1, 2 or 3; pseudo_weighting is consistency or confidence")
        self.save_hyperparameters()
        self.model = CoraModel.from_pretrained(
            require_checkpoint_dir(checkpoint, "model.init_args.checkpoint", "cora"), dtype=torch.float32)
        self.trainable = self.model.train_only(*CORA_GROUPS)
        self.bank = TokenBank(bank_per_class)

    def _run(self, b: dict[str, Any], lm_logits: bool = True):  # noqa: ANN202
        anchor = {}
        if "anchor_pixels" in b:
            anchor = {"anchor_features": self.model.anchor_features(b["anchor_pixels"], b["anchor_grid"]),
                      "anchor_boxes": b["anchor_boxes"]}
        return self.model(b["input_ids"], b["attention_mask"], b["pixel_values"], b["image_grid_thw"],
                          b["sam_pixels"], lm_logits=lm_logits, **anchor)

    @staticmethod
    def _target(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return F.interpolate(mask[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0]

    def _answer_ce(self, out, ids: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        """Eq. 5's L_ce: next-token CE on the assistant's answer (the tokens after the last user turn)."""
        start = int((ids[0] == self.model.mllm.config.vision_end_token_id).nonzero()[-1]) + 1
        logits = out.logits[:, start - 1:-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, start:].reshape(-1))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        h = self.hparams
        lab = batch["labeled"] if "labeled" in batch else batch
        out = self._run(lab)
        loss_l = labeled_loss(self._answer_ce(out, lab["input_ids"]), out.mask_logits,
                              self._target(lab["mask"], out.mask_logits), h.alpha)            # eq. 5
        self.bank.add(out.seg_tokens, lab["class_id"])
        self.log("train/labeled", loss_l, prog_bar=True)
        if "unlabeled" not in batch:
            return loss_l
        u = batch["unlabeled"]
        views = [v | {"sam_pixels": u["sam_pixels"]} for v in u["views"]]
        trained = self._run(views[0], lm_logits=False)
        target = self._target(u["mask"], trained.mask_logits)
        with torch.no_grad():
            if h.pseudo_weighting == "consistency":                                          # eq. 6
                frozen = torch.stack([self._run(v, lm_logits=False).mask_logits.sigmoid() for v in views[1:]])
                weights = consistency_weights(frozen)
            else:
                p = trained.mask_logits.sigmoid()
                weights = (torch.maximum(p, 1 - p) >= h.confidence).float()
        loss_u = segmentation_loss(trained.mask_logits, target, weights, pixel_sum=True)      # eq. 7
        bank, bank_classes = self.bank.tensors()
        loss_t = token_contrastive_loss(trained.seg_tokens, u["class_id"], bank.to(trained.seg_tokens),
                                        bank_classes.to(u["class_id"].device))              # eq. 8
        loss = total_loss(loss_l, loss_u, loss_t, h.sigma)                                     # eq. 9
        self.log_dict({"train/unlabeled_seg": loss_u, "train/token": loss_t, "train/weight_mean": weights.mean()})
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The mask of the `<SEG>` token of the answer, at the image's size, against the instruction's target."""
        logits = self._run(batch, lm_logits=False).mask_logits
        logits = F.interpolate(logits[:, None], size=batch["mask"].shape[-2:], mode="bilinear")[:, 0]
        self.update_val_iou(logits, batch["mask"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=self.hparams.lr)



__all__ = ["CoraModule", "CORA_GROUPS"]
