"""The LENS release's flat config and Qwen key names (issue 9): a release-style config builds the same
Qwen2.5-VL as its fields say, and release-named weights load with 0 missing / 0 unexpected keys."""
from __future__ import annotations

import pytest
import torch

from reasonseg.models.lens_release import our_key_to_release, read_release_config, release_key_to_ours

# lens_official.md: flat qwen2_vl config, text fields at the top level, Qwen2.5 vision fields (tiny dims here)
RELEASE_CONFIG = {
    "architectures": ["SAMR1ForConditionalGeneration_qwen2p5"], "model_type": "qwen2_vl",
    "num_of_query": 8, "if_use_qwen_connector": True, "tie_word_embeddings": True,
    "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "bos_token_id": 0, "eos_token_id": 1,
    "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_config": {"model_type": "qwen2_vl", "depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                      "in_chans": 3, "out_hidden_size": 32, "patch_size": 14, "spatial_merge_size": 2,
                      "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [1],
                      "tokens_per_second": 2, "hidden_act": "silu"},
}


def test_release_config_builds_the_qwen25_vl_its_fields_describe():
    cfg = read_release_config(RELEASE_CONFIG)
    assert (cfg.num_queries, cfg.use_connector, cfg.tie_word_embeddings) == (8, True, True)
    text, vision = cfg.qwen.text_config, cfg.qwen.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_key_value_heads, text.vocab_size) == (32, 2, 2, 512)
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size, vision.fullatt_block_indexes) == (2, 16, 32, [1])
    assert cfg.qwen.image_token_id == 151655
    with pytest.raises(ValueError, match="missing"):
        read_release_config({"hidden_size": 32})


def test_release_named_weights_load_with_no_missing_or_unexpected_keys():
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    ours = Qwen2_5_VLForConditionalGeneration(read_release_config(RELEASE_CONFIG).qwen)
    release = {our_key_to_release(k): v for k, v in ours.state_dict().items() if k != "lm_head.weight"}  # tied
    assert all(k.startswith(("visual.", "model.")) and not k.startswith("model.visual.") for k in release)
    assert not any(k.startswith("model.language_model.") for k in release)
    torch.manual_seed(1)
    fresh = Qwen2_5_VLForConditionalGeneration(read_release_config(RELEASE_CONFIG).qwen)
    result = fresh.load_state_dict({release_key_to_ours(k): v for k, v in release.items()}, strict=False)
    assert result.unexpected_keys == [] and result.missing_keys == ["lm_head.weight"]
    fresh.tie_weights()
    assert fresh.lm_head.weight.data_ptr() == fresh.get_input_embeddings().weight.data_ptr()
    for k, v in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
