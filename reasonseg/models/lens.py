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

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from .lens_head import LensHead, second_pass_position_ids
from .lens_release import (QWEN_TEXT_FIELDS, QWEN_VISION_FIELDS, LensReleaseConfig, our_key_to_release,
                           read_release_config, release_key_to_ours)
from .sam2_keys import hf_to_original, original_to_hf

log = logging.getLogger(__name__)

__all__ = ["LensModel", "LensCheckpointError", "sam2_hiera_l_config", "SAM2_CONFIG_FILE", "PARAMETER_GROUPS"]

SAM2_CONFIG_FILE = "sam2_config.json"
ARCHITECTURE = "SAMR1ForConditionalGeneration_qwen2p5"  # the release's class name, kept for its loader
_HEAD_KEYS = ("learnable_query", "connector.", "conv_1d.", "proj_to_sam.")
_SHARD_BYTES = 5 * 1024 ** 3  # transformers' default max shard size
# Parameter groups by our module path prefix, in match order; training selects them by name.
PARAMETER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("queries", ("head.learnable_query",)),
    ("connector", ("head.connector.", "head.conv_1d.", "head.proj_to_sam.")),
    ("mllm_vision", ("mllm.model.visual.",)),
    ("mllm_language", ("mllm.model.language_model.", "mllm.lm_head.")),
    ("sam_image_encoder", ("sam.vision_encoder.",)),
    ("sam_prompt_encoder", ("sam.prompt_encoder.", "sam.shared_image_embedding.")),
    ("sam_mask_decoder", ("sam.mask_decoder.",)),
    ("sam_memory", ("sam.",)),  # memory attention/encoder, object pointers, no-memory embeddings
)


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


@dataclass(frozen=True)
class LoadReport:
    missing: tuple[str, ...]      # ours, not in the file (lm_head when tied is not counted)
    unexpected: tuple[str, ...]   # in the file, not ours (release names)
    mismatched: tuple[str, ...]   # "name: file shape vs model shape"


def _first(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


class LensModel(nn.Module):
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
        missing, unexpected, mismatched = [], [], []
        for prefix, module, sd in (("mllm.", self.mllm, mllm_sd), ("head.", self.head, head_sd),
                                   ("sam.", self.sam, sam_sd)):
            own = module.state_dict()
            for k, v in sd.items():
                if k not in own:
                    unexpected.append(prefix + k)
                elif tuple(v.shape) != tuple(own[k].shape):
                    mismatched.append(f"{prefix}{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model")
            tied = {"lm_head.weight"} if module is self.mllm and self.config.tie_word_embeddings else set()
            missing += [prefix + k for k in own if k not in sd and k not in tied]
        report = LoadReport(tuple(missing), tuple(unexpected), tuple(mismatched))
        if strict and (missing or unexpected or mismatched):
            raise LensCheckpointError(self._explain(report))
        with torch.no_grad():
            for module, sd in ((self.mllm, mllm_sd), (self.head, head_sd), (self.sam, sam_sd)):
                own = module.state_dict()
                module.load_state_dict({k: v for k, v in sd.items() if k in own and v.shape == own[k].shape},
                                       strict=False)
        if self.config.tie_word_embeddings:
            self.mllm.tie_weights()
        return report

    def _explain(self, r: LoadReport) -> str:
        parts = []
        if r.mismatched:
            parts.append(f"{len(r.mismatched)} shape mismatch(es): {_first(r.mismatched, 3)}")
        if r.missing:
            parts.append(f"{len(r.missing)} missing key(s): {_first(r.missing)}")
        if r.unexpected:
            parts.append(f"{len(r.unexpected)} unexpected key(s): {_first(r.unexpected)}")
        fix = ("the config.json (Qwen dims, num_of_query, if_use_qwen_connector) or sam2_config.json (absent = "
               "SAM 2.0 Hiera-L, as released) does not describe these weights: use the config that was saved with "
               "them, or a complete LENS checkpoint (OuyBin/LENS*, or one our training/ wrote)")
        return "LENS checkpoint does not fit its config: " + "; ".join(parts) + ". Fix: " + fix

    # -- files -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype | None = None,
                        num_queries: int = 0) -> LensModel:
        """A local dir (or an HF id already in the local cache) in the release's layout. ``num_queries``: used
        only when the config has no ``num_of_query`` (0 = the release's 64)."""
        from safetensors.torch import load_file
        from transformers import Sam2VideoConfig
        from transformers.initialization import no_init_weights

        root = resolve_checkpoint(path)
        raw = json.loads((root / "config.json").read_text())
        config = read_release_config(raw, default_queries=num_queries or 64)
        if num_queries and "num_of_query" in raw and int(raw["num_of_query"]) != num_queries:
            log.warning("lens.num_queries=%d ignored: the checkpoint was trained with num_of_query=%d",
                        num_queries, config.num_queries)
        sam_file = root / SAM2_CONFIG_FILE
        sam2 = Sam2VideoConfig(**json.loads(sam_file.read_text())) if sam_file.is_file() else None
        state: dict[str, torch.Tensor] = {}
        for shard in _weight_files(root):
            state.update(load_file(str(shard)))  # safetensors: no code runs on load
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype or torch.float32)  # built in the run dtype: no float32 copy of a 3B model
        try:
            with no_init_weights():  # every tensor is overwritten from the file
                model = cls(config, sam2)
        finally:
            torch.set_default_dtype(previous)
        model.sam.float()  # SAM2 stays float32: masks are thresholded logits, and it is small next to the MLLM
        model.load_release_state_dict(state)
        model.eval()
        model.source = str(path)
        return model

    def save_pretrained(self, out_dir: str | Path, *, dtype: torch.dtype = torch.bfloat16,
                        processor: Any = None, max_shard_bytes: int = _SHARD_BYTES) -> Path:
        """The release's layout: flat config.json, release-named safetensors (sharded with an index when
        large), sam2_config.json, and the processor files when given."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in self.release_state_dict().items()}
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for k, v in state.items():
            n = v.numel() * v.element_size()
            if shards[-1] and size + n > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][k] = v
            size += n
        for stale in list(out.glob("model*.safetensors")) + list(out.glob("model.safetensors.index.json")):
            stale.unlink()
        meta = {"format": "pt"}
        if len(shards) == 1:
            save_file(shards[0], str(out / "model.safetensors"), metadata=meta)
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(out / name), metadata=meta)
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(v.numel() * v.element_size() for v in state.values())
            (out / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        (out / "config.json").write_text(json.dumps(self.release_config(dtype), indent=2))
        (out / SAM2_CONFIG_FILE).write_text(json.dumps(self.sam2_config.to_dict(), indent=2))
        if processor is not None:
            processor.save_pretrained(out)
        return out

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

    # -- training ----------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named groups (PARAMETER_GROUPS) for freezing and optimiser groups: each parameter in exactly one."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g, _ in PARAMETER_GROUPS}
        for name, p in self.named_parameters():
            group = next(g for g, prefixes in PARAMETER_GROUPS if name.startswith(prefixes))
            groups[group].append((name, p))
        return groups

    def train_only(self, *groups: str) -> list[str]:
        """Freeze everything except ``groups`` (names from PARAMETER_GROUPS); returns the trainable names."""
        unknown = set(groups) - {g for g, _ in PARAMETER_GROUPS}
        if unknown:
            raise ValueError(f"unknown parameter group(s) {sorted(unknown)}; groups: {[g for g, _ in PARAMETER_GROUPS]}")
        names = []
        for group, params in self.parameter_groups().items():
            for name, p in params:
                p.requires_grad_(group in groups)
                if group in groups:
                    names.append(name)
        return names

    # -- forward -----------------------------------------------------------------------------------
    def query_states(self, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                     image_grid_thw: torch.Tensor) -> torch.Tensor:
        """The second forward pass (eq. 2): prompt + generated answer (token ids, image placeholders filled with
        the image's features) + the M queries -> [B, M, D] last hidden states (after the final norm) of the queries.

        As in the release, the image features are put into the embeddings here and the language model gets
        ``inputs_embeds`` with the 1-D positions of :func:`second_pass_position_ids`, never ``pixel_values``."""
        core = self.mllm.model
        embeds = core.get_input_embeddings()(sequences)
        image_mask = sequences == self.config.qwen.image_token_id
        if image_mask.any():
            features = torch.cat(core.get_image_features(pixel_values, image_grid_thw).pooler_output)
            if features.shape[0] != int(image_mask.sum()):
                raise ValueError(f"{int(image_mask.sum())} image placeholder tokens, {features.shape[0]} image features")
            embeds = embeds.masked_scatter(image_mask[..., None].expand_as(embeds), features.to(embeds.dtype))
        embeds, mask = self.head.append_queries(embeds, attention_mask)
        hidden = core(inputs_embeds=embeds, attention_mask=mask,
                      position_ids=second_pass_position_ids(mask)).last_hidden_state
        return hidden[:, -self.num_queries:]

    def prompt_token(self, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                     image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Eq. 2-4: [B, 1, 256] (the SAM2 prompt width), SAM2's one sparse prompt embedding (the dense one is its no_mask_embed)."""
        return self.head(self.query_states(sequences, attention_mask, pixel_values, image_grid_thw))


    def image_embeddings(self, sam_pixels: torch.Tensor) -> list[torch.Tensor]:
        """SAM2's image features (+ no_mem_embed on the last level) of [B, 3, S, S] normalised pixels. No
        gradient: both LENS stages keep the SAM2 image encoder frozen."""
        return self.sam.get_image_embeddings(sam_pixels)

    def mask_logits(self, token: torch.Tensor, image_embeddings: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 4: [B, 1, C] prompt tokens -> [B, h, w] low-res mask logits; the dense prompt is no_mask_embed and
        the decoder gives one mask (multimask off, SAM2's dynamic stability choice as released)."""
        sam = self.sam
        b = token.shape[0]
        _, dense = sam.prompt_encoder(input_points=None, input_labels=None, input_boxes=None, input_masks=None)
        pe = sam.get_image_wide_positional_embeddings()
        low, _, _, _ = sam.mask_decoder(
            image_embeddings=image_embeddings[-1], image_positional_embeddings=pe.expand(b, -1, -1, -1),
            sparse_prompt_embeddings=token[:, None].to(pe.dtype), dense_prompt_embeddings=dense.expand(b, -1, -1, -1),
            multimask_output=False, high_resolution_features=image_embeddings[:-1])
        return low[:, 0, 0]

    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                image_grid_thw: torch.Tensor, sam_pixels: torch.Tensor) -> torch.Tensor:
        """Prompt + answer ids, the Qwen image tensors and SAM2's pixels -> [B, h, w] low-res mask logits."""
        token = self.prompt_token(sequences, attention_mask, pixel_values, image_grid_thw)
        return self.mask_logits(token, self.image_embeddings(sam_pixels))


def resolve_checkpoint(path: str | Path) -> Path:
    """A local dir, or an HF repo id already in the local cache (nothing downloads at run time)."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p} has no config.json: not a LENS checkpoint directory")
        return p
    if p.exists():
        raise FileNotFoundError(f"{p} is a file; lens.model needs a checkpoint directory or an HF id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(path), local_files_only=True))
    except (LocalEntryNotFoundError, ValueError) as exc:
        raise FileNotFoundError(f"{path}: no such directory, and not in the local HF cache ({exc.__class__.__name__}); "
                                "download it once (huggingface-cli download OuyBin/LENS) and point lens.model at it") from None


def _weight_files(root: Path) -> list[Path]:
    index = root / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [root / n for n in names]
    else:
        files = [root / "model.safetensors"]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"{root}: weight file(s) missing: {_first(absent)} (an interrupted download?)")
    return files
