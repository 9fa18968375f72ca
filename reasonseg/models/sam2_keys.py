"""SAM2 parameter names: Meta's original module tree (as in LENS checkpoints' ``sam.*``) <-> transformers' Sam2.

LENS's release stores a full SAM2 under Meta's names (``image_encoder.trunk.blocks.3.mlp.layers.0.weight``);
our segmenter is transformers' ``Sam2VideoModel`` (``vision_encoder.backbone.blocks.3.mlp.proj_in.weight``).
The renames follow transformers' own SAM2 conversion (``convert_sam2_to_hf.py``) and go both ways, so a
LENS checkpoint loads into our SAM2 and ``save_pretrained`` writes it back in the release's layout:

* ``original_to_hf``: renames, stacks the four ``point_embeddings.{i}`` [1, 256] into ``point_embed`` [4, 256],
  and copies the prompt encoder's Gaussian matrix to ``shared_image_embedding`` (HF keeps both);
* ``hf_to_original``: the inverse; ``original_to_hf(hf_to_original(sd)) == sd`` key for key, bit for bit.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["original_to_hf", "hf_to_original", "original_key_to_hf", "hf_key_to_original"]

# (original, hf) regex pairs.  The first pair whose pattern matches a key rewrites it, in both directions
# (hf -> original uses each pair's inverse, built below), so specific pairs come before general ones.
_RULES: tuple[tuple[str, str], ...] = (
    # image encoder
    (r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.0\.", r"vision_encoder.backbone.blocks.\1.mlp.proj_in."),
    (r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.1\.", r"vision_encoder.backbone.blocks.\1.mlp.proj_out."),
    (r"^image_encoder\.trunk\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.backbone.blocks.\1.layer_norm\2."),
    (r"^image_encoder\.trunk\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    # prompt encoder (point_embeddings.{i} are stacked, see original_to_hf)
    (r"^sam_prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"^sam_prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    # mask decoder
    (r"^sam_mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^sam_mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^sam_mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (r"^sam_mask_decoder\.(iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+)\.layers\.0\.",
     r"mask_decoder.\1.proj_in."),
    (r"^sam_mask_decoder\.(iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+)\.layers\.1\.",
     r"mask_decoder.\1.layers.0."),
    (r"^sam_mask_decoder\.(iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+)\.layers\.2\.",
     r"mask_decoder.\1.proj_out."),
    (r"^sam_mask_decoder\.transformer\.layers\.(\d+)\.mlp\.layers\.0\.", r"mask_decoder.transformer.layers.\1.mlp.proj_in."),
    (r"^sam_mask_decoder\.transformer\.layers\.(\d+)\.mlp\.layers\.1\.", r"mask_decoder.transformer.layers.\1.mlp.proj_out."),
    (r"^sam_mask_decoder\.transformer\.layers\.(\d+)\.(\w+)\.out_proj\.", r"mask_decoder.transformer.layers.\1.\2.o_proj."),
    (r"^sam_mask_decoder\.transformer\.layers\.(\d+)\.norm(\d)\.", r"mask_decoder.transformer.layers.\1.layer_norm\2."),
    (r"^sam_mask_decoder\.transformer\.final_attn_token_to_image\.out_proj\.",
     "mask_decoder.transformer.final_attn_token_to_image.o_proj."),
    (r"^sam_mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    # memory attention (its other names are shared)
    (r"^memory_attention\.layers\.(\d+)\.(\w+)\.out_proj\.", r"memory_attention.layers.\1.\2.o_proj."),
    (r"^memory_attention\.layers\.(\d+)\.norm(\d)\.", r"memory_attention.layers.\1.layer_norm\2."),
    (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    # memory encoder (mask_downsampler.encoder.{i} is renumbered, see _downsampler_*)
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.dwconv\.", r"memory_encoder.memory_fuser.layers.\1.depthwise_conv."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.pwconv(\d)\.", r"memory_encoder.memory_fuser.layers.\1.pointwise_conv\2."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.norm\.", r"memory_encoder.memory_fuser.layers.\1.layer_norm."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.gamma$", r"memory_encoder.memory_fuser.layers.\1.scale"),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    # top-level parameters and heads
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"^obj_ptr_proj\.layers\.0\.", "object_pointer_proj.proj_in."),
    (r"^obj_ptr_proj\.layers\.1\.", "object_pointer_proj.layers.0."),
    (r"^obj_ptr_proj\.layers\.2\.", "object_pointer_proj.proj_out."),
)
_GROUP = re.compile(r"\([^()]*\)")


def _inverse_rule(orig: str, hf: str) -> tuple[re.Pattern[str], str]:
    """(original regex, hf replacement) -> (hf regex, original replacement): each back-reference in the replacement
    becomes the original's matching capture group, and each group in the original a back-reference."""
    groups = _GROUP.findall(orig)
    refs = [int(r) for r in re.findall(r"\\(\d)", hf)]
    if refs != list(range(1, len(groups) + 1)):
        raise ValueError(f"rule {orig!r} -> {hf!r}: back-references must use every group once, in order")
    pattern = "".join(groups[int(p[1]) - 1] if re.fullmatch(r"\\\d", p) else re.escape(p)
                      for p in re.split(r"(\\\d)", hf) if p)
    replacement = orig
    for n, g in enumerate(groups, 1):
        replacement = replacement.replace(g, f"\\{n}", 1)
    replacement = replacement.removeprefix("^").removesuffix("$").replace("\\.", ".")
    return re.compile("^" + pattern + ("$" if orig.endswith("$") else "")), replacement


_FORWARD = tuple((re.compile(a), b) for a, b in _RULES)
_BACKWARD = tuple(_inverse_rule(a, b) for a, b in _RULES)
_POINT = re.compile(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight")
_POINT_HF = "prompt_encoder.point_embed.weight"
_GAUSSIAN_HF = "prompt_encoder.shared_embedding.positional_embedding"
_SHARED_HF = "shared_image_embedding.positional_embedding"
# Meta's mask downsampler is one Sequential of (conv, LayerNorm2d, GELU) x n + a final 1x1 conv;
# transformers names the blocks layers.{k}.conv / layers.{k}.layer_norm and the last conv final_conv.
_DOWN = re.compile(r"memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.+)")
_DOWN_HF = re.compile(r"memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|final_conv)\.(.+)")


def _rewrite(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, repl in rules:
        if pattern.match(key):
            return pattern.sub(repl, key, count=1)
    return key


def original_key_to_hf(key: str, downsampler_final: int | None = None) -> str:
    m = _DOWN.fullmatch(key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i == downsampler_final:
            return f"memory_encoder.mask_downsampler.final_conv.{rest}"
        if i % 3 == 2:
            raise KeyError(f"{key}: index {i} is an activation in Meta's mask downsampler, it has no parameters")
        return f"memory_encoder.mask_downsampler.layers.{i // 3}.{'conv' if i % 3 == 0 else 'layer_norm'}.{rest}"
    return _rewrite(key, _FORWARD)


def hf_key_to_original(key: str, downsampler_layers: int = 0) -> str:
    m = _DOWN_HF.fullmatch(key)
    if m:
        k, part, rest = m.groups()
        i = 3 * downsampler_layers if k is None else 3 * int(k) + (0 if part == "conv" else 1)
        return f"memory_encoder.mask_downsampler.encoder.{i}.{rest}"
    return _rewrite(key, _BACKWARD)


def original_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta-named SAM2 tensors (without LENS's ``sam.`` prefix) -> transformers names."""
    down = [int(m.group(1)) for m in map(_DOWN.fullmatch, state) if m]
    final = max(down) if down else None
    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        m = _POINT.fullmatch(key)
        if m:
            points[int(m.group(1))] = value
        else:
            out[original_key_to_hf(key, final)] = value
    if points:
        if sorted(points) != list(range(len(points))):
            raise KeyError(f"sam_prompt_encoder.point_embeddings indices {sorted(points)} are not 0..{len(points) - 1}")
        out[_POINT_HF] = torch.cat([points[i] for i in range(len(points))], dim=0)
    if _GAUSSIAN_HF in out:
        out[_SHARED_HF] = out[_GAUSSIAN_HF]  # transformers keeps a second copy for the image-wide encoding
    return out


def hf_to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers-named SAM2 tensors -> Meta's names (LENS's ``sam.*`` without the prefix)."""
    layers = {int(m.group(1)) for m in map(_DOWN_HF.fullmatch, state) if m and m.group(1) is not None}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == _SHARED_HF:
            continue  # the copy original_to_hf made
        if key == _POINT_HF:
            for i in range(value.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = value[i:i + 1].clone()
        else:
            out[hf_key_to_original(key, len(layers))] = value
    return out
