"""CORA (cora.txt §3): a LISA-style reasoning segmenter — the MLLM answers with a ``<SEG>`` token whose last
hidden state, projected into SAM2's prompt space, is the mask decoder's prompt (eq. 1-3) — plus the
conditional visual instruction path of §3.3 (an anchor object's masked image and its box, each encoded into one
token of the instruction, after SegLLM).

CORA has no public code: every choice the paper leaves open is listed in ``reasonseg/models/README.md``. In
short: Qwen2.5-VL (not the paper's LLaVA-1.5-7B + CLIP-L + SAM ViT-H) so that `lens` and `cora` share one MLLM
stack, processor and generation path, and SAM2 (not SAM) so the node's memory tracker follows CORA's mask.

Checkpoint layout (ours; written by ``save_pretrained`` and by ``training/``): ``config.json`` is the
Qwen2.5-VL config plus a ``cora`` block (token ids, prompt width); the Qwen part keeps transformers' own names
(``model.visual.*``, ``model.language_model.*``, ``lm_head.*``), so the directory also opens as a plain
Qwen2.5-VL; ``seg_projection.*``, ``anchor.*`` and ``sam.*`` (transformers' SAM2 names) sit beside it;
``sam2_config.json`` describes the SAM2; the processor (tokenizer with the added tokens) is saved alongside.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reasonseg.core.errors import CheckpointError
from reasonseg.models.mllm_sam import SAM2_CONFIG_FILE, SHARD_BYTES, MllmSamModel, read_checked_configs
from reasonseg.models.weights import LoadReport, check_state, make_config, merge, resolve_checkpoint

__all__ = ["CoraModel", "CoraConfig", "CoraCheckpointError", "AnchorEncoder", "SEG_TOKEN", "ANCHOR_MASK_TOKEN",
           "ANCHOR_BOX_TOKEN", "seg_prompt", "SEG_ANSWER"]

SEG_TOKEN = "<SEG>"                 # LISA's [SEG]; the paper's <SSEG>
ANCHOR_MASK_TOKEN = "<anchor_mask>"  # replaced by the anchor's masked-image token (§3.3)
ANCHOR_BOX_TOKEN = "<anchor_box>"    # replaced by the anchor's box token (§3.3)
ADDED_TOKENS = (SEG_TOKEN, ANCHOR_MASK_TOKEN, ANCHOR_BOX_TOKEN)
ARCHITECTURE = "CoraForReasoningSegmentation"
SEG_ANSWER = f"Sure, it is {SEG_TOKEN}."  # LISA's answer form: the mask is the <SEG> token
_FIX = ("use the config.json / sam2_config.json saved with these weights, or a complete CORA checkpoint written by "
        "CoraModel.save_pretrained (training/ writes them)")


def seg_prompt(instruction: str, *, anchor: bool = False) -> str:
    """The user text of a CORA query (§3.4.2's form "Can you segment ...?"). With ``anchor``, the instruction
    names the anchor by the two placeholder tokens, e.g. "the car that is left of <anchor_mask><anchor_box>"."""
    text = instruction.strip().rstrip("?.!")
    if anchor and ANCHOR_MASK_TOKEN not in text:
        raise ValueError(f"an anchored instruction must contain {ANCHOR_MASK_TOKEN}{ANCHOR_BOX_TOKEN}")
    return f"Can you segment {text} in this image?"


class CoraCheckpointError(CheckpointError):
    """A CORA checkpoint that does not fit its config: names the first keys and the fix."""


@dataclass(frozen=True)
class CoraConfig:
    qwen: Any                 # transformers.Qwen2_5_VLConfig (vocab includes the added tokens)
    seg_token_id: int
    anchor_mask_token_id: int
    anchor_box_token_id: int

    def to_json(self) -> dict[str, Any]:
        return {**self.qwen.to_dict(), "architectures": [ARCHITECTURE],
                "cora": {"seg_token": SEG_TOKEN, "seg_token_id": self.seg_token_id,
                         "anchor_mask_token_id": self.anchor_mask_token_id,
                         "anchor_box_token_id": self.anchor_box_token_id}}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CoraConfig:
        from transformers import Qwen2_5_VLConfig

        cora = raw.get("cora")
        if not isinstance(cora, Mapping) or "seg_token_id" not in cora:
            raise CoraCheckpointError("config.json has no cora block (seg_token_id ...): not a CORA checkpoint. Fix: "
                                      "point cora.model at a directory written by CoraModel.save_pretrained")
        qwen = Qwen2_5_VLConfig(**{k: v for k, v in raw.items() if k not in ("cora", "architectures")})
        return cls(qwen, int(cora["seg_token_id"]), int(cora["anchor_mask_token_id"]),
                   int(cora["anchor_box_token_id"]))


class AnchorEncoder(nn.Module):
    """§3.3: "an anchor image mask and its corresponding bounding box, encoded separately using an anchor image
    encoder and a bounding box encoder as proposed by SegLLM". The anchor image encoder is the MLLM's own
    (frozen) vision tower run on the image with everything but the anchor blacked out, mean-pooled over its
    merged patches, then ``mask_proj``; the box encoder is ``box_proj`` on (x0, y0, x1, y1) / image size.
    Each gives one token in the LLM's embedding space, placed at the instruction's placeholder tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mask_proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.box_proj = nn.Sequential(nn.Linear(4, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, masked_image_features: list[torch.Tensor], boxes: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
        """Per-anchor [N_i, D] vision features and [A, 4] normalised boxes -> ([A, D] mask tokens, [A, D] box tokens)."""
        pooled = torch.stack([f.mean(0) for f in masked_image_features])
        return self.mask_proj(pooled), self.box_proj(boxes.to(pooled.dtype))


@dataclass
class CoraOutput:
    logits: torch.Tensor | None   # [B, L, V] language-model logits (eq. 5's L_ce); None when not asked for
    seg_tokens: torch.Tensor      # [B, C] the projected <SEG> states (eq. 3's prompt; eq. 8's token features)
    mask_logits: torch.Tensor | None  # [B, h, w] low-res SAM2 logits (eq. 3), when sam_pixels were given


class CoraModel(MllmSamModel):
    # LISA's trainable set: <SEG> projection, token embeddings / LM head (new tokens), SAM decoder; LoRA on
    # the language model is the training tree's choice (peft), the vision towers stay frozen.
    OWN_GROUPS = (("seg_projection", ("seg_projection.",)),
                  ("anchor_encoder", ("anchor.",)),
                  ("token_embeddings", ("mllm.model.language_model.embed_tokens.", "mllm.lm_head.")))

    def __init__(self, config: CoraConfig, sam2_config: Any, *, mllm: nn.Module | None = None,
                 sam: nn.Module | None = None) -> None:
        """Builds the Qwen2.5-VL and SAM2 from their configs, or takes already loaded ones (from_base)."""
        from transformers import Qwen2_5_VLForConditionalGeneration, Sam2VideoModel

        super().__init__()
        self.config = config
        self.sam2_config = sam2_config
        self.mllm = mllm if mllm is not None else Qwen2_5_VLForConditionalGeneration(config.qwen)
        dim = config.qwen.text_config.hidden_size
        prompt_dim = sam2_config.prompt_encoder_config.hidden_size
        # LISA's text_hidden_fcs: the <SEG> state -> SAM prompt space (eq. 3)
        self.seg_projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, prompt_dim))
        self.anchor = AnchorEncoder(dim)
        self.sam = sam if sam is not None else Sam2VideoModel(sam2_config)

    # -- building and files ------------------------------------------------------------------------
    @classmethod
    def from_base(cls, qwen_path: str | Path, sam2_path: str | Path, *, dtype: torch.dtype | None = None,
                  seed: int = 0) -> tuple[CoraModel, Any]:
        """A fresh CORA from a Qwen2.5-VL and a SAM2 checkpoint (what training starts from): the three tokens are
        added to the tokenizer (embedding rows initialised to the mean embedding, as LISA), the projection
        and anchor encoder initialised. Returns (model, processor)."""
        processor, base, sam = cls.load_bases(qwen_path, sam2_path, dtype)
        processor.tokenizer.add_tokens(list(ADDED_TOKENS), special_tokens=True)
        ids = processor.tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS))
        old = base.get_input_embeddings().weight.shape[0]
        if max(ids) >= old:  # Qwen's embedding usually has spare rows past the tokenizer: grow only when needed
            base.resize_token_embeddings(max(ids) + 1, mean_resizing=False)
        with torch.no_grad():
            emb = base.get_input_embeddings().weight
            emb[ids] = emb[:old].mean(0, keepdim=True).to(emb.dtype)
        config = CoraConfig(base.config, *ids)
        torch.manual_seed(seed)
        model = cls(config, sam.config, mllm=base, sam=sam).to(dtype or torch.float32)
        model.sam.float()  # SAM2 stays float32 (see MllmSamModel.build_for_loading)
        return model, processor

    def native_state_dict(self) -> dict[str, torch.Tensor]:
        """File names: the Qwen part under transformers' own names, the rest under ours."""
        out = {k: v for k, v in self.mllm.state_dict().items()
               if not (k == "lm_head.weight" and self.config.qwen.tie_word_embeddings)}
        for prefix, module in (("seg_projection.", self.seg_projection), ("anchor.", self.anchor), ("sam.", self.sam)):
            out.update({prefix + k: v for k, v in module.state_dict().items()})
        return out

    def load_native_state_dict(self, state: Mapping[str, torch.Tensor]) -> LoadReport:
        parts: dict[str, dict[str, torch.Tensor]] = {"seg_projection.": {}, "anchor.": {}, "sam.": {}, "": {}}
        for key, value in state.items():
            prefix = next((p for p in parts if p and key.startswith(p)), "")
            parts[prefix][key[len(prefix):]] = value
        tied = ("lm_head.weight",) if self.config.qwen.tie_word_embeddings else ()
        report = merge(check_state(self.mllm, parts[""], "", tied),
                       check_state(self.seg_projection, parts["seg_projection."], "seg_projection."),
                       check_state(self.anchor, parts["anchor."], "anchor."), check_state(self.sam, parts["sam."], "sam."))
        if not report.clean:
            raise CoraCheckpointError(report.explain("CORA checkpoint", _FIX))
        self.load_parts(((self.mllm, parts[""]), (self.seg_projection, parts["seg_projection."]),
                         (self.anchor, parts["anchor."]), (self.sam, parts["sam."])))
        if self.config.qwen.tie_word_embeddings:
            self.mllm.tie_weights()
        return report

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype | None = None) -> CoraModel:
        root = resolve_checkpoint(path)
        what = f"CORA checkpoint {root}"
        raw, sam2, shapes = read_checked_configs(root, what, _FIX)
        config = make_config(lambda: CoraConfig.from_json(raw), what, _FIX)
        if sam2 is None:
            raise CoraCheckpointError(f"{root} has no {SAM2_CONFIG_FILE}. Fix: {_FIX}")
        return cls.load_checked(root, raw, shapes, dtype, cls.load_native_state_dict, what, _FIX, config, sam2)

    def save_pretrained(self, out_dir: str | Path, *, dtype: torch.dtype = torch.bfloat16, processor: Any = None,
                        max_shard_bytes: int = SHARD_BYTES) -> Path:
        return self.write_checkpoint(out_dir, self.native_state_dict(), self.config.to_json(), dtype, processor,
                                     max_shard_bytes)

    # -- forward -----------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
              anchor_features: list[torch.Tensor] | None = None, anchor_boxes: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Token embeddings with the image's features at its placeholders and, for anchored instructions, the
        anchor's two tokens (§3.3) at ``<anchor_mask>`` / ``<anchor_box>`` (one anchor per such pair, in order)."""
        embeds = self.mllm.get_input_embeddings()(input_ids)
        embeds = self.image_features_into(input_ids, embeds, pixel_values, image_grid_thw)
        mask_pos = input_ids == self.config.anchor_mask_token_id
        box_pos = input_ids == self.config.anchor_box_token_id
        n = int(mask_pos.sum())
        if n != int(box_pos.sum()):
            raise ValueError(f"{n} {ANCHOR_MASK_TOKEN} but {int(box_pos.sum())} {ANCHOR_BOX_TOKEN} tokens")
        if n:
            if anchor_features is None or anchor_boxes is None or len(anchor_features) != n:
                raise ValueError(f"{n} anchored instruction(s) need {n} anchor images and boxes")
            mask_tok, box_tok = self.anchor(anchor_features, anchor_boxes)
            embeds = embeds.masked_scatter(mask_pos[..., None].expand_as(embeds), mask_tok.to(embeds.dtype))
            embeds = embeds.masked_scatter(box_pos[..., None].expand_as(embeds), box_tok.to(embeds.dtype))
        return embeds

    def anchor_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """The vision tower's merged patch features of each masked anchor image (the processor's tensors)."""
        return list(self.mllm.model.get_image_features(pixel_values, image_grid_thw).pooler_output)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                image_grid_thw: torch.Tensor, sam_pixels: torch.Tensor | None = None,
                anchor_features: list[torch.Tensor] | None = None, anchor_boxes: torch.Tensor | None = None,
                lm_logits: bool = True) -> CoraOutput:
        """Eq. 1-3 on a batch whose every row holds one ``<SEG>``: LM logits, projected <SEG> states, masks."""
        core = self.mllm.model
        seg = input_ids == self.config.seg_token_id
        if not bool((seg.sum(1) >= 1).all()):
            raise ValueError(f"every sequence needs a {SEG_TOKEN} token")
        embeds = self.embed(input_ids, pixel_values, image_grid_thw, anchor_features, anchor_boxes)
        # the image keeps Qwen's 3-D M-RoPE positions, exactly as during generation
        position_ids, _ = core.get_rope_index(input_ids, mm_token_type_ids=(
            input_ids == self.config.qwen.image_token_id).int(), image_grid_thw=image_grid_thw,
            attention_mask=attention_mask)
        hidden = core(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        last_seg = seg.shape[1] - 1 - seg.flip(1).int().argmax(1)  # the answer's (last) <SEG> in each row
        state = hidden[torch.arange(hidden.shape[0]), last_seg]
        tokens = self.seg_projection(state)
        masks = None if sam_pixels is None else self.mask_logits(tokens[:, None], self.image_embeddings(sam_pixels))
        return CoraOutput(self.mllm.lm_head(hidden) if lm_logits else None, tokens, masks)
