"""L2L's pseudo-label construction: SPM fusion (l2l.txt §3.3, eq. 3-6) and RPLE (§3.4, eq. 7-14, App. B.3).

The text extraction lost every equation body and most values (DESIGN.md §1). What follows is rebuilt from the
prose, Table 6 and Appendix B; each choice is marked ASSUMPTION here and listed in training/README.md.

SPM. p = σ(z_w): the model's weak-view prediction; q: the external MLLM+SAM2 prior (probabilities).
* eq. 3  certainty c_i = |2 p_i − 1| ("margin-based": 0 at p = 0.5, → 1 at 0 or 1).
* eq. 4  agreement a = 1 − mean_i |p_i − q_i| (image level; ASSUMPTION: mean absolute agreement).
* eq. 5  w_i = clip(w0 + k_u (1 − c_i) − k_a (1 − a), 0, w_max): more prior where the model is uncertain,
         less where it is confident or where the sources disagree globally. ASSUMPTION: this form; the four
         coefficients (w0, k_u, k_a, w_max) = (0.40, 0.25, 0.20, 0.80) take Table 6's best row for the three
         it varies and 0.8 for the cap.
* eq. 6  fusion in logit space with ε-clamped probabilities: q̃ = σ((1 − w) logit(p) + w logit(q)).
RPLE.
* eq. 7  state s = [mean(q̃), std(q̃), ρ_fg, ρ_bg, ρ_ign, a] (6-d).
* action (τ_fg, τ_bg): foreground where q̃ ≥ τ_fg, background where q̃ ≤ τ_bg, the rest ignored.
* eq. 9  separability S = σ((m_fg − m_bg) / T), m_c the mean q̃ over class-c pixels; T = 0.1 (ASSUMPTION).
* eq. 10 consistency C = 1 − mean over selected pixels of |p − q̃|; eq. 11 coverage V = selected share.
* eq. 8  gain G = λ_s S + λ_c C + λ_v V − λ_stab ‖a_t − a_{t−1}‖₁ (ASSUMPTION: weights 0.4, 0.4, 0.2, 0.1:
         the three gains sum to 1, inside the clip).
* eq. 12 r = clip(G, −r_max, r_max), r_max = 1.0 (the text's example value was lost; ASSUMPTION).
* eq. 13 y = r + γ (1 − done) Q'(s', μ'(s')); eq. 14 critic loss (Q(s, a) − y)²; actor loss −Q(s, μ(s)).
* App. B.3: actor and critic are 2-layer MLPs with hidden 64 (given); lr 1e-4, γ = 0.99, soft update
  τ = 0.005, exploration noise σ = 0.05, initial thresholds (0.7, 0.3) (ASSUMPTIONS: values lost).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

EPS = 1e-4


@dataclass(frozen=True)
class SpmCoefficients:
    w0: float = 0.40
    k_uncertain: float = 0.25
    k_agreement: float = 0.20
    w_max: float = 0.80


def certainty(p: torch.Tensor) -> torch.Tensor:
    """Eq. 3: |2p − 1|."""
    return (2 * p - 1).abs()


def agreement(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Eq. 4: 1 − mean |p − q| per image ([B, H, W] -> [B])."""
    return 1 - (p - q).abs().flatten(1).mean(1)


def fusion_weights(p: torch.Tensor, q: torch.Tensor, coef: SpmCoefficients = SpmCoefficients()) -> torch.Tensor:
    """Eq. 5: per-pixel weight of the prior, [B, H, W]."""
    a = agreement(p, q)[:, None, None]
    w = coef.w0 + coef.k_uncertain * (1 - certainty(p)) - coef.k_agreement * (1 - a)
    return w.clamp(0.0, coef.w_max)


def spm_fuse(weak_logits: torch.Tensor, prior: torch.Tensor, coef: SpmCoefficients = SpmCoefficients()
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6: (calibrated prior q̃, weights) from the weak-view logits and the prior's probabilities."""
    p = weak_logits.sigmoid()
    w = fusion_weights(p, prior, coef)
    logit = lambda x: torch.logit(x.clamp(EPS, 1 - EPS))  # noqa: E731
    return torch.sigmoid((1 - w) * logit(p) + w * logit(prior)), w


def partition(fused: torch.Tensor, t_fg: torch.Tensor, t_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo-label 0/1, selected mask) for per-image thresholds [B]."""
    fg = fused >= t_fg[:, None, None]
    bg = fused <= t_bg[:, None, None]
    return fg.float(), fg | bg


def rple_state(fused: torch.Tensor, selected_fg: torch.Tensor, selected: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    """Eq. 7: [B, 6] = mean, std, foreground / background / ignored shares, agreement."""
    n = fused[0].numel()
    fg = selected_fg.flatten(1).sum(1) / n
    sel = selected.flatten(1).float().sum(1) / n
    flat = fused.flatten(1)
    return torch.stack([flat.mean(1), flat.std(1, unbiased=False), fg, sel - fg, 1 - sel, agree], dim=1)


@dataclass(frozen=True)
class RewardWeights:
    # ASSUMPTION (values lost): the three gains weighted to sum 1, so the gain stays inside the clip. With
    # (1.0, 1.0, 0.5) the gain sat near 2, every reward was clipped to r_max and the critic learnt nothing.
    separability: float = 0.4
    consistency: float = 0.4
    coverage: float = 0.2
    stability: float = 0.1
    temperature: float = 0.1
    r_max: float = 1.0


def instructional_gain(weak_probs: torch.Tensor, fused: torch.Tensor, label: torch.Tensor, selected: torch.Tensor,
                       action: torch.Tensor, prev_action: torch.Tensor, rw: RewardWeights = RewardWeights()
                       ) -> torch.Tensor:
    """Eq. 8-11 per image [B]."""
    sel = selected.float()
    fg, bg = label * sel, (1 - label) * sel
    mean_of = lambda m: (fused * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)  # noqa: E731
    s = torch.sigmoid((mean_of(fg) - mean_of(bg)) / rw.temperature)  # eq. 9
    c = 1 - ((weak_probs - fused).abs() * sel).flatten(1).sum(1) / sel.flatten(1).sum(1).clamp(min=1)  # eq. 10
    v = sel.flatten(1).mean(1)  # eq. 11
    return (rw.separability * s + rw.consistency * c + rw.coverage * v
            - rw.stability * (action - prev_action).abs().sum(-1))


def clipped_reward(gain: torch.Tensor, r_max: float = RewardWeights().r_max) -> torch.Tensor:
    """Eq. 12."""
    return gain.clamp(-r_max, r_max)


def _mlp(n_in: int, n_out: int, hidden: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))  # App. B.3: 2 layers, 64


class Actor(nn.Module):
    """State (6) -> thresholds: τ_fg in (0.5, 1), τ_bg in (0, 0.5)."""

    def __init__(self, state_dim: int = 6, hidden: int = 64) -> None:
        super().__init__()
        self.net = _mlp(state_dim, 2, hidden)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.net(state))
        return torch.stack([0.5 + 0.5 * x[:, 0], 0.5 * x[:, 1]], dim=1)


class Critic(nn.Module):
    def __init__(self, state_dim: int = 6, action_dim: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.net = _mlp(state_dim + action_dim, 1, hidden)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, action], dim=-1)).squeeze(-1)


def td_target(reward: torch.Tensor, next_q: torch.Tensor, done: torch.Tensor, gamma: float = 0.99) -> torch.Tensor:
    """Eq. 13: r + γ (1 − done) Q'(s', μ'(s'))."""
    return reward + gamma * (1 - done.float()) * next_q


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float = 0.005) -> None:
    """θ' ← τ θ + (1 − τ) θ'."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(1 - tau).add_(tau * s)


def ddpg_losses(actor: Actor, critic: Critic, target_actor: Actor, target_critic: Critic, state: torch.Tensor,
                action: torch.Tensor, reward: torch.Tensor, next_state: torch.Tensor, done: torch.Tensor,
                gamma: float = 0.99) -> tuple[torch.Tensor, torch.Tensor]:
    """(critic loss, eq. 14; actor loss, deterministic policy gradient). The actor's loss reads the critic through
    detached parameters: one backward of the sum trains each network on its own loss only (one backward per
    step is what DDP needs)."""
    from torch.func import functional_call

    with torch.no_grad():
        y = td_target(reward, target_critic(next_state, target_actor(next_state)), done, gamma)
    critic_loss = ((critic(state, action) - y) ** 2).mean()
    frozen = {k: v.detach() for k, v in critic.named_parameters()}
    actor_loss = -functional_call(critic, frozen, (state, actor(state))).mean()
    return critic_loss, actor_loss


def boundary_band(label: torch.Tensor, width: int = 3) -> torch.Tensor:
    """App. B.3: pixels within `width` of a foreground / background boundary of a [B, H, W] 0/1 pseudo-label
    (they are ignored: boundaries are where pseudo-labels are least reliable)."""
    import torch.nn.functional as F

    x = label[:, None].float()
    k = 2 * width + 1
    dilated = F.max_pool2d(x, k, stride=1, padding=width)
    eroded = -F.max_pool2d(-x, k, stride=1, padding=width)
    return (dilated != eroded)[:, 0]
