"""GRPO with LENS's unified rewards (lens.txt §3.3, eq. 6-12) and the stage-1 segmentation loss.

Where the paper is vague, the authors' code decides (`shared/lens_official.md`): box and mask rewards are
IoU **squared**, mask IoU is I / (U + 1e-6) on `pred > 0`, and the group std gets δ = 1e-4 (eq. 7).
Table A2 gives λ_i = 1.0, α = 1.0 and G = 8 but not ε or β: LENS follows VLM-R1, which trains with TRL's
GRPO defaults, ε = 0.2 and β = 0.04 (an assumption, listed in training/README.md).
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

GROUP_STD_EPS = 1e-4  # δ of eq. 7, the official value
# the release's answer formats: Qwen's grounding tokens (plain) or <think>…</think><answer>…</answer> (CoT)
_PLAIN = re.compile(r"<\|object_ref_start\|>.*?<\|object_ref_end\|><\|box_start\|>.*?<\|box_end\|><\|im_end\|>",
                    re.DOTALL)
_COT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def format_reward(text: str, chain_of_thought: bool) -> float:
    """R_format: 1 when the completion follows the expected template, else 0."""
    return 1.0 if (_COT if chain_of_thought else _PLAIN).search(text) else 0.0


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of [..., 4] x0 y0 x1 y1 boxes, element-wise."""
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).clamp(min=0).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Official mask reward IoU: pred = logits > 0, I / (U + 1e-6), per leading index."""
    pred, gt = (logits > 0).flatten(1), target.bool().flatten(1)
    inter = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float()
    return inter / (union + 1e-6)


def unified_reward(r_format: torch.Tensor, box_iou_: torch.Tensor, seg_iou: torch.Tensor,
                   weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """Eq. 11: λ1 R_format + λ2 R_box + λ3 R_seg, with R_box = IoU² and R_seg = IoU² (official rewards.py)."""
    l1, l2, l3 = weights
    return l1 * r_format + l2 * box_iou_.pow(2) + l3 * seg_iou.pow(2)


def group_advantages(rewards: torch.Tensor, eps: float = GROUP_STD_EPS) -> torch.Tensor:
    """Eq. 6-7 on [num_prompts, G] rewards: (R - μ_G) / (σ_G + δ), σ the population std (1/G)."""
    mu = rewards.mean(-1, keepdim=True)
    sigma = rewards.std(-1, keepdim=True, unbiased=False)
    return (rewards - mu) / (sigma + eps)


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, *, clip_eps: float = 0.2, beta: float = 0.04) -> dict[str, torch.Tensor]:
    """−J(θ) of eq. 8-10 per token, averaged over each completion's tokens, then over the G completions.

    logp*: [N, T] log-probabilities of the sampled tokens under π_θ, π_old, π_ref; advantages: [N] (one per
    completion, broadcast to its tokens); mask: [N, T] 1 on completion tokens. KL is eq. 9's estimator
    π_ref/π_θ − log(π_ref/π_θ) − 1 (always ≥ 0)."""
    ratio = torch.exp(logp - logp_old)
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)  # eq. 8
    log_ref_ratio = logp_ref - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1  # eq. 9
    per_token = surrogate - beta * kl  # eq. 10, inside the expectation
    m = mask.to(per_token.dtype)
    per_seq = (per_token * m).sum(-1) / m.sum(-1).clamp(min=1)
    return {"loss": -per_seq.mean(), "kl": ((kl * m).sum(-1) / m.sum(-1).clamp(min=1)).mean(),
            "clipped_share": (((ratio - 1).abs() > clip_eps).to(m.dtype) * m).sum() / m.sum().clamp(min=1)}


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − (2 Σ p t + eps) / (Σ p + Σ t + eps) per mask, averaged (LISA / SAM convention)."""
    p, t = logits.sigmoid().flatten(1), target.float().flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.), mean over pixels: stage 1 of LENS trains with dice + focal."""
    t = target.float()
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = logits.sigmoid() * t + (1 - logits.sigmoid()) * (1 - t)
    return ((alpha * t + (1 - alpha) * (1 - t)) * (1 - p_t) ** gamma * ce).mean()
