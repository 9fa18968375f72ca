"""SAM's prompt encoder: points and box corners (and, for training compatibility, masks) -> prompt embeddings.

Prompt convention (the SAM ONNX convention): points in *model input* pixel coordinates (``[0, img_size)``)
with labels 1 = positive, 0 = negative, 2 / 3 = top-left / bottom-right box corner and -1 = padding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from reasonseg.models.lite_sam.layers import LayerNorm2d


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
