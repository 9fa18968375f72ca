"""The full LiteSAM: TinyViT image encoder + SAM prompt encoder + SAM mask decoder."""

from __future__ import annotations

from torch import Tensor, nn

from reasonseg.models.lite_sam.configuration import LiteSamConfig
from reasonseg.models.lite_sam.image_encoder import TinyViT
from reasonseg.models.lite_sam.mask_decoder import MaskDecoder, TwoWayTransformer
from reasonseg.models.lite_sam.prompt_encoder import PromptEncoder, boxes_to_points


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
