"""LENS (lens.txt §3): Qwen2.5-VL + context queries + connector -> one SAM2 sparse prompt -> mask.

The one model definition that the `lens` pipeline, `training/` and `export/` import. Submodules:

* ``mllm``: transformers' ``Qwen2_5_VLForConditionalGeneration`` (the release's ``visual.*`` / ``model.*``);
* ``head``: :class:`~reasonseg.models.lens_head.LensHead` (``learnable_query``, ``connector``, ``conv_1d``,
  ``proj_to_sam``: eq. 2-4);
* ``sam``: transformers' ``Sam2VideoModel`` (the release's ``sam.*`` under Meta's names). The release stores a
  full SAM2 including the video-memory modules; we keep them, so every released tensor loads (0 unexpected) and
  the node's tracker follows the LENS mask between groundings with the checkpoint's own memory weights.

Checkpoints are read and written in the release's layout (``lens_official.md``): a flat Qwen2-VL-style
``config.json``, release key names, bf16 safetensors shards with an index, the processor files. The release has
no SAM2 field (always SAM 2.0 Hiera-L); a checkpoint with another SAM2 (a tiny test one, a Hiera-T student)
says so in ``sam2_config.json`` (transformers' ``Sam2VideoConfig``), which our ``save_pretrained`` always writes
and the authors' loader ignores.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reasonseg.core.errors import CheckpointError
from reasonseg.models.lens_head import LensHead, second_pass_position_ids
from reasonseg.models.lens_release import (
    QWEN_TEXT_FIELDS,
    QWEN_VISION_FIELDS,
    LensReleaseConfig,
    our_key_to_release,
    read_release_config,
    release_key_to_ours,
)
from reasonseg.models.mllm_sam import SHARD_BYTES, MllmSamModel, read_checked_configs
from reasonseg.models.sam2_keys import hf_to_original, original_to_hf
from reasonseg.models.weights import LoadReport, check_state, make_config, merge, resolve_checkpoint

log = logging.getLogger(__name__)

__all__ = ["LensModel", "LensCheckpointError", "sam2_hiera_l_config"]

ARCHITECTURE = "SAMR1ForConditionalGeneration_qwen2p5"  # the release's class name, kept for its loader
_HEAD_KEYS = ("learnable_query", "connector.", "conv_1d.", "proj_to_sam.")
_FIX = ("the config.json (Qwen dims, num_of_query, if_use_qwen_connector) or sam2_config.json (absent = SAM 2.0 "
        "Hiera-L, as released) does not describe these weights: use the config saved with them, or a complete "
        "LENS checkpoint (OuyBin/LENS*, or one our training/ wrote)")


class LensCheckpointError(CheckpointError):
    """A LENS checkpoint that does not fit the model its config describes: names the first keys and the fix."""


def sam2_hiera_l_config():
    """SAM 2.0 Hiera-L (Meta's ``sam2_hiera_l.yaml``), the SAM2 of every released LENS checkpoint."""
    from transformers import Sam2VideoConfig

    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=144, num_attention_heads=2,
                    blocks_per_stage=[2, 6, 36, 4], embed_dim_per_stage=[144, 288, 576, 1152],
                    num_attention_heads_per_stage=[2, 4, 8, 16], window_size_per_stage=[8, 4, 16, 8],
                    global_attention_blocks=[23, 33, 43], window_positional_embedding_background_size=[7, 7])
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone,
                  backbone_channel_list=[1152, 576, 288, 144])
    # SAM 2.0: no temporal encoding of object pointers, no occlusion embedding (both came with 2.1)
    return Sam2VideoConfig(vision_config=vision, enable_temporal_pos_encoding_for_object_pointers=False,
                           enable_occlusion_spatial_embedding=False)


class LensModel(MllmSamModel):
    # Stage 1 (eq. 5) trains queries + connector; stage 2 also the language model and SAM2's prompt side.
    OWN_GROUPS = (("queries", ("head.learnable_query",)),
                  ("connector", ("head.connector.", "head.conv_1d.", "head.proj_to_sam.")))

    def __init__(self, config: LensReleaseConfig, sam2_config: Any = None) -> None:
        from transformers import Qwen2_5_VLForConditionalGeneration, Sam2VideoModel

        super().__init__()
        self.config = config
        self.sam2_config = sam2_config if sam2_config is not None else sam2_hiera_l_config()
        self.mllm = Qwen2_5_VLForConditionalGeneration(config.qwen)
        self.head = LensHead(config.qwen.text_config.hidden_size, config.num_queries,
                             use_connector=config.use_connector,
                             prompt_dim=self.sam2_config.prompt_encoder_config.hidden_size)
        self.sam = Sam2VideoModel(self.sam2_config)

    @property
    def num_queries(self) -> int:
        return self.head.num_queries

    # -- the release's key layout ------------------------------------------------------------------
    def release_state_dict(self) -> dict[str, torch.Tensor]:
        """Our tensors under the release's names (what ``save_pretrained`` writes)."""
        out: dict[str, torch.Tensor] = {}
        for key, value in self.mllm.state_dict().items():
            if key == "lm_head.weight" and self.config.tie_word_embeddings:
                continue  # tied to the embeddings: the release stores no lm_head
            out[our_key_to_release(key)] = value
        out.update(self.head.state_dict())
        out.update({"sam." + k: v for k, v in hf_to_original(self.sam.state_dict()).items()})
        return out

    def load_release_state_dict(self, state: Mapping[str, torch.Tensor], *, strict: bool = True) -> LoadReport:
        """Release-named tensors -> this model. With ``strict``, any missing / unexpected / mismatched key raises
        :class:`LensCheckpointError` naming the first few keys and the fix."""
        mllm_sd, head_sd, sam_orig = {}, {}, {}
        for key, value in state.items():
            if key.startswith("sam."):
                sam_orig[key[4:]] = value
            elif key.startswith(_HEAD_KEYS):
                head_sd[key] = value
            else:
                mllm_sd[release_key_to_ours(key)] = value
        sam_sd = original_to_hf(sam_orig)
        tied = ("lm_head.weight",) if self.config.tie_word_embeddings else ()
        report = merge(check_state(self.mllm, mllm_sd, "mllm.", tied), check_state(self.head, head_sd, "head."),
                       check_state(self.sam, sam_sd, "sam."))
        if strict and not report.clean:
            raise LensCheckpointError(report.explain("LENS checkpoint", _FIX))
        self.load_parts(((self.mllm, mllm_sd), (self.head, head_sd), (self.sam, sam_sd)))
        if self.config.tie_word_embeddings:
            self.mllm.tie_weights()
        return report

    # -- files -------------------------------------------------------------------------------------
    @classmethod
    def from_base(cls, qwen_path: str | Path, sam2_path: str | Path, *, num_queries: int = 64,
                  use_connector: bool = True, dtype: torch.dtype | None = None, seed: int = 0) -> tuple[LensModel, Any]:
        """A fresh LENS from a Qwen2.5-VL and a SAM2 (`sam2_video`) checkpoint, what stage 1 starts from: both
        loaded as they are, the context module (queries, connector, conv_1d, proj_to_sam) newly initialised
        (seeded). Built on the meta device first, so a 3B language model is never allocated twice.
        Returns (model, processor)."""
        processor, base, sam = cls.load_bases(qwen_path, sam2_path, dtype)
        config = LensReleaseConfig(base.config, num_queries, use_connector, bool(base.config.tie_word_embeddings))
        with torch.device("meta"):
            model = cls(config, sam.config)
        torch.manual_seed(seed)
        model.mllm, model.sam = base, sam
        model.head = LensHead(base.config.text_config.hidden_size, num_queries, use_connector=use_connector,
                              prompt_dim=sam.config.prompt_encoder_config.hidden_size)
        model.to(dtype or torch.float32).sam.float()  # one run dtype, SAM2 float32 (as CoraModel.from_base)
        meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if meta:  # a module added to LensModel must be replaced above too
            raise RuntimeError(f"LensModel.from_base left tensors unbuilt: {meta[:3]}")
        return model.eval(), processor

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype | None = None,
                        num_queries: int = 0) -> LensModel:
        """A local dir (or an HF id already in the local cache) in the release's layout. ``num_queries``: used
        only when the config has no ``num_of_query`` (0 = the release's 64)."""
        root = resolve_checkpoint(path)
        what = f"LENS checkpoint {root}"
        raw, sam2, shapes = read_checked_configs(root, what, _FIX)
        config = make_config(lambda: read_release_config(raw, default_queries=num_queries or 64), what, _FIX)
        if num_queries and "num_of_query" in raw and int(raw["num_of_query"]) != num_queries:
            log.warning("lens.num_queries=%d ignored: the checkpoint was trained with num_of_query=%d",
                        num_queries, config.num_queries)
        return cls.load_checked(root, raw, shapes, dtype, cls.load_release_state_dict, what, _FIX, config, sam2)

    def save_pretrained(self, out_dir: str | Path, *, dtype: torch.dtype = torch.bfloat16,
                        processor: Any = None, max_shard_bytes: int = SHARD_BYTES) -> Path:
        """The release's layout: flat config.json, release-named safetensors (sharded with an index when
        large), sam2_config.json, and the processor files when given."""
        return self.write_checkpoint(out_dir, self.release_state_dict(), self.release_config(dtype), dtype, processor,
                                     max_shard_bytes)

    def release_config(self, dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
        """The flat ``config.json`` of the release (lens_official.md)."""
        q = self.config.qwen
        text, vision = q.text_config.to_dict(), q.vision_config.to_dict()
        raw: dict[str, Any] = {"architectures": [ARCHITECTURE], "model_type": "qwen2_vl",
                               "num_of_query": self.num_queries, "if_use_qwen_connector": self.config.use_connector,
                               "tie_word_embeddings": self.config.tie_word_embeddings,
                               "torch_dtype": str(dtype).removeprefix("torch.")}
        raw.update({k: text[k] for k in QWEN_TEXT_FIELDS if k in text})
        rope = text.get("rope_parameters") or {}  # transformers 5.x keeps 4.x's rope_theta + rope_scaling here
        if "rope_theta" in rope:
            raw["rope_theta"] = rope["rope_theta"]
        if "mrope_section" in rope:
            raw["rope_scaling"] = {"type": "mrope", "mrope_section": list(rope["mrope_section"])}
        raw.update({k: getattr(q, k) for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                               "vision_end_token_id")})
        raw["vision_config"] = {"model_type": "qwen2_vl", **{k: vision[k] for k in QWEN_VISION_FIELDS if k in vision}}
        return raw

    # -- forward -----------------------------------------------------------------------------------
    def query_states(self, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                     image_grid_thw: torch.Tensor) -> torch.Tensor:
        """The second forward pass (eq. 2): prompt + generated answer (token ids, image placeholders filled with
        the image's features) + the M queries -> [B, M, D] last hidden states (after the final norm) of the queries.

        As in the release, the image features are put into the embeddings here and the language model gets
        ``inputs_embeds`` with the 1-D positions of :func:`second_pass_position_ids`, never ``pixel_values``."""
        core = self.mllm.model
        embeds = self.image_features_into(sequences, core.get_input_embeddings()(sequences), pixel_values,
                                          image_grid_thw)
        embeds, mask = self.head.append_queries(embeds, attention_mask)
        hidden = core(inputs_embeds=embeds, attention_mask=mask,
                      position_ids=second_pass_position_ids(mask)).last_hidden_state
        return hidden[:, -self.num_queries:]

    def prompt_token(self, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                     image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Eq. 2-4: [B, 1, 256] (the SAM2 prompt width), SAM2's one sparse prompt embedding (the dense one is its no_mask_embed)."""
        return self.head(self.query_states(sequences, attention_mask, pixel_values, image_grid_thw))


    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                image_grid_thw: torch.Tensor, sam_pixels: torch.Tensor) -> torch.Tensor:
        """Prompt + answer ids, the Qwen image tensors and SAM2's pixels -> [B, h, w] low-res mask logits."""
        token = self.prompt_token(sequences, attention_mask, pixel_values, image_grid_thw)
        return self.mask_logits(token, self.image_embeddings(sam_pixels))
