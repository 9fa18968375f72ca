"""Example inputs of the SAM2 graphs, shaped for a given model: tracing the exporters and their parity checks."""
from __future__ import annotations

import numpy as np

from reasonseg.segmenters.sam2.graphs import DECODER_INPUTS, sam2_image_size


def example_decoder_inputs(model, n_points: int = 2, n_raw: int = 1, seed: int = 0,
                           size: int | None = None) -> dict[str, np.ndarray]:
    """Random decoder inputs of the right shapes for `model` (tracing and parity checks); `size`: the input side
    where the config has no `image_size` (SAM 3's tracker keeps it in its vision config)."""
    rng = np.random.default_rng(seed)
    s = size or sam2_image_size(model.config)
    sizes = model.backbone_feature_sizes if hasattr(model, "backbone_feature_sizes") else None
    c = model.prompt_encoder.no_mask_embed.weight.shape[-1]
    chans = [model.mask_decoder.upscale_conv2.out_channels, model.mask_decoder.upscale_conv1.out_channels, c]
    feats = [rng.standard_normal((1, ch, *hw)).astype(np.float32) for ch, hw in zip(chans, sizes)]
    mask_hw = tuple(model.prompt_encoder.mask_input_size)
    return dict(zip(DECODER_INPUTS, (
        *feats,
        (rng.random((1, n_points, 2)) * s).astype(np.float32),
        rng.choice(np.array([0, 1, 2, 3]), (1, n_points)).astype(np.int64),
        rng.standard_normal((1, n_raw, c)).astype(np.float32),
        rng.standard_normal((1, 1, *mask_hw)).astype(np.float32),
        np.array([1.0], np.float32), np.array([0.0], np.float32))))
