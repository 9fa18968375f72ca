"""LiteSAM: TinyViT image encoder + SAM prompt encoder + SAM mask decoder.

Our own implementation of the LiteMedSAM architecture (TinyViT-5M encoder at 256x256 input, 64x64x256
image embedding, SAM prompt encoder and two-way-transformer mask decoder).  Module names follow the
original TinyViT / segment-anything layout so that state-dict keys match ``lite_medsam.pth`` exactly.

One definition is shared by the ROS nodes, training and ONNX export:

* ``build_lite_sam(cfg)``            -> randomly initialised :class:`LiteSam`
* ``convert_checkpoint(pth, out)``   -> strict key/shape check of a torch checkpoint, written as safetensors
* ``save_lite_sam(model, out)``      -> safetensors (atomic)
* ``load_lite_sam(weights, cfg)``    -> :class:`LiteSam` in eval mode

Prompt convention (the SAM ONNX convention, used by both the torch and the ONNX path): sparse prompts are
points in *model input* pixel coordinates (``[0, img_size)``) with labels 1 = positive, 0 = negative,
2 / 3 = top-left / bottom-right box corner and -1 = padding ("not a point").
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reasonseg.core.errors import one_line

__all__ = [
    "LiteSamConfig",
    "LiteSam",
    "TinyViT",
    "PromptEncoder",
    "MaskDecoder",
    "TwoWayTransformer",
    "build_lite_sam",
    "boxes_to_points",
    "convert_checkpoint",
    "save_lite_sam",
    "load_lite_sam",
]


@dataclass(frozen=True)
class LiteSamConfig:
    """Architecture sizes.  Defaults are LiteMedSAM (TinyViT-5M, 256 input, 64x64x256 embedding)."""

    img_size: int = 256
    in_chans: int = 3
    embed_dims: tuple[int, int, int, int] = (64, 128, 160, 320)
    depths: tuple[int, int, int, int] = (2, 2, 6, 2)
    num_heads: tuple[int, int, int, int] = (2, 4, 5, 10)
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    drop_path_rate: float = 0.0  # training only; 0 -> identity
    prompt_dim: int = 256  # neck output channels = prompt embedding = decoder transformer width
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "num_heads", "window_sizes"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"LiteSamConfig.{name} must have 4 entries (TinyViT stages)")
        if self.img_size % 4:
            raise ValueError("LiteSamConfig.img_size must be divisible by 4")
        for dim, heads in zip(self.embed_dims[1:], self.num_heads[1:]):
            if dim % heads:
                raise ValueError(f"embed dim {dim} not divisible by {heads} heads")
        if self.prompt_dim % 8 or (self.prompt_dim // 2) % self.decoder_heads:
            raise ValueError("prompt_dim must be divisible by 8 and prompt_dim/2 by decoder_heads")
        if self.mask_in_chans % 4:
            raise ValueError("mask_in_chans must be divisible by 4")

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding (stage 0 at full res, two stride-2 merges)."""
        return self.img_size // 4

    @property
    def mask_size(self) -> int:
        """Side of the low-res mask logits (decoder upsamples the embedding 4x) == img_size."""
        return 4 * self.embedding_size

    def stage_resolution(self, i: int) -> int:
        # stage 0: full res, stage 1: /2, stage 2: /4, stage 3: /4 (last merge has stride 1)
        return self.img_size // 2 ** min(i, 2)


# --------------------------------------------------------------------------------------------------
# shared layers


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dim of an NCHW tensor (eps 1e-6, as in SAM)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _drop_path(p: float) -> nn.Module:
    return DropPath(p) if p > 0.0 else nn.Identity()


# --------------------------------------------------------------------------------------------------
# TinyViT image encoder (LiteMedSAM variant: 1x1 patch embedding, no stem downsampling)


class Conv2dBN(nn.Sequential):
    """Conv (no bias) + BatchNorm; keys ``c.*`` / ``bn.*``."""

    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(cout)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(in_chans, dim // 2), nn.GELU(), Conv2dBN(dim // 2, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, dim: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, ks=3, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim, bn_weight_init=0.0)
        self.act3 = nn.GELU()
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        y = self.drop_path(self.conv3(y))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """Takes NCHW or (B, H*W, C) at ``resolution``; returns (B, H'*W', out_dim)."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, ks=3, stride=stride, pad=1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            r = self.resolution
            x = x.view(x.shape[0], r, r, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, depth: int, expand_ratio: float, drop_path: list[float],
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio, drop_path[i]) for i in range(depth))
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a ``window x window`` window with learned relative-offset biases."""

    attention_bias_idxs: Tensor

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(n, n), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, C)
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float,
                 drop_path: float, local_conv_size: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.drop_path = _drop_path(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, ks=local_conv_size, pad=local_conv_size // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, H*W, C)
        r, ws = self.resolution, self.window
        b, n, c = x.shape
        pad = (ws - r % ws) % ws
        p = r + pad
        nw = p // ws
        y = x.view(b, r, r, c)
        if pad:
            y = F.pad(y, (0, 0, 0, pad, 0, pad))
        # window partition -> attention -> window reverse
        y = y.view(b, nw, ws, nw, ws, c).transpose(2, 3).reshape(b * nw * nw, ws * ws, c)
        y = self.attn(y)
        y = y.view(b, nw, nw, ws, ws, c).transpose(2, 3).reshape(b, p, p, c)
        if pad:
            y = y[:, :r, :r].contiguous()
        x = x + self.drop_path(y.view(b, n, c))
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, r, r)).view(b, c, n).transpose(1, 2)
        return x + self.drop_path(self.mlp(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, window: int,
                 mlp_ratio: float, drop_path: list[float], local_conv_size: int,
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, resolution, num_heads, window, mlp_ratio, drop_path[i], local_conv_size)
            for i in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT as used by LiteMedSAM: (B, 3, S, S) in [0, 1] -> (B, prompt_dim, S/4, S/4)."""

    def __init__(self, cfg: LiteSamConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims, depths = cfg.embed_dims, cfg.depths
        self.patch_embed = PatchEmbed(cfg.in_chans, dims[0])
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(4):
            res = cfg.stage_resolution(i)
            dp = dpr[sum(depths[:i]): sum(depths[: i + 1])]
            down = None
            if i < 3:  # merge into the next stage; the merge into the last stage keeps the resolution
                down = PatchMerging(res, dims[i], dims[i + 1], stride=2 if i < 2 else 1)
            layer: nn.Module
            if i == 0:
                layer = ConvLayer(dims[0], depths[0], cfg.mbconv_expand_ratio, dp, down)
            else:
                layer = BasicLayer(dims[i], res, depths[i], cfg.num_heads[i], cfg.window_sizes[i],
                                   cfg.mlp_ratio, dp, cfg.local_conv_size, down)
            self.layers.append(layer)
        self.apply(_init_encoder_weights)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], cfg.prompt_dim, kernel_size=1, bias=False),
            LayerNorm2d(cfg.prompt_dim),
            nn.Conv2d(cfg.prompt_dim, cfg.prompt_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.prompt_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        e = self.cfg.embedding_size
        x = x.view(x.shape[0], e, e, -1).permute(0, 3, 1, 2)
        return self.neck(x)


def _init_encoder_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------
# SAM prompt encoder


class PositionEmbeddingRandom(nn.Module):
    positional_encoding_gaussian_matrix: Tensor

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords01: Tensor) -> Tensor:
        """coords in [0, 1]^2, shape (..., 2) -> (..., 2 * num_pos_feats)."""
        c = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix
        c = 2 * math.pi * c
        return torch.cat([torch.sin(c), torch.cos(c)], dim=-1)

    def dense(self, h: int, w: int) -> Tensor:
        """(C, h, w) encoding of the pixel-centre grid."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(grid).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, embedding_size: int, input_size: int, mask_in_chans: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_size = embedding_size
        self.input_size = input_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(  # mask prompts: kept for checkpoint/training compatibility
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """(1, C, E, E) positional encoding of the image embedding grid."""
        return self.pe_layer.dense(self.embedding_size, self.embedding_size).unsqueeze(0)

    def embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """coords (B, N, 2) in input pixels, labels (B, N) in {-1, 0, 1, 2, 3} -> (B, N, C)."""
        pe = self.pe_layer.encode((coords + 0.5) / self.input_size)
        lab = labels.unsqueeze(-1)
        pe = torch.where(lab == -1, self.not_a_point_embed.weight, pe)
        for i, emb in enumerate(self.point_embeddings):
            pe = pe + emb.weight * (lab == i).to(pe.dtype)
        return pe

    def dense_embeddings(self, batch: int, masks: Tensor | None = None) -> Tensor:
        if masks is not None:
            return self.mask_downscaling(masks)
        e = self.embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, e, e)

    def forward(self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None,
                masks: Tensor | None) -> tuple[Tensor, Tensor]:
        """segment-anything semantics: returns (sparse (B, N, C), dense (B, C, E, E))."""
        coords: list[Tensor] = []
        labels: list[Tensor] = []
        if points is not None:
            coords.append(points[0])
            labels.append(points[1])
            if boxes is None:  # pad with a "not a point" so the token count matches training
                b = points[0].shape[0]
                coords.append(points[0].new_zeros(b, 1, 2))
                labels.append(points[1].new_full((b, 1), -1))
        if boxes is not None:
            bc, bl = boxes_to_points(boxes)
            coords.append(bc)
            labels.append(bl)
        if coords:
            sparse = self.embed_points(torch.cat(coords, 1), torch.cat(labels, 1).to(coords[0].dtype))
        else:
            b = masks.shape[0] if masks is not None else 1
            sparse = self.no_mask_embed.weight.new_empty(b, 0, self.embed_dim)
        return sparse, self.dense_embeddings(sparse.shape[0], masks)


def boxes_to_points(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 4) or (B, 1, 4) xyxy boxes -> corner points (B, 2, 2) with labels (B, 2) = [2, 3]."""
    coords = boxes.reshape(-1, 2, 2)
    labels = torch.tensor([2.0, 3.0], dtype=coords.dtype, device=coords.device).expand(coords.shape[0], 2)
    return coords, labels


# --------------------------------------------------------------------------------------------------
# SAM mask decoder + two-way transformer


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        h = [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip([in_dim] + h, h + [out_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MLPBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, dim)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class Attention(nn.Module):
    """Multi-head attention with optional channel downsampling of q/k/v."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        self.num_heads = num_heads
        self.sqrt_head_dim = math.sqrt(inner // num_heads)
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / self.sqrt_head_dim
        out = attn.softmax(dim=-1) @ v
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim, num_heads, mlp_dim, skip_first_layer_pe=(i == 0)) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """image / image_pe (B, C, h, w), tokens (B, N, C) -> (tokens (B, N, C), image (B, h*w, C))."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class MaskDecoder(nn.Module):
    def __init__(self, dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int,
                 iou_head_depth: int, iou_head_hidden_dim: int) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, multimask_output: bool | None) -> tuple[Tensor, Tensor]:
        """Returns (mask logits (B, M, 4E, 4E), iou (B, M)); M = 1 (token 0), the multimask tokens, or all
        tokens (`multimask_output=None`)."""
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                        dense_prompt_embeddings)
        sl = slice(None) if multimask_output is None else slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor,
                      dense: Tensor) -> tuple[Tensor, Tensor]:
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        src = image_embeddings
        if src.shape[0] != b:
            src = torch.repeat_interleave(src, b, dim=0)
        src = src + dense
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1: 1 + self.num_mask_tokens, :]
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        _, cu, hu, wu = up.shape
        masks = (hyper @ up.view(b, cu, hu * wu)).view(b, -1, hu, wu)
        return masks, self.iou_prediction_head(iou_out)


# --------------------------------------------------------------------------------------------------
# full model


class LiteSam(nn.Module):
    def __init__(self, cfg: LiteSamConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_encoder = TinyViT(cfg)
        self.prompt_encoder = PromptEncoder(cfg.prompt_dim, cfg.embedding_size, cfg.img_size, cfg.mask_in_chans)
        self.mask_decoder = MaskDecoder(
            cfg.prompt_dim,
            TwoWayTransformer(cfg.decoder_depth, cfg.prompt_dim, cfg.decoder_heads, cfg.decoder_mlp_dim),
            cfg.num_multimask_outputs,
            cfg.iou_head_depth,
            cfg.iou_head_hidden_dim,
        )

    def encode(self, image: Tensor) -> Tensor:
        """(B, 3, S, S) preprocessed image -> (B, C, E, E) embedding."""
        return self.image_encoder(image)

    def decode(self, embedding: Tensor, point_coords: Tensor, point_labels: Tensor,
               multimask_output: bool | None = False) -> tuple[Tensor, Tensor]:
        """embedding (B, C, E, E), point_coords (B, N, 2) input pixels, point_labels (B, N) float
        (SAM ONNX convention, boxes as corners 2/3, padding -1) -> (low-res logits (B, M, S, S), iou (B, M))."""
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        dense = self.prompt_encoder.dense_embeddings(sparse.shape[0])
        return self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)

    def forward(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Training entry point (MedSAM-Lite style): image (B, 3, S, S), boxes (B, 4) xyxy in input pixels
        -> (low-res logits (B, 1, S, S), iou (B, 1))."""
        coords, labels = boxes_to_points(boxes)
        return self.decode(self.encode(image), coords, labels)


def build_lite_sam(cfg: LiteSamConfig = LiteSamConfig()) -> LiteSam:
    return LiteSam(cfg)


# --------------------------------------------------------------------------------------------------
# weights I/O


def _one_line(exc: BaseException) -> str:
    return one_line(exc, 300) or type(exc).__name__


def _check_state(model: nn.Module, state: Mapping[str, object], source: Path) -> dict[str, Tensor]:
    """Strict key / shape comparison; raises a one-line ValueError."""
    expected = model.state_dict()
    bad_type = [k for k, v in state.items() if not isinstance(v, Tensor)]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        k for k in set(expected) & set(state)
        if isinstance(state[k], Tensor) and tuple(state[k].shape) != tuple(expected[k].shape)  # type: ignore[union-attr]
    )
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                       ("non-tensor", bad_type)):
        if keys:
            problems.append(f"{len(keys)} {what} key(s) (e.g. {', '.join(keys[:3])})")
    if problems:
        raise ValueError(f"{source}: state dict does not match LiteSam config: {'; '.join(problems)}")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _atomic_save(tensors: dict[str, Tensor], out: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _metadata(model: LiteSam, **extra: str) -> dict[str, str]:
    return {"format": "pt", "model": "lite_sam", "config": json.dumps(asdict(model.cfg)), **extra}


def save_lite_sam(model: LiteSam, out: Path) -> Path:
    """Write the model's state dict as safetensors (atomic replace)."""
    return _atomic_save(dict(model.state_dict()), Path(out), _metadata(model))


def convert_checkpoint(pth: Path, out: Path, cfg: LiteSamConfig = LiteSamConfig()) -> Path:
    """Torch checkpoint (e.g. lite_medsam.pth) -> safetensors, after a strict key/shape check."""
    pth = Path(pth)
    if not pth.is_file():
        raise FileNotFoundError(f"checkpoint not found: {pth}")
    try:
        obj = torch.load(pth, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip failure means a bad file
        raise ValueError(f"{pth}: cannot load torch checkpoint: {_one_line(exc)}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{pth}: checkpoint is a {type(obj).__name__}, expected a state dict")
    model = build_lite_sam(cfg)
    state = _check_state(model, obj, pth)
    model.load_state_dict(state, strict=True)  # also validates dtype conversions
    return _atomic_save(dict(model.state_dict()), Path(out), _metadata(model, source=pth.name))


def load_lite_sam(weights: Path, cfg: LiteSamConfig = LiteSamConfig()) -> LiteSam:
    """safetensors -> LiteSam (eval mode, CPU).  FileNotFoundError if absent, ValueError if unreadable/mismatched."""
    from safetensors.torch import load_file

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"LiteSam weights not found: {weights}")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several error types for corrupt files
        raise ValueError(f"{weights}: cannot read safetensors: {_one_line(exc)}") from None
    model = build_lite_sam(cfg)
    model.load_state_dict(_check_state(model, state, weights), strict=True)
    return model.eval()
