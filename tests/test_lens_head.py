"""LENS's queries -> connector -> conv_1d -> proj_to_sam head (issue 9, first part): the release's parameter
names and shapes, the connector against torch's own transformer layer, the second-pass positions, and
stage-1 gradients through a real (tiny, random) Qwen2.5-VL."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reasonseg.models.lens_head import SAM_PROMPT_DIM, LensHead, second_pass_position_ids

D, M, HEADS = 32, 8, 4


def official_head_shapes(d: int, m: int, depth: int = 4) -> dict[str, tuple[int, ...]]:
    """The release's top-level extra keys (lens_official.md: learnable_query, connector.*, conv_1d.*,
    proj_to_sam.0/2.*) and their shapes for hidden size d and m queries."""
    shapes: dict[str, tuple[int, ...]] = {"learnable_query": (1, m, d), "connector.pos_embed": (1, m, d),
                                          "conv_1d.weight": (d, d, m), "conv_1d.bias": (d,),
                                          "proj_to_sam.0.weight": (d, d), "proj_to_sam.0.bias": (d,),
                                          "proj_to_sam.2.weight": (SAM_PROMPT_DIM, d),
                                          "proj_to_sam.2.bias": (SAM_PROMPT_DIM,)}
    for i in range(depth):
        b = f"connector.blocks.{i}."
        shapes.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "norm2.weight": (d,),
                       b + "norm2.bias": (d,), b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
                       b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                       b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
                       b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,)})
    return shapes


def test_parameter_names_and_shapes_are_the_releases():
    head = LensHead(D, M, connector_heads=HEADS)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == official_head_shapes(D, M)
    no_connector = LensHead(D, M, use_connector=False)
    assert not any(k.startswith("connector.") for k in no_connector.state_dict())
    assert abs(float(head.learnable_query.detach().std()) - 0.02) < 0.01  # normal(0, 0.02) init as released


def test_connector_is_a_pre_norm_bidirectional_transformer():
    """Same weights in torch's TransformerEncoderLayer (norm_first, quick-GELU, eps 1e-6) give the same output."""
    torch.manual_seed(0)
    head = LensHead(D, M, connector_heads=HEADS).eval()
    for p in head.connector.parameters():
        nn.init.normal_(p, std=0.2)
    ref_layers = []
    for block in head.connector.blocks:
        layer = nn.TransformerEncoderLayer(D, HEADS, 4 * D, dropout=0.0, activation=lambda x: x * torch.sigmoid(1.702 * x),
                                           layer_norm_eps=1e-6, batch_first=True, norm_first=True).eval()
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
            layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
            layer.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
            layer.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
            for mine, theirs in ((block.norm1, layer.norm1), (block.norm2, layer.norm2),
                                 (block.mlp.fc1, layer.linear1), (block.mlp.fc2, layer.linear2)):
                theirs.weight.copy_(mine.weight)
                theirs.bias.copy_(mine.bias)
        ref_layers.append(layer)
    x = torch.randn(3, M, D)
    ref = x + head.connector.pos_embed
    for layer in ref_layers:
        ref = layer(ref)
    with torch.no_grad():
        got = head.connector(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # bidirectional: the first query's output depends on the last query's input
    x2 = x.clone()
    x2[:, -1] += torch.randn(3, D)  # not a constant: Layer norm would remove that
    with torch.no_grad():
        assert not torch.allclose(head.connector(x2)[:, 0], got[:, 0])
    out = head(x)
    assert out.shape == (3, 1, SAM_PROMPT_DIM)  # conv_1d squeezes the M queries into one prompt token


def test_second_pass_positions_follow_the_release_rule():
    # left-padded batch: 2 pads, then 5 tokens (3 prompt/answer + 2 queries); and an unpadded row
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    pos = second_pass_position_ids(mask)
    want = torch.tensor([[1, 1, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]])
    assert pos.shape == (3, 2, 7)
    for axis in range(3):  # the same 1-D positions on the temporal, height and width axes
        assert torch.equal(pos[axis], want)
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        second_pass_position_ids(torch.ones(7))


def test_head_rejects_the_wrong_number_of_queries():
    head = LensHead(D, M, connector_heads=HEADS)
    with pytest.raises(ValueError, match=f"B, {M}, D"):
        head(torch.zeros(1, M + 1, D))
    with pytest.raises(ValueError, match="num_queries"):
        LensHead(D, 0)
    with pytest.raises(ValueError, match="divisible"):
        LensHead(30, M, connector_heads=4)


def test_stage1_gradients_reach_exactly_the_queries_and_connector():
    """LENS stage 1 (pretraining alignment, eq. 5): MLLM frozen; queries, connector, conv_1d and proj_to_sam train.
    Second pass through a real tiny Qwen2.5-VL with the queries appended and the release's positions."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=D, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=512, bos_token_id=0, eos_token_id=1,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=D,
                           fullatt_block_indexes=[0]))
    torch.manual_seed(0)
    mllm = Qwen2_5_VLForConditionalGeneration(cfg)
    mllm.requires_grad_(False)
    head = LensHead(D, M, connector_heads=HEADS)
    ids = torch.randint(0, 512, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, :3] = 0
    embeds, mask = head.append_queries(mllm.get_input_embeddings()(ids), mask)
    hidden = mllm.model(inputs_embeds=embeds, attention_mask=mask,
                        position_ids=second_pass_position_ids(mask)).last_hidden_state
    head(hidden[:, -M:]).square().mean().backward()
    got = {n for n, p in head.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == set(official_head_shapes(D, M))
    assert all(p.grad is None for p in mllm.parameters())
