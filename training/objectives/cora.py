"""CORA's semi-supervised objectives (cora.txt §3.1-3.3, eq. 4-9).

Choices where the text is open (also in training/README.md):
* eq. 6 defines λ_i as the per-pixel variance over the K-1 frozen passes, while the text says unstable
  pixels get *lower* weights. We keep eq. 6 as `prediction_variance` and weight by
  λ_i = 1 - var_i / 0.25 (`consistency_weights`): probabilities in [0, 1] have variance at most 1/4, so
  stable pixels weigh 1 and a pixel split half/half weighs 0.
* eq. 7 sums over the W·H pixels, and σ = 0.001 in eq. 9 is set against that sum: we sum the λ-weighted
  BCE over the pixels of the mask the loss sees (`pixel_sum`; averaging instead made the unlabeled term
  1000x weaker than the labeled one, i.e. absent). Its DICE term is the λ-weighted soft Dice over the mask.
* eq. 8 sums over (v, k+) pairs; we average over pairs. τ = 0.1 (SimCLR's; the paper gives none).
* eq. 5's α = 1.0 (not given); eq. 9's σ = 0.001 (the issue's value).
"""
from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

SIGMA = 1e-3
TAU = 0.1


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                      eps: float = 1.0, pixel_sum: bool = False) -> torch.Tensor:
    """Eq. 4 (weights None) / eq. 7 (per-pixel weights; `pixel_sum`: BCE summed over the pixels, as eq. 7
    writes it, else averaged): BCE + Dice per mask, averaged over masks. logits, target, weights: [B, H, W]."""
    w = torch.ones_like(logits) if weights is None else weights
    t = target.float()
    bce = (w * F.binary_cross_entropy_with_logits(logits, t, reduction="none")).flatten(1)
    bce = bce.sum(1) if pixel_sum else bce.mean(1)
    p = logits.sigmoid()
    dice = 1 - (2 * (w * p * t).flatten(1).sum(1) + eps) / ((w * p).flatten(1).sum(1) + (w * t).flatten(1).sum(1) + eps)
    return (bce + dice).mean()


def labeled_loss(text_ce: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Eq. 5: α L_ce + L_seg^l."""
    return alpha * text_ce + segmentation_loss(logits, target)


def prediction_variance(frozen_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 6 literally: [K-1, B, H, W] probabilities of the K-1 frozen rephrasings -> per-pixel variance
    (1/(K-1) normalisation) [B, H, W]."""
    return ((frozen_probs - frozen_probs.mean(0, keepdim=True)) ** 2).mean(0)


def consistency_weights(frozen_probs: torch.Tensor) -> torch.Tensor:
    """λ_i in [0, 1]: 1 where the rephrasings agree, 0 where they split half/half (see module docstring)."""
    return (1 - prediction_variance(frozen_probs) / 0.25).clamp(0, 1)


def token_contrastive_loss(tokens: torch.Tensor, classes: torch.Tensor, bank: torch.Tensor, bank_classes: torch.Tensor,
                           tau: float = TAU) -> torch.Tensor:
    """Eq. 8: for each unlabeled <SEG> token v and each same-class bank token k+,
    -log exp(s+/τ) / (exp(s+/τ) + Σ_{k-} exp(s-/τ)), cosine similarities; mean over the (v, k+) pairs.
    tokens [N, D], classes [N]; bank [M, D], bank_classes [M]. Pairs without a positive are skipped."""
    sim = F.normalize(tokens, dim=-1) @ F.normalize(bank, dim=-1).T / tau  # [N, M]
    same = classes[:, None] == bank_classes[None, :]
    neg = torch.where(same, torch.full_like(sim, float("-inf")), sim).logsumexp(-1, keepdim=True)  # [N, 1]
    denom = torch.logaddexp(sim, neg.expand_as(sim))
    terms = -(sim - denom)[same]
    return terms.mean() if terms.numel() else sim.sum() * 0.0


def total_loss(labeled: torch.Tensor, unlabeled_seg: torch.Tensor, token: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """Eq. 9: L^l + σ (L_seg^u + L_t^u)."""
    return labeled + sigma * (unlabeled_seg + token)


class TokenBank:
    """<SEG> tokens of labeled objects, per class, first in first out (at most `per_class` each)."""

    def __init__(self, per_class: int = 64) -> None:
        self.per_class = per_class
        self._tokens: dict[int, deque] = {}

    def add(self, tokens: torch.Tensor, classes: torch.Tensor) -> None:
        for t, c in zip(tokens.detach(), classes.tolist()):
            self._tokens.setdefault(int(c), deque(maxlen=self.per_class)).append(t.clone())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank [M, D], bank_classes [M]) for `token_contrastive_loss`."""
        items = [(t, c) for c, q in sorted(self._tokens.items()) for t in q]
        if not items:
            raise ValueError("the token bank is empty: add labeled <SEG> tokens first")
        return torch.stack([t for t, _ in items]), torch.tensor([c for _, c in items])
