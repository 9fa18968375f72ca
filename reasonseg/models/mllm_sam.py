"""What LENS and CORA share: a Qwen2.5-VL (``mllm``) whose hidden states become SAM2 sparse prompts for a
transformers SAM2 (``sam``); named parameter groups for training; SAM2 decoding from prompt tokens; strict
safetensors checkpoints (sharded with an index, as HF writes them) with errors that name keys and the fix.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reasonseg.core.errors import CheckpointError
from reasonseg.models.weights import (
    build_on_meta,
    check_counts,
    check_model_dir,
    count_summary,
    make_config,
    meta_state,
    read_safetensors,
    read_shapes,
    resolve_checkpoint,
    save_safetensors,
)

__all__ = ["MllmSamModel", "write_safetensors", "read_sam2_config", "SHARD_BYTES",
           "SAM2_CONFIG_FILE"]

SHARD_BYTES = 5 * 1024 ** 3
SAM2_CONFIG_FILE = "sam2_config.json"  # transformers' default max shard size
# Groups every MLLM + SAM2 model has, after a model's own (matched in order, first wins).
COMMON_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mllm_vision", ("mllm.model.visual.",)),
    ("mllm_language", ("mllm.model.language_model.", "mllm.lm_head.")),
    ("sam_image_encoder", ("sam.vision_encoder.",)),
    ("sam_prompt_encoder", ("sam.prompt_encoder.", "sam.shared_image_embedding.")),
    ("sam_mask_decoder", ("sam.mask_decoder.",)),
    ("sam_memory", ("sam.",)),  # memory attention/encoder, object pointers, no-memory embeddings
)


def read_checked_configs(root: Path, what: str, fix: str) -> tuple[dict[str, Any], Any, dict[str, tuple]]:
    """(config.json as read, sam2_config.json's Sam2VideoConfig or None, the weights' header shapes), the layer
    counts of both configs checked against the weights before any config object is made (weights.py)."""
    from transformers import Sam2VideoConfig

    shapes = read_shapes(root)
    raw = _read_json_config(root / "config.json", len(shapes), what, fix)
    sam2_file = root / SAM2_CONFIG_FILE
    if not sam2_file.is_file():
        return raw, None, shapes
    sam2_raw = _read_json_config(sam2_file, len(shapes), what, fix)
    return raw, make_config(lambda: Sam2VideoConfig(**sam2_raw), what, fix, SAM2_CONFIG_FILE), shapes


def _read_json_config(path: Path, n_tensors: int, what: str, fix: str) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{what}: {path.name} is not readable JSON ({exc}). Fix: {fix}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{what}: {path.name} is not a JSON object. Fix: {fix}")
    check_counts(raw, n_tensors, what, fix, path.name)
    return raw


def read_sam2_config(root: Path):
    """``sam2_config.json`` (transformers' Sam2VideoConfig) when the checkpoint has one, else None."""
    from transformers import Sam2VideoConfig

    f = root / SAM2_CONFIG_FILE
    return Sam2VideoConfig(**json.loads(f.read_text())) if f.is_file() else None


def write_safetensors(state: Mapping[str, torch.Tensor], out: Path, dtype: torch.dtype,
                      max_shard_bytes: int = SHARD_BYTES) -> None:
    """One ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` + index past `max_shard_bytes`;
    floating tensors in `dtype`, each file with its sha256 beside it. Old weight files in `out` are removed first."""
    cast = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in cast.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    for stale in [*out.glob("model*.safetensors"), *out.glob("model*.safetensors.sha256"),
                  *out.glob("model.safetensors.index.json")]:
        stale.unlink()
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_safetensors(shards[0], out / "model.safetensors", meta)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors(shard, out / name, meta)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(v.numel() * v.element_size() for v in cast.values())
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                  "weight_map": weight_map}, indent=2))


class MllmSamModel(nn.Module):
    """Base of LensModel and CoraModel: subclasses set ``mllm`` (Qwen2_5_VLForConditionalGeneration), ``sam``
    (Sam2VideoModel) and their own modules, and list their own parameter groups in ``OWN_GROUPS``."""

    OWN_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = ()
    mllm: nn.Module
    sam: nn.Module

    @staticmethod
    def load_bases(qwen_path: str | Path, sam2_path: str | Path, dtype: torch.dtype | None) -> tuple[Any, Any, Any]:
        """(processor, Qwen2.5-VL, SAM2 video model in float32) from local checkpoints, each judged before it is
        built (`check_model_dir`: layer counts vs the weights): what a subclass's `from_base` starts from."""
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, Sam2VideoModel

        check_model_dir(qwen_path, "Qwen2.5-VL checkpoint")
        check_model_dir(sam2_path, "SAM2 checkpoint")
        qwen, sam2 = resolve_checkpoint(qwen_path), resolve_checkpoint(sam2_path)
        processor = AutoProcessor.from_pretrained(qwen, local_files_only=True)
        base = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen, dtype=dtype, local_files_only=True)
        sam = Sam2VideoModel.from_pretrained(sam2, dtype=torch.float32, local_files_only=True)
        return processor, base, sam

    def write_checkpoint(self, out_dir: str | Path, state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                         dtype: torch.dtype, processor: Any, max_shard_bytes: int) -> Path:
        """What every save_pretrained writes: weights (sharded with an index when large), config.json,
        sam2_config.json (this model's SAM2 dims) and the processor files when given."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_safetensors(state, out, dtype, max_shard_bytes)
        (out / "config.json").write_text(json.dumps(config, indent=2))
        (out / SAM2_CONFIG_FILE).write_text(json.dumps(self.sam2_config.to_dict(), indent=2))
        if processor is not None:
            processor.save_pretrained(out)
        return out

    @classmethod
    def load_checked(cls, root: Path, raw: Mapping[str, Any], shapes: Mapping[str, tuple], dtype: torch.dtype | None,
                     load: Callable[[MllmSamModel, Mapping[str, torch.Tensor]], Any], what: str, fix: str,
                     *args: Any) -> MllmSamModel:
        """`cls(*args)` (built from the config `raw`) with the checkpoint's weights, `load(model, tensors)` raising on
        keys that do not fit. The weights' names and shapes are first checked on a meta-device model (nothing
        allocated), so a config describing another model fails in one line before memory is spent on it."""
        load(build_on_meta(lambda: cls(*args), len(shapes), what, fix, count_summary(raw)), meta_state(shapes))
        model = cls.build_for_loading(dtype, *args)
        load(model, read_safetensors(root))
        return model.eval()

    @classmethod
    def build_for_loading(cls, dtype: torch.dtype | None, *args: Any) -> MllmSamModel:
        """``cls(*args)`` with no weight init (every tensor comes from the file), built directly in the run dtype
        (no float32 copy of a 3B model); SAM2 in float32: masks are thresholded logits, and it is small."""
        from transformers.initialization import no_init_weights

        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype or torch.float32)
        try:
            with no_init_weights():
                model = cls(*args)
        finally:
            torch.set_default_dtype(previous)
        model.sam.float()
        return model

    @staticmethod
    def load_parts(parts: Iterable[tuple[nn.Module, Mapping[str, torch.Tensor]]]) -> None:
        """Copy checked tensors (module-relative names) into their modules; only matching names and shapes."""
        with torch.no_grad():
            for module, sd in parts:
                own = module.state_dict()
                module.load_state_dict({k: v for k, v in sd.items() if k in own and v.shape == own[k].shape},
                                       strict=False)

    @classmethod
    def group_names(cls) -> list[str]:
        return [g for g, _ in cls.OWN_GROUPS + COMMON_GROUPS]

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named groups (OWN_GROUPS, then the common MLLM / SAM2 ones) for freezing and optimiser groups: each
        parameter in exactly one."""
        table = self.OWN_GROUPS + COMMON_GROUPS
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g, _ in table}
        for name, p in self.named_parameters():
            groups[next(g for g, prefixes in table if name.startswith(prefixes))].append((name, p))
        return groups

    def train_only(self, *groups: str) -> list[str]:
        """Freeze everything except ``groups``; returns the trainable parameter names."""
        unknown = set(groups) - set(self.group_names())
        if unknown:
            raise ValueError(f"unknown parameter group(s) {sorted(unknown)}; groups: {self.group_names()}")
        names = []
        for group, params in self.parameter_groups().items():
            for name, p in params:
                p.requires_grad_(group in groups)
                if group in groups:
                    names.append(name)
        return names

    def image_embeddings(self, sam_pixels: torch.Tensor) -> list[torch.Tensor]:
        """SAM2's image features (+ no_mem_embed on the last level) of [B, 3, S, S] normalised pixels. No
        gradient: LENS and CORA both keep the SAM2 image encoder frozen."""
        return self.sam.get_image_embeddings(sam_pixels)

    def mask_logits(self, token: torch.Tensor, image_embeddings: list[torch.Tensor]) -> torch.Tensor:
        """[B, 1, C] prompt tokens -> [B, h, w] low-res mask logits: the token is the only sparse prompt, the
        dense prompt is no_mask_embed, one mask (SAM2's dynamic stability choice as in eval)."""
        sam = self.sam
        b = token.shape[0]
        _, dense = sam.prompt_encoder(input_points=None, input_labels=None, input_boxes=None, input_masks=None)
        pe = sam.get_image_wide_positional_embeddings()
        low, _, _, _ = sam.mask_decoder(
            image_embeddings=image_embeddings[-1], image_positional_embeddings=pe.expand(b, -1, -1, -1),
            sparse_prompt_embeddings=token[:, None].to(pe.dtype), dense_prompt_embeddings=dense.expand(b, -1, -1, -1),
            multimask_output=False, high_resolution_features=image_embeddings[:-1])
        return low[:, 0, 0]

    def image_features_into(self, ids: torch.Tensor, embeds: torch.Tensor, pixel_values: torch.Tensor | None,
                            image_grid_thw: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the image placeholders replaced by the vision tower's features."""
        image_mask = ids == self.mllm.config.image_token_id
        if not image_mask.any():
            return embeds
        core = self.mllm.model
        features = torch.cat(core.get_image_features(pixel_values, image_grid_thw).pooler_output)
        if features.shape[0] != int(image_mask.sum()):
            raise ValueError(f"{int(image_mask.sum())} image placeholder tokens, {features.shape[0]} image features")
        return embeds.masked_scatter(image_mask[..., None].expand_as(embeds), features.to(embeds.dtype))
