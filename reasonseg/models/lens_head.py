"""LENS's context module between the MLLM and SAM2 (LENS paper "Context Module", eq. 2-4; the authors' release layout).

The one definition that the `lens` pipeline, `training/` and `export/` import. Parameter names are the
release's top-level keys, so a checkpoint's ``learnable_query``, ``connector.*``, ``conv_1d.*`` and
``proj_to_sam.*`` tensors load into :class:`LensHead` unchanged:

* ``learnable_query`` [1, M, D]: M context queries (default 64) appended after prompt + generated answer
  (eq. 2: "the context query is appended to the end of the input, and generated sequence"); init normal(0, 0.02)
  as released.
* ``connector``: positional embedding + ``depth`` pre-LayerNorm (eps 1e-6) transformer blocks with
  bidirectional attention, no RoPE, quick-GELU MLP (ratio 4), no final norm (eq. 3, "a shallow transformer").
* ``conv_1d``: Conv1d(D, D, kernel M) squeezes the M query outputs into ONE token.
* ``proj_to_sam``: Linear(D, D) -> GELU -> Linear(D, 256): that token in SAM2's prompt space, used as the
  single sparse prompt embedding of eq. 4 (the dense prompt is SAM2's ``no_mask_embed``).

Stage 1 (pretraining alignment, eq. 5) trains exactly these parameters with the MLLM and SAM2 frozen.
Also here: the position ids of the second forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LensHead", "second_pass_position_ids", "SAM_PROMPT_DIM"]

SAM_PROMPT_DIM = 256  # SAM2's prompt-encoder embedding width


class _Attention(nn.Module):
    """Bidirectional multi-head self-attention over the M query outputs (no mask: all queries are real)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"connector width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick-GELU, as Qwen-VL's vision blocks


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LensConnector(nn.Module):
    def __init__(self, dim: int, num_queries: int, depth: int = 4, num_heads: int = 16, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.blocks = nn.ModuleList(_Block(dim, num_heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


class LensHead(nn.Module):
    """Queries in, one SAM2 sparse prompt token out.

    dim: the language model's hidden size (read from the checkpoint's config, never assumed);
    num_queries: M (the release's ``num_of_query``); use_connector: the release's
    ``if_use_qwen_connector`` (True in every released checkpoint); the connector's 16 heads and depth 4
    are fixed by the release (its config has no field for them); prompt_dim: the SAM2 prompt width (256 in
    every SAM2; tiny test models use less).
    """

    def __init__(self, dim: int, num_queries: int = 64, *, use_connector: bool = True,
                 connector_depth: int = 4, connector_heads: int = 16, prompt_dim: int = SAM_PROMPT_DIM) -> None:
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        self.num_queries = num_queries
        self.learnable_query = nn.Parameter(torch.empty(1, num_queries, dim))
        self.connector = LensConnector(dim, num_queries, connector_depth, connector_heads) if use_connector else None
        self.conv_1d = nn.Conv1d(dim, dim, kernel_size=num_queries)
        self.proj_to_sam = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, prompt_dim))
        nn.init.normal_(self.learnable_query, std=0.02)
        nn.init.normal_(self.conv_1d.weight, std=0.02)
        nn.init.zeros_(self.conv_1d.bias)

    def append_queries(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 2: the M queries go after prompt + full completion (incl. <|im_end|>), no special tokens;
        the attention mask grows by M ones."""
        b = inputs_embeds.shape[0]
        q = self.learnable_query.to(inputs_embeds.dtype).expand(b, -1, -1)
        ones = attention_mask.new_ones(b, self.num_queries)
        return torch.cat([inputs_embeds, q], dim=1), torch.cat([attention_mask, ones], dim=1)

    def forward(self, query_hidden: torch.Tensor) -> torch.Tensor:
        """[B, M, D] last hidden states (after the final norm) at the query positions -> [B, 1, prompt_dim]."""
        if query_hidden.ndim != 3 or query_hidden.shape[1] != self.num_queries:
            raise ValueError(f"expected [B, {self.num_queries}, D] query states, got {tuple(query_hidden.shape)}")
        x = self.connector(query_hidden) if self.connector is not None else query_hidden
        x = self.conv_1d(x.transpose(1, 2)).transpose(1, 2)  # [B, 1, D]
        return self.proj_to_sam(x)


def second_pass_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [3, B, L] of LENS's second forward pass (prompt + answer + queries, as embeddings).

    The release runs that pass with ``inputs_embeds`` and no ``input_ids``, so transformers 4.51's
    Qwen2.5-VL ``get_rope_index`` takes its text-only branch: 1-D positions ``cumsum(mask) - 1`` (padding
    set to 1) copied to the temporal, height and width M-RoPE axes, i.e. the image tokens lose their 2-D
    positions.  The released weights were trained with exactly this, so we reproduce it and pass these
    ids explicitly (transformers 5.x would otherwise rebuild image positions).
    """
    if attention_mask.ndim != 2:
        raise ValueError(f"attention_mask must be [B, L], got {tuple(attention_mask.shape)}")
    pos = attention_mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 1)
    return pos.unsqueeze(0).expand(3, -1, -1)
