"""LiteSAM's architecture sizes (defaults: LiteMedSAM)."""

from __future__ import annotations

from dataclasses import dataclass


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
