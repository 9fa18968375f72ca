"""LENS stage 1 (`LensStage1Module`) and stage 2 (`LensGrpoModule`). Stage 1, pretraining alignment (lens.txt §3, eq. 5), as a LightningModule: the MLLM and SAM2 frozen,
the context queries and the connector trained with a segmentation loss (dice + focal, the paper's
examples) on SAM2's low-res mask logits. Table A1: lr 3e-5, cosine schedule.

The model is `reasonseg.models.lens.LensModel` (the same class the `lens` pipeline and `export/` load); every
checkpoint also writes the model in the release layout to `out_dir`, which `--pipeline lens` opens.
Batches (`LensReferringData`) hold the release's prompt and, as the answer, the ground-truth box in Qwen's
grounding format — stage 1 teaches the queries to read a box-bearing answer (ASSUMPTION: the paper says
"segmentation datasets" and no more; the format is the one the release's format reward checks).
"""
from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from reasonseg.models.lens import LensModel

from ..objectives.grpo import dice_loss, focal_loss
from ..paths import require_checkpoint_dir
from .checkpointing import TrainedTensorsCheckpoint

STAGE1_GROUPS = ("queries", "connector")


class LensStage1Module(TrainedTensorsCheckpoint, L.LightningModule):
    def __init__(self, checkpoint: str, lr: float = 3e-5, weight_decay: float = 0.0, warmup_steps: int = 0,
                 dice_weight: float = 1.0, focal_weight: float = 1.0, gradient_checkpointing: bool = False,
                 out_dir: str = "") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = LensModel.from_pretrained(
            require_checkpoint_dir(checkpoint, "model.init_args.checkpoint", "lens"), dtype=torch.float32)
        self.trainable = self.model.train_only(*STAGE1_GROUPS)  # eq. 5: MLLM and SAM2 frozen
        if gradient_checkpointing:  # the 3B language model's activations: recompute instead of keeping them
            self.model.mllm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                            batch["image_grid_thw"], batch["sam_pixels"])                 # [B, h, w]
        target = F.interpolate(batch["mask"][:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0]
        h = self.hparams
        return h.dice_weight * dice_loss(logits, target) + h.focal_weight * focal_loss(logits, target)  # eq. 5

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/seg_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/seg_loss", self._loss(batch), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> Any:
        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))

        def schedule(step: int) -> float:  # linear warm-up, then cosine to 0 (Table A1)
            if step < h.warmup_steps:
                return (step + 1) / h.warmup_steps
            progress = (step - h.warmup_steps) / max(1, total - h.warmup_steps)
            return 0.5 * (1 + torch.cos(torch.tensor(torch.pi * min(1.0, progress)))).item()

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule),
                                                   "interval": "step"}}



STAGE2_GROUPS = ("mllm_language", "queries", "connector", "sam_prompt_encoder", "sam_mask_decoder")


def repeat_images(pixel_values: torch.Tensor, grid: torch.Tensor, times: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen's flattened patches [Σ patches, D] and grids [B, 3], each image repeated `times` (G samples each)."""
    sizes = grid.prod(-1).tolist()
    chunks = torch.split(pixel_values, sizes)
    return (torch.cat([c for c in chunks for _ in range(times)]), grid.repeat_interleave(times, 0))


def completion_logprobs(mllm, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                        grid: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """log π(token) of each completion token [N, T] (T = sequences' length - prompt_len)."""
    logits = mllm(input_ids=sequences, attention_mask=attention_mask, pixel_values=pixel_values,
                  image_grid_thw=grid).logits[:, prompt_len - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, sequences[:, prompt_len:, None])[..., 0]


class LensGrpoModule(TrainedTensorsCheckpoint, L.LightningModule):
    """LENS stage 2 (lens.txt §3.3, eq. 6-12): G sampled answers per prompt from the model's own `generate`;
    unified reward = format + box IoU² + mask IoU² (eq. 11, squares from the release's rewards.py); group-
    relative advantages with std + 1e-4 (eq. 6-7); clipped surrogate (ε) with a KL penalty (β) to the frozen
    stage-1 language model (eq. 8-10); plus α · (BCE + Dice) on every sample's mask (eq. 12; the release adds
    both). Trained: the language model, queries, connector, SAM2 prompt encoder + mask decoder (the release's
    stage 2); frozen: both image encoders. One policy update per batch, so π_old = π_θ (TRL's default
    num_iterations = 1); Table A2: G = 8, lr 3e-6 linear, λ = α = 1."""

    def __init__(self, checkpoint: str, num_generations: int = 8, max_new_tokens: int = 64, temperature: float = 1.0,
                 lr: float = 3e-6, clip_eps: float = 0.2, beta: float = 0.04, seg_weight: float = 1.0,
                 chain_of_thought: bool = False, gradient_checkpointing: bool = False, out_dir: str = "") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = LensModel.from_pretrained(
            require_checkpoint_dir(checkpoint, "model.init_args.checkpoint", "lens"), dtype=torch.float32)
        self.trainable = self.model.train_only(*STAGE2_GROUPS)
        self.reference = copy.deepcopy(self.model.mllm).eval()  # π_ref: the stage-1 language model, frozen
        for p in self.reference.parameters():
            p.requires_grad_(False)
        if gradient_checkpointing:
            self.model.mllm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def rewards(self, texts: list[str], boxes: torch.Tensor, sent: torch.Tensor, seg_iou: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """Eq. 11 per sample: format, box IoU (first box of the answer, in the sent image's pixels) and mask IoU."""
        from reasonseg.grounding.vlm.answer import MllmAnswerError, parse_answer

        from ..objectives.grpo import box_iou, format_reward, unified_reward

        fmt = torch.tensor([format_reward(t, self.hparams.chain_of_thought) for t in texts])
        found = []
        for t, size in zip(texts, sent.tolist()):
            try:
                objects = parse_answer(t, sent_size=tuple(size), frame_size=tuple(size)).objects
                found.append(list(objects[0].box) if objects and objects[0].box else [0.0] * 4)
            except MllmAnswerError:
                found.append([0.0] * 4)
        biou = box_iou(torch.tensor(found, dtype=torch.float32), boxes.cpu().float())
        return {"format": fmt, "box_iou": biou, "seg_iou": seg_iou.cpu(),
                "reward": unified_reward(fmt, biou, seg_iou.cpu())}

    def rollout(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """G sampled answers per prompt from the policy itself (vLLM optional, never required), their masks from
        the second pass (with gradient when enabled: eq. 12's segmentation term) and their rewards."""
        from ..objectives.grpo import mask_iou

        h = self.hparams
        g = h.num_generations
        mllm = self.model.mllm
        prompt_len = batch["input_ids"].shape[1]
        was_training = mllm.training
        with torch.no_grad():
            mllm.eval()
            seqs = mllm.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                                 do_sample=True, temperature=h.temperature, max_new_tokens=h.max_new_tokens,
                                 num_return_sequences=g)
            mllm.train(was_training)
        tok = self.processor().tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        end_id = tok.convert_tokens_to_ids("<|im_end|>")
        completion = seqs[:, prompt_len:]
        is_end = (completion == end_id).long()
        comp_mask = ((torch.cumsum(is_end, 1) - is_end) == 0) & (completion != pad)  # up to and incl. <|im_end|>
        attn = torch.cat([batch["attention_mask"].repeat_interleave(g, 0), comp_mask.long()], 1)
        pv, grid = repeat_images(batch["pixel_values"], batch["image_grid_thw"], g)
        texts = tok.batch_decode([c[m] for c, m in zip(completion, comp_mask)], skip_special_tokens=False)
        logits = self.model(seqs * attn, attn, pv, grid, batch["sam_pixels"].repeat_interleave(g, 0))
        target = F.interpolate(batch["mask"][:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0]
        target = target.repeat_interleave(g, 0)
        r = self.rewards(texts, batch["box"].repeat_interleave(g, 0), batch["sent_size"].repeat_interleave(g, 0),
                         mask_iou(logits.detach(), target))
        return {"seqs": seqs, "attn": attn, "pv": pv, "grid": grid, "comp_mask": comp_mask, "logits": logits,
                "target": target, "prompt_len": prompt_len, **r}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        from ..objectives.grpo import group_advantages, grpo_loss

        h = self.hparams
        o = self.rollout(batch)
        logits, target = o["logits"], o["target"]
        adv = group_advantages(o["reward"].view(-1, h.num_generations)).flatten().to(logits.device)  # eq. 6-7
        logp = completion_logprobs(self.model.mllm, o["seqs"], o["attn"], o["pv"], o["grid"], o["prompt_len"])
        with torch.no_grad():
            logp_ref = completion_logprobs(self.reference, o["seqs"], o["attn"], o["pv"], o["grid"], o["prompt_len"])
        rl = grpo_loss(logp, logp.detach(), logp_ref, adv, o["comp_mask"], clip_eps=h.clip_eps, beta=h.beta)  # eq. 8-10
        seg = F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)
        loss = rl["loss"] + h.seg_weight * seg
        self.log_dict({"train/reward": o["reward"].mean(), "train/format": o["format"].mean(),
                       "train/box_iou": o["box_iou"].mean(), "train/seg_iou": o["seg_iou"].mean(),
                       "train/kl": rl["kl"], "train/seg_loss": seg}, prog_bar=True)
        return loss

    @torch.no_grad()
    def mean_reward(self, loader, seed: int = 0) -> dict[str, float]:  # noqa: ANN001
        """Mean unified reward (and its parts) of G samples per prompt over a loader, sampling seeded."""
        torch.manual_seed(seed)
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("reward", "format", "box_iou", "seg_iou")}
        self.model.eval()
        for batch in loader:
            o = self.rollout(batch)
            for k in parts:
                parts[k].append(o[k])
        return {k: float(torch.cat(v).mean()) for k, v in parts.items()}

    def configure_optimizers(self) -> Any:
        h = self.hparams
        opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=h.lr, weight_decay=0.0)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / total))  # linear (Table A2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}



__all__ = ["LensStage1Module", "LensGrpoModule", "STAGE1_GROUPS", "STAGE2_GROUPS"]
