"""Training objectives and metrics against values computed by hand (issue 11's first pieces)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reasonseg.core.metrics import ReferringIoU, SemanticIoU
from training.objectives.grpo import (box_iou, dice_loss, focal_loss, format_reward, group_advantages, grpo_loss,
                                      mask_iou, unified_reward)


def test_group_advantages_follow_eq_6_and_7() -> None:
    a = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    # μ = 0.5, σ (population) = 0.5, δ = 1e-4 -> ±0.5 / 0.5001; a group of equal rewards teaches nothing
    assert torch.allclose(a[0], torch.tensor([1, -1, -1, 1]) * (0.5 / 0.5001))
    assert torch.equal(a[1], torch.zeros(4))


def test_clipped_surrogate_and_kl_follow_eq_8_to_10() -> None:
    mask = torch.ones(2, 1)
    same = torch.zeros(2, 1)
    out = grpo_loss(same, same, same, torch.tensor([1.0, -0.5]), mask)
    assert out["loss"].item() == pytest.approx(-(1.0 - 0.5) / 2) and out["kl"].item() == 0.0
    # ratio 1.5 with A = +1 clips to 1.2; ratio 0.5 with A = -1: min(-0.5, -0.8) = -0.8
    logp = torch.log(torch.tensor([[1.5], [0.5]]))
    out = grpo_loss(logp, same, logp, torch.tensor([1.0, -1.0]), mask, clip_eps=0.2, beta=0.0)
    assert out["loss"].item() == pytest.approx(-(1.2 - 0.8) / 2) and out["clipped_share"].item() == 1.0
    # KL estimator: π_ref / π_θ = 2 -> 2 - ln 2 - 1, weighted by β
    out = grpo_loss(same[:1], same[:1], torch.log(torch.tensor([[2.0]])), torch.tensor([0.0]), mask[:1], beta=0.1)
    assert out["kl"].item() == pytest.approx(1 - math.log(2))
    assert out["loss"].item() == pytest.approx(0.1 * (1 - math.log(2)))


def test_padding_tokens_do_not_count() -> None:
    logp = torch.log(torch.tensor([[1.5, 9.0]]))
    out = grpo_loss(logp, torch.zeros(1, 2), logp, torch.tensor([1.0]), torch.tensor([[1.0, 0.0]]), beta=0.0)
    assert out["loss"].item() == pytest.approx(-1.2)


def test_unified_reward_squares_the_ious_as_the_release_does() -> None:
    r = unified_reward(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.8]))
    assert r.item() == pytest.approx(1 + 0.25 + 0.64)
    assert unified_reward(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.0]), (1, 2, 3)).item() == 2.0


def test_rewards_components() -> None:
    assert box_iou(torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 1, 3, 3])).item() == pytest.approx(1 / 7)
    assert box_iou(torch.tensor([0.0, 0, 1, 1]), torch.tensor([2.0, 2, 3, 3])).item() == 0.0
    logits = torch.tensor([[[3.0, -1.0], [2.0, -4.0]]])
    gt = torch.tensor([[[1, 1], [0, 0]]])
    assert mask_iou(logits, gt).item() == pytest.approx(1 / (3 + 1e-6))
    plain = "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|><|im_end|>"
    assert format_reward(plain, chain_of_thought=False) == 1.0 and format_reward("[1,2,3,4]", False) == 0.0
    assert format_reward("<think>a\nb</think> <answer>[1,2,3,4]</answer>", True) == 1.0
    assert format_reward("<answer>[1,2,3,4]</answer>", True) == 0.0


def test_stage_1_losses() -> None:
    ones = torch.ones(1, 2, 2)
    assert dice_loss(torch.full((1, 2, 2), 50.0), ones).item() == pytest.approx(0.0, abs=1e-6)
    # all-zero logits: p = 0.5 -> 1 - (2*2 + 1) / (2 + 4 + 1)
    assert dice_loss(torch.zeros(1, 2, 2), ones).item() == pytest.approx(1 - 5 / 7)
    # p_t = 0.5, CE = ln 2, α = 0.25 for positives: 0.25 * 0.5^2 * ln 2
    assert focal_loss(torch.zeros(1, 2, 2), ones).item() == pytest.approx(0.25 * 0.25 * math.log(2))


def test_ciou_giou_and_miou_by_hand() -> None:
    m = ReferringIoU()
    a = np.zeros((2, 4), bool)
    a[0, :2] = True
    b = np.zeros((2, 4), bool)
    b[0, 1:3] = True
    assert m.update(a, b) == pytest.approx(1 / 3)
    big = np.ones((2, 4), bool)
    assert m.update(big, big) == 1.0
    assert m.ciou == pytest.approx((1 + 8) / (3 + 8)) and m.giou == pytest.approx((1 / 3 + 1) / 2)
    assert m.update(np.zeros((1, 1), bool), np.zeros((1, 1), bool)) == 1.0  # both empty: right
    s = SemanticIoU(num_classes=3, ignore_index=255)
    s.update(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 255]))
    assert s.per_class()[0] == pytest.approx(1 / 2) and s.per_class()[1] == pytest.approx(2 / 3)
    assert math.isnan(s.per_class()[2]) and s.miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="outside"):
        s.update(np.array([5]), np.array([0]))


def test_cora_variance_weights_follow_eq_6_and_weigh_stable_pixels_up() -> None:
    from training.objectives.cora import consistency_weights, prediction_variance

    # K-1 = 2 frozen passes, 2 pixels: agreeing (0.9, 0.9) and split (1.0, 0.0)
    probs = torch.tensor([[[[0.9, 1.0]]], [[[0.9, 0.0]]]])
    var = prediction_variance(probs)
    assert torch.allclose(var, torch.tensor([[[0.0, 0.25]]]))  # mean of squared deviations, 1/(K-1)
    assert torch.allclose(consistency_weights(probs), torch.tensor([[[1.0, 0.0]]]))


def test_cora_segmentation_losses_by_hand() -> None:
    from training.objectives.cora import labeled_loss, segmentation_loss, total_loss

    logits, target = torch.zeros(1, 1, 2), torch.tensor([[[1.0, 0.0]]])
    # BCE = ln 2 everywhere; Dice = 1 - (2*0.5 + 1) / (1 + 1 + 1)
    expected = math.log(2) + 1 - 2 / 3
    assert segmentation_loss(logits, target).item() == pytest.approx(expected)
    # weight 0 on the second pixel: BCE mean = ln2 / 2, Dice = 1 - (1 + 1) / (0.5 + 1 + 1)
    w = torch.tensor([[[1.0, 0.0]]])
    assert segmentation_loss(logits, target, w).item() == pytest.approx(math.log(2) / 2 + 1 - 2 / 2.5)
    # eq. 7 as written: the weighted BCE summed over the W·H pixels, not averaged
    assert segmentation_loss(logits, target, w, pixel_sum=True).item() == pytest.approx(math.log(2) + 1 - 2 / 2.5)
    assert labeled_loss(torch.tensor(2.0), logits, target, alpha=0.5).item() == pytest.approx(1 + expected)
    assert total_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)).item() == pytest.approx(1.005)


def test_cora_token_loss_follows_eq_8() -> None:
    from training.objectives.cora import TokenBank, token_contrastive_loss

    v = torch.tensor([[1.0, 0.0]])
    bank = TokenBank(per_class=2)
    bank.add(torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]), torch.tensor([7, 3, 3]))
    keys, classes = bank.tensors()
    loss = token_contrastive_loss(v, torch.tensor([7]), keys, classes, tau=0.5)
    s_pos, s_negs = 1.0 / 0.5, [0.0, (1 / math.sqrt(2)) / 0.5]  # cosine / τ
    by_hand = -math.log(math.exp(s_pos) / (math.exp(s_pos) + sum(math.exp(s) for s in s_negs)))
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)
    bank.add(torch.tensor([[1.0, 1.0]]), torch.tensor([3]))  # FIFO: class 3 keeps its 2 newest tokens
    keys, classes = bank.tensors()
    assert classes.tolist() == [3, 3, 7] and torch.equal(keys[0], torch.tensor([5.0, 5.0]))


def test_l2l_spm_fusion_weights_by_hand() -> None:
    from training.objectives.l2l import SpmCoefficients, agreement, certainty, fusion_weights, spm_fuse

    p = torch.tensor([[[0.5, 0.9]]])
    q = torch.tensor([[[0.7, 0.9]]])
    assert torch.allclose(certainty(p), torch.tensor([[[0.0, 0.8]]]))
    assert agreement(p, q).item() == pytest.approx(1 - 0.1)
    # w = 0.40 + 0.25 (1 - c) - 0.20 (1 - 0.9): uncertain pixel 0.63, confident pixel 0.40 + 0.05 - 0.02 = 0.43
    assert torch.allclose(fusion_weights(p, q), torch.tensor([[[0.63, 0.43]]]))
    assert fusion_weights(p, q, SpmCoefficients(w0=2.0)).max().item() == pytest.approx(0.8)  # the cap
    fused, w = spm_fuse(torch.logit(p), q)
    expected = torch.sigmoid(0.37 * torch.logit(torch.tensor(0.5)) + 0.63 * torch.logit(torch.tensor(0.7)))
    assert fused[0, 0, 0].item() == pytest.approx(expected.item(), rel=1e-5)
    assert fused[0, 0, 1].item() == pytest.approx(0.9, rel=1e-4)  # both say 0.9


def test_l2l_reward_clipping_gain_and_state() -> None:
    from training.objectives.l2l import RewardWeights, clipped_reward, instructional_gain, partition, rple_state

    assert torch.equal(clipped_reward(torch.tensor([-3.0, 0.4, 2.0])), torch.tensor([-1.0, 0.4, 1.0]))
    fused = torch.tensor([[[0.9, 0.8, 0.5, 0.1]]])
    label, selected = partition(fused, torch.tensor([0.7]), torch.tensor([0.3]))
    assert label.tolist() == [[[1, 1, 0, 0]]] and selected.tolist() == [[[True, True, False, True]]]
    state = rple_state(fused, label * selected, selected, torch.tensor([0.9]))
    assert state.shape == (1, 6) and state[0, 2:].tolist() == pytest.approx([0.5, 0.25, 0.25, 0.9])
    weak = torch.tensor([[[1.0, 0.8, 0.5, 0.1]]])
    rw = RewardWeights()
    g = instructional_gain(weak, fused, label, selected, torch.tensor([[0.7, 0.3]]), torch.tensor([[0.6, 0.3]]), rw)
    s = 1 / (1 + math.exp(-(0.85 - 0.1) / 0.1))
    c = 1 - 0.1 / 3
    assert g.item() == pytest.approx(0.4 * s + 0.4 * c + 0.2 * 0.75 - 0.1 * 0.1, rel=1e-5)
    from training.objectives.l2l import boundary_band

    lab = torch.zeros(1, 12, 12)
    lab[:, :, 6:] = 1  # a vertical edge between columns 5 and 6
    band = boundary_band(lab, width=3)[0]
    assert band[:, 3:9].all() and not band[:, :3].any() and not band[:, 9:].any()


def test_l2l_ddpg_target_soft_update_and_losses() -> None:
    from training.objectives.l2l import Actor, Critic, ddpg_losses, soft_update, td_target

    y = td_target(torch.tensor([0.5, 0.5]), torch.tensor([2.0, 2.0]), torch.tensor([False, True]), gamma=0.9)
    assert y.tolist() == pytest.approx([0.5 + 0.9 * 2.0, 0.5])
    a, b = nn_linear(1.0), nn_linear(3.0)
    soft_update(a, b, tau=0.25)
    assert a.weight.item() == pytest.approx(0.75 * 1.0 + 0.25 * 3.0)
    torch.manual_seed(0)
    actor, critic = Actor(), Critic()
    thresholds = actor(torch.rand(5, 6))
    assert ((thresholds[:, 0] > 0.5) & (thresholds[:, 0] < 1) & (thresholds[:, 1] > 0) & (thresholds[:, 1] < 0.5)).all()
    assert [m.out_features for m in actor.net if isinstance(m, torch.nn.Linear)] == [64, 2]  # App. B.3
    c_loss, a_loss = ddpg_losses(actor, critic, Actor(), Critic(), torch.rand(4, 6), torch.rand(4, 2),
                                 torch.rand(4), torch.rand(4, 6), torch.zeros(4))
    c_loss.backward()
    assert critic.net[0].weight.grad is not None and actor.net[0].weight.grad is None  # critic step only
    critic_grad = critic.net[0].weight.grad.clone()
    a_loss.backward()
    assert actor.net[0].weight.grad is not None
    assert torch.equal(critic.net[0].weight.grad, critic_grad)  # the actor's loss never moves the critic


def nn_linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(value)
    return layer
