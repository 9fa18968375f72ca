"""L2L (Learning to Label) as a LightningModule: the onboard segmentor (`reasonseg.models.l2l`) trained on a
labeled part and, with pseudo-labels, an unlabeled part (weak-to-strong consistency, App. A.1).

`pseudo_label` picks what the unlabeled part contributes — the comparisons the "it learns" benchmark runs:
* `none`:  the labeled part alone;
* `fixed`: the paper's baseline (App. A.1): pseudo-mask 1[p_w > 0.5] from the weak view, kept where
           max(p_w, 1 − p_w) ≥ τ (FixMatch's τ = 0.95), loss on the strong view's prediction;
* `rple`:  SPM fuses the external prior with the weak prediction (eq. 3-6); the RPLE actor picks per-image
           thresholds (τ_fg, τ_bg) from the state (eq. 7); pixels outside both are ignored; the DDPG critic
           learns from the clipped instructional-gain reward (eq. 8-14), actor and critic trained in the same
           backward as the segmentor (their losses touch disjoint parameters).
SESM's prior input (`sesm_prior`): `self` (default) — every view gets what inference gives it onboard, the
model's own prediction (pass 1 with no prior; the strong view the weak view's prediction, "P updated with
the improving weak prediction", §3.2), and the external prior only shapes the pseudo-label through SPM;
`external` — the paper's evaluation setting, where the MLLM + SAM2 prior is also there at test time: the
weak view sees the external prior, the strong view the SPM-fused one (`rple`) or the external one
(`fixed`). With `external`, the strong view's SESM input is the very map its pseudo-label is cut from, so
onboard inference without an MLLM would see a different input than training did. Losses (App. B.3, eq. 22): labeled — pixel cross-entropy, ignore index 255, class
weights (0.9, 1.1) for background / foreground (ASSUMPTION: the values were lost; LAVT's); unlabeled — cross-
entropy on the selected pixels plus a Dice term on them, λ = 1 each (ASSUMPTION), the same for `fixed` and
`rple` so the comparison isolates the selection.
DDPG transitions are the current batch's images (ASSUMPTION: App. B.3's replay settings were lost).
Schedule (App. B.3): AdamW with polynomial decay over the whole run, power `lr_power` = 0.9 (ASSUMPTION: lost).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from reasonseg.models.l2l import L2LSegmentor

from ..objectives.grpo import dice_loss
from ..objectives.l2l import (
    Actor,
    Critic,
    RewardWeights,
    agreement,
    boundary_band,
    clipped_reward,
    ddpg_losses,
    instructional_gain,
    partition,
    rple_state,
    soft_update,
    spm_fuse,
)
from ..paths import require_checkpoint_dir
from .validation import ReferringValidation

PSEUDO_LABELS = ("none", "fixed", "rple")
CLASS_WEIGHTS = (0.9, 1.1)  # background, foreground (LAVT's)


def supervised_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted pixel cross-entropy on [B, H, W] logits vs a 0 / 1 / 255 (ignore) mask."""
    valid = mask != 255
    target = (mask == 1).float()
    weight = torch.where(target > 0, CLASS_WEIGHTS[1], CLASS_WEIGHTS[0])
    ce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    return ce[valid].mean()


def unlabeled_loss(logits: torch.Tensor, label: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Eq. 22's unlabeled terms: cross-entropy over the selected pixels + a Dice term over the selected pixels of
    the images that have confident foreground ("a Dice regularizer on confident foreground pixels": an image
    with none would only be pushed towards an empty mask)."""
    ce = (F.binary_cross_entropy_with_logits(logits, label, reduction="none") * selected).sum()
    ce = ce / (selected.sum() + 1e-6)
    has_fg = (label * selected).flatten(1).sum(1) > 0
    if not bool(has_fg.any()):
        return ce
    return ce + dice_loss(logits[has_fg].masked_fill(selected[has_fg] == 0, -1e4), (label * selected)[has_fg])


class L2LModule(ReferringValidation, L.LightningModule):
    def __init__(self, model_dir: str, pseudo_label: str = "rple", lr: float = 1e-4, weight_decay: float = 0.01,
                 unlabeled_weight: float = 1.0, fixed_threshold: float = 0.95, rl_lr: float = 1e-4,
                 gamma: float = 0.99, tau: float = 0.005, exploration_std: float = 0.05,
                 initial_thresholds: tuple[float, float] = (0.7, 0.3), sesm_prior: str = "self", seed: int = 0,
                 lr_power: float = 0.9, out_dir: str = "") -> None:
        super().__init__()
        if pseudo_label not in PSEUDO_LABELS:
            raise ValueError(f"pseudo_label must be one of {PSEUDO_LABELS}, got {pseudo_label!r}")
        if sesm_prior not in ("self", "external"):
            raise ValueError(f"sesm_prior must be self or external, got {sesm_prior!r}")
        self.save_hyperparameters()
        self.model = L2LSegmentor.from_pretrained(
            require_checkpoint_dir(model_dir, "model.init_args.model_dir", "l2l")).train()
        if pseudo_label == "rple":
            self.actor, self.critic = Actor(), Critic()
            self.target_actor, self.target_critic = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
            for p in [*self.target_actor.parameters(), *self.target_critic.parameters()]:
                p.requires_grad_(False)
            self.register_buffer("prev_action", torch.tensor(initial_thresholds, dtype=torch.float32))

    # -- steps ---------------------------------------------------------------------------------------
    def self_prior(self, pixels: torch.Tensor, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Pass 1 of inference: the model's own probabilities with an uninformative prior (no gradient)."""
        with torch.no_grad():
            return torch.sigmoid(self.model(pixels, ids, attn, None))

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        lab = batch["labeled"]
        logits = self.model(lab["pixels"], lab["input_ids"], lab["attention_mask"],
                            self.self_prior(lab["pixels"], lab["input_ids"], lab["attention_mask"]))[:, 0]
        sup = supervised_loss(logits, lab["mask"])
        loss = sup
        self.log("train/supervised", sup, prog_bar=True)
        unl = batch.get("unlabeled")
        if unl is not None and self.hparams.pseudo_label != "none":
            loss = loss + self.hparams.unlabeled_weight * self._unlabeled(unl)
        self.log("train/loss", loss)
        return loss

    def _unlabeled(self, u: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.hparams
        prior = u["prior"][:, 0] if "prior" in u else None
        external = h.sesm_prior == "external"
        if external and prior is None:
            raise ValueError("sesm_prior external needs priors (priors_dir, or the synthetic source's simulated ones)")
        with torch.no_grad():  # the weak prediction, as inference makes it (own prior) or with the external one
            weak_in = u["prior"] if external else self.self_prior(u["pixels"], u["input_ids"], u["attention_mask"])
            weak_logits = self.model(u["pixels"], u["input_ids"], u["attention_mask"], weak_in)[:, 0]
        p = torch.sigmoid(weak_logits)
        if h.pseudo_label == "fixed":
            label = (p > 0.5).float()
            selected = torch.maximum(p, 1 - p) >= h.fixed_threshold
            strong_prior = u["prior"] if external else p[:, None]
            rl_loss = weak_logits.new_zeros(())
        else:
            if prior is None:
                raise ValueError("pseudo_label rple needs priors (priors_dir, or the synthetic source's simulated ones)")
            fused, _ = spm_fuse(weak_logits, prior)                                        # eq. 3-6
            label, selected, rl_loss = self._rple(p, fused, agreement(p, prior))
            strong_prior = fused[:, None] if external else p[:, None]
        strong = self.model(u["strong_pixels"], u["strong_input_ids"], u["strong_attention_mask"], strong_prior)[:, 0]
        sel = selected.float()
        loss = unlabeled_loss(strong, label, sel)
        if "mask" in u:  # monitoring only: how right the kept pseudo-labels are (the true mask is never a loss)
            truth = (u["mask"] == 1).float()
            right = ((label == truth).float() * sel).sum() / sel.sum().clamp(min=1)
            fg_recall = (label * truth * sel).sum() / truth.sum().clamp(min=1)  # target pixels taught as target
            self.log_dict({"pseudo/precision": right, "pseudo/coverage": sel.mean(), "pseudo/fg_recall": fg_recall})
        self.log("train/unlabeled", loss, prog_bar=True)
        return loss + rl_loss

    def _rple(self, p: torch.Tensor, fused: torch.Tensor, agree: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Thresholds from the actor (with exploration noise), the pseudo-label they give, and the DDPG losses
        on this batch's transitions (s: the state under the previous thresholds, s': under the new ones)."""
        h = self.hparams
        b = p.shape[0]
        prev = self.prev_action.expand(b, 2)
        fg0, sel0 = partition(fused, prev[:, 0], prev[:, 1])
        state = rple_state(fused, fg0 * sel0, sel0, agree).detach()                         # eq. 7
        gen = torch.Generator(device="cpu").manual_seed(h.seed * 1_000_003 + self.global_step * 97 + self.global_rank)
        noise = torch.randn(b, 2, generator=gen).to(p) * h.exploration_std
        with torch.no_grad():
            action = self.actor(state) + noise
            action = torch.stack([action[:, 0].clamp(0.5 + 1e-3, 1 - 1e-3), action[:, 1].clamp(1e-3, 0.5 - 1e-3)], 1)
        label, selected = partition(fused, action[:, 0], action[:, 1])
        # App. B.3: a 3-pixel band around boundaries is ignored, at its 480 px input: scaled to this input size
        band = round(3 * label.shape[-1] / 480)
        if band:
            selected = selected & ~boundary_band(label, band)
        gain = instructional_gain(p, fused, label, selected, action, prev)                   # eq. 8-11
        reward = clipped_reward(gain, RewardWeights().r_max)                                  # eq. 12
        next_state = rple_state(fused, label * selected, selected, agree).detach()
        critic_loss, actor_loss = ddpg_losses(self.actor, self.critic, self.target_actor, self.target_critic, state,
                                              action, reward, next_state, p.new_zeros(b), h.gamma)  # eq. 13-14
        mean_action = action.mean(0).detach()
        if self.trainer.world_size > 1:  # one threshold memory for all ranks: their weights stay identical
            mean_action = self.trainer.strategy.reduce(mean_action, reduce_op="mean")
        self.prev_action.copy_(mean_action)
        self.log_dict({"rple/reward": reward.mean(), "rple/tau_fg": action[:, 0].mean(),
                       "rple/tau_bg": action[:, 1].mean(), "rple/critic": critic_loss, "rple/actor": actor_loss})
        return label, selected, critic_loss + actor_loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.hparams.pseudo_label == "rple":
            soft_update(self.target_actor, self.actor, self.hparams.tau)
            soft_update(self.target_critic, self.critic, self.hparams.tau)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)  # augmentation draws seeded by epoch: resumable

    # -- validation: the inference path (two passes, own prior) -------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        prior = self.self_prior(batch["pixels"], batch["input_ids"], batch["attention_mask"])
        logits = self.model(batch["pixels"], batch["input_ids"], batch["attention_mask"], prior)[:, 0]
        self.update_val_iou(logits, batch["mask"])

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr": h.lr,
                   "weight_decay": h.weight_decay}]
        if h.pseudo_label == "rple":
            groups.append({"params": [*self.actor.parameters(), *self.critic.parameters()], "lr": h.rl_lr,
                           "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
        # App. B.3: "polynomial learning-rate decay with power [lost] over the whole training process", per step;
        # ASSUMPTION: power 0.9 (the usual poly schedule of segmentation work), applied to every group
        steps = self.trainer.estimated_stepping_batches  # inf for a run with no step or epoch limit: no decay
        total = max(1, int(steps)) if math.isfinite(steps) else math.inf
        poly = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total) ** h.lr_power)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": poly, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint also leaves the segmentor as the `l2l` pipeline and `export/` load it."""
        out = self.hparams.out_dir
        if out and self.trainer.is_global_zero:
            from transformers import BertTokenizerFast

            tok = BertTokenizerFast.from_pretrained(self.hparams.model_dir, local_files_only=True)
            self.model.save_pretrained(out, tok)


__all__ = ["L2LModule", "PSEUDO_LABELS"]
