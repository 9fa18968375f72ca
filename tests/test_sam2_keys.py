"""SAM2 names between Meta's module tree (LENS checkpoints' `sam.*`) and transformers' Sam2VideoModel (issue 9):
checked against Meta's own `sam2` package: every key maps, both ways bit-exactly, and Meta's model and our
segmenter with the converted weights give the same mask logits, for a box and for a LENS-style raw token."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from reasonseg.models.sam2_keys import hf_to_original, original_key_to_hf, original_to_hf
from reasonseg.core.prompt import Prompt


@pytest.fixture(scope="module")
def meta_sam2():
    """Meta's SAM 2.0 Hiera-T (the release's module tree; LENS uses the same tree at Hiera-L), random weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hydra/omegaconf deprecation noise
        from sam2.build_sam import build_sam2

        torch.manual_seed(0)
        model = build_sam2("sam2_hiera_t.yaml", ckpt_path=None, device="cpu", mode="eval")
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised tokens and biases would hide a swapped name
            p.add_(torch.randn_like(p) * 0.02)
        # object present: our segmenter blanks the mask when SAM2's object-score head says absent, Meta's
        # image predictor does not, so a random "absent" would compare a blank with logits
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    return model


@pytest.fixture(scope="module")
def hf_dir(meta_sam2, tmp_path_factory):
    from transformers import Sam2VideoConfig, Sam2VideoModel

    # SAM 2.0: no temporal encoding of object pointers, no occlusion embedding (both new in 2.1)
    config = Sam2VideoConfig(enable_temporal_pos_encoding_for_object_pointers=False,
                             enable_occlusion_spatial_embedding=False)
    model = Sam2VideoModel(config)
    state = original_to_hf(meta_sam2.state_dict())
    result = model.load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result
    out = tmp_path_factory.mktemp("sam2_from_meta")
    model.save_pretrained(out)
    return out


def test_every_key_maps_and_round_trips(meta_sam2):
    from transformers import Sam2VideoConfig, Sam2VideoModel

    original = meta_sam2.state_dict()
    hf = original_to_hf(original)
    want = Sam2VideoModel(Sam2VideoConfig(enable_temporal_pos_encoding_for_object_pointers=False,
                                          enable_occlusion_spatial_embedding=False)).state_dict()
    assert set(hf) == set(want)
    assert [k for k in hf if hf[k].shape != want[k].shape] == []
    back = hf_to_original(hf)
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    again = original_to_hf(back)
    assert set(again) == set(hf) and all(torch.equal(again[k], hf[k]) for k in hf)


def test_key_rules_on_examples():
    assert original_key_to_hf("image_encoder.trunk.blocks.3.mlp.layers.0.weight") == \
        "vision_encoder.backbone.blocks.3.mlp.proj_in.weight"
    assert original_key_to_hf("sam_mask_decoder.iou_prediction_head.layers.1.bias") == \
        "mask_decoder.iou_prediction_head.layers.0.bias"
    assert original_key_to_hf("memory_encoder.mask_downsampler.encoder.12.weight", downsampler_final=12) == \
        "memory_encoder.mask_downsampler.final_conv.weight"
    assert original_key_to_hf("memory_encoder.mask_downsampler.encoder.4.bias") == \
        "memory_encoder.mask_downsampler.layers.1.layer_norm.bias"
    with pytest.raises(KeyError, match="activation"):
        original_key_to_hf("memory_encoder.mask_downsampler.encoder.5.weight")
    with pytest.raises(KeyError, match="point_embeddings"):
        original_to_hf({"sam_prompt_encoder.point_embeddings.1.weight": torch.zeros(1, 4)})


def test_meta_and_our_segmenter_give_the_same_mask_logits(meta_sam2, hf_dir):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    seg = Sam2Segmenter(str(hf_dir), device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)  # no resize either side
    predictor = SAM2ImagePredictor(meta_sam2)
    predictor.set_image(image)
    emb = seg.encode(image)

    box = (200.0, 300.0, 700.0, 800.0)
    _, _, low = predictor.predict(box=np.array(box), multimask_output=False, return_logits=True)
    ours = seg.predict(emb, Prompt(box=box))
    assert np.abs(low[0] - ours.logits).max() <= 1e-5

    # LENS: one raw sparse token from proj_to_sam, SAM2's no_mask_embed as the dense prompt, single mask
    token = torch.randn(1, 1, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sparse, dense = meta_sam2.sam_prompt_encoder(points=None, boxes=None, masks=None)
        feats = predictor._features
        meta_low, *_ = meta_sam2.sam_mask_decoder(
            image_embeddings=feats["image_embed"], image_pe=meta_sam2.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=torch.cat([sparse, token], dim=1), dense_prompt_embeddings=dense,
            multimask_output=False, repeat_image=False, high_res_features=feats["high_res_feats"])
    ours = seg.predict(emb, Prompt(sparse_embeddings=token[0].numpy()))
    assert np.abs(meta_low[0, 0].numpy() - ours.logits).max() <= 1e-5
