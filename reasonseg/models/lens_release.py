"""The LENS release's checkpoint layout (lens_official.md): its flat config and its Qwen parameter names.

The release saves a flat Qwen2-VL-style ``config.json`` (``model_type: qwen2_vl``, text fields at the top level,
``rope_scaling`` with ``mrope_section``, a ``vision_config`` tagged ``qwen2_vl`` but holding Qwen2.5 fields,
plus ``num_of_query`` / ``if_use_qwen_connector``) and transformers-4.51 key names (``visual.*``, ``model.*``,
no ``lm_head``: tied).  transformers 5.x reads such a config as Qwen2-VL; we build a ``Qwen2_5_VLConfig`` from
its own fields instead (never from hard-coded 3B dims, so smaller checkpoints load too), and rename keys.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LensReleaseConfig", "read_release_config", "release_key_to_ours", "our_key_to_release",
           "QWEN_TEXT_FIELDS", "QWEN_VISION_FIELDS"]

QWEN_TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range",
                    "rms_norm_eps", "use_sliding_window", "sliding_window", "max_window_layers",
                    "attention_dropout", "rope_theta", "rope_scaling", "bos_token_id", "eos_token_id")
QWEN_VISION_FIELDS = ("depth", "hidden_size", "hidden_act", "intermediate_size", "num_heads", "in_channels",
                      "patch_size", "spatial_merge_size", "temporal_patch_size", "tokens_per_second", "window_size",
                      "out_hidden_size", "fullatt_block_indexes", "initializer_range")
_TOKEN_IDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class LensReleaseConfig:
    qwen: Any                   # transformers.Qwen2_5_VLConfig
    num_queries: int            # the release's num_of_query
    use_connector: bool         # the release's if_use_qwen_connector
    tie_word_embeddings: bool


def read_release_config(raw: Mapping[str, Any], *, default_queries: int = 64) -> LensReleaseConfig:
    """A LENS release ``config.json`` (as a dict) -> our config objects; a clear error names missing fields."""
    from transformers import Qwen2_5_VLConfig

    missing = [k for k in _REQUIRED if k not in raw] + ([] if isinstance(raw.get("vision_config"), Mapping)
                                                        else ["vision_config"])
    if missing:
        raise ValueError(f"not a LENS/Qwen2.5-VL release config: missing {missing}")
    text = {k: raw[k] for k in QWEN_TEXT_FIELDS if k in raw}
    vision_raw = dict(raw["vision_config"])
    if "in_chans" in vision_raw and "in_channels" not in vision_raw:  # Qwen2.5-VL's original name
        vision_raw["in_channels"] = vision_raw["in_chans"]
    vision = {k: vision_raw[k] for k in QWEN_VISION_FIELDS if k in vision_raw}
    tie = bool(raw.get("tie_word_embeddings", True))
    qwen = Qwen2_5_VLConfig(text_config={**text, "tie_word_embeddings": tie}, vision_config=vision,
                            tie_word_embeddings=tie, **{k: raw[k] for k in _TOKEN_IDS if k in raw})
    queries = int(raw.get("num_of_query") or default_queries)
    return LensReleaseConfig(qwen, queries, bool(raw.get("if_use_qwen_connector", True)), tie)


def release_key_to_ours(key: str) -> str:
    """Qwen part: ``visual.*`` -> ``model.visual.*``, other ``model.*`` -> ``model.language_model.*`` (the
    renames transformers 5.x applies to Qwen-VL checkpoints by class name, which a subclass does not get)."""
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model."):
        return "model.language_model." + key[len("model."):]
    return key


def our_key_to_release(key: str) -> str:
    if key.startswith("model.visual."):
        return key[len("model."):]
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    return key
