"""TinyViT, LiteMedSAM's image encoder (1x1 patch embedding, no stem downsampling).

Module names follow the original TinyViT layout so that state-dict keys match ``lite_medsam.pth``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reasonseg.models.lite_sam.configuration import LiteSamConfig
from reasonseg.models.lite_sam.layers import LayerNorm2d


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
