"""L2L's onboard referring segmentor (Learning to Label, §3.2 and §4.1): a hierarchical vision encoder
(transformers Swin) and a BERT text encoder, conditioned stage by stage by SESM, with an FPN mask head.
No MLLM at inference: this is the fast model the `l2l` pipeline serves and `training/` trains.

SESM at stage s (the equation bodies were lost from l2l.txt; rebuilt from the prose, training/README.md):
* eq. 1  G_s = α_s · T_s + β_s · S_s, α_s, β_s learnable scalars (init 1); T_s = cross-attention from the
  stage's visual tokens V_s to the text tokens (the semantic field);
* eq. 2  S_s, the structural field from the pixel prior P resized to the stage (the stage-alignment operator,
  then a 3x3 conv lifting it to the stage width): a learnable linear (1x1) projection in the shallow stages
  S1-S2, cross-attention softmax(V_s W_q (P_s W_k)^T / sqrt(d)) P_s W_v in the deep stages S3-S4;
* eq. 3  V'_s = V_s + σ(φ(V_s)) ⊙ G_s, φ a linear map giving a token-wise strength (init bias -2: the
  pre-trained features pass nearly unchanged at the start).
The prior P is the fused SPM prior during training; at inference there is no MLLM, so the model is its
own prior: pass 1 takes P = 0.5 everywhere, pass 2 (the default) its own pass-1 probabilities
("P is iteratively updated with the improving weak prediction", §3.2).

Checkpoint: a directory with config.json (`model_type: l2l_segmentor`, the Swin and BERT configs and the
`l2l` block), model.safetensors and the tokenizer files; `L2LSegmentor.from_backbones` starts from
pretrained Swin / BERT checkpoints (training), `from_pretrained` / `save_pretrained` round-trip.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reasonseg.core.errors import CheckpointError

MODEL_TYPE = "l2l_segmentor"
MEAN = (0.485, 0.456, 0.406)  # Swin's ImageNet statistics
STD = (0.229, 0.224, 0.225)


@dataclass
class L2LConfig:
    image_size: int = 480           # LAVT / RESMatch's RefCOCO input (the paper's value was lost)
    max_text_len: int = 20          # LAVT's expression length
    decoder_dim: int = 256
    attention_heads: int = 8
    shallow_stages: int = 2         # eq. 2: local projection in S1-S2, cross-attention after
    vision: dict[str, Any] = field(default_factory=dict)  # transformers SwinConfig fields
    text: dict[str, Any] = field(default_factory=dict)    # transformers BertConfig fields

    def to_json(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> L2LConfig:
        if raw.get("model_type") != MODEL_TYPE:
            raise CheckpointError(f"config model_type is {raw.get('model_type')!r}, not {MODEL_TYPE!r}: not an L2L "
                                  "segmentor checkpoint")
        return cls(**{k: v for k, v in raw.items() if k != "model_type"})


class SesmBlock(nn.Module):
    """Eq. 1-3 at one stage: [B, HW, C] visual tokens + text tokens + the stage-aligned prior -> V'_s."""

    def __init__(self, dim: int, text_dim: int, heads: int, deep: bool) -> None:
        super().__init__()
        heads = heads if dim % heads == 0 else 1
        self.deep = deep
        self.text_proj = nn.Linear(text_dim, dim)
        self.semantic = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.align = nn.Conv2d(1, dim, 3, padding=1)  # the stage-alignment operator's lift to width C_s
        if deep:
            self.structural = nn.MultiheadAttention(dim, heads, batch_first=True)
        else:
            self.local = nn.Linear(dim, dim)
        self.alpha = nn.Parameter(torch.ones(()))
        self.beta = nn.Parameter(torch.ones(()))
        self.strength = nn.Linear(dim, 1)
        nn.init.constant_(self.strength.bias, -2.0)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int], text: torch.Tensor, text_pad: torch.Tensor,
                prior: torch.Tensor) -> torch.Tensor:
        t = self.text_proj(text)
        semantic, _ = self.semantic(tokens, t, t, key_padding_mask=text_pad, need_weights=False)
        p = self.align(F.interpolate(prior, size=hw, mode="bilinear", align_corners=False)).flatten(2).transpose(1, 2)
        if self.deep:
            structural, _ = self.structural(tokens, p, p, need_weights=False)
        else:
            structural = self.local(p)
        guidance = self.alpha * semantic + self.beta * structural                       # eq. 1
        return tokens + torch.sigmoid(self.strength(tokens)) * guidance                 # eq. 3


class L2LSegmentor(nn.Module):
    def __init__(self, config: L2LConfig, *, vision: nn.Module | None = None, text: nn.Module | None = None) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel, SwinConfig, SwinModel

        self.config = config
        self.vision = vision if vision is not None else SwinModel(SwinConfig(**config.vision), add_pooling_layer=False)
        self.text = text if text is not None else BertModel(BertConfig(**config.text), add_pooling_layer=False)
        self.vision.layernorm = nn.Identity()  # Swin's final norm feeds its pooler only: the FPN reads the stages
        vc = self.vision.config
        dims = [int(vc.embed_dim * 2 ** i) for i in range(len(vc.depths))]
        self.stage_dims = dims
        td = int(self.text.config.hidden_size)
        self.sesm = nn.ModuleList(SesmBlock(d, td, config.attention_heads, deep=i >= config.shallow_stages)
                                  for i, d in enumerate(dims))
        d = config.decoder_dim
        self.lateral = nn.ModuleList(nn.Conv2d(c, d, 1) for c in dims)
        self.smooth = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.GroupNorm(8 if d % 8 == 0 else 1, d), nn.GELU())
        self.head = nn.Conv2d(d, 1, 1)

    # -- construction / checkpoints ------------------------------------------------------------------
    @classmethod
    def from_backbones(cls, vision_dir: str | Path, text_dir: str | Path, **overrides: Any) -> L2LSegmentor:
        """Pretrained Swin + BERT checkpoints (local dirs or cached HF ids) + fresh SESM and head (training's start)."""
        from transformers import BertModel, SwinModel

        from reasonseg.models.weights import check_model_dir

        check_model_dir(vision_dir, "Swin checkpoint")  # layer counts vs the weights, before building
        check_model_dir(text_dir, "BERT checkpoint")
        vision = SwinModel.from_pretrained(str(vision_dir), local_files_only=True, add_pooling_layer=False)
        text = BertModel.from_pretrained(str(text_dir), local_files_only=True, add_pooling_layer=False)
        config = L2LConfig(vision=_config_dict(vision.config), text=_config_dict(text.config), **overrides)
        return cls(config, vision=vision, text=text)

    def save_pretrained(self, out_dir: str | Path, tokenizer: Any = None) -> Path:
        from reasonseg.models.weights import save_safetensors

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.state_dict(), out / "model.safetensors")  # + its sha256, checked by from_pretrained
        (out / "config.json").write_text(json.dumps(self.config.to_json(), indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path) -> L2LSegmentor:
        """The config is checked against the weights' headers (layer counts, then names and shapes on a meta-device
        model) before anything is allocated: a config for another model is one line, not an OOM (weights.py)."""
        from safetensors import SafetensorError

        from reasonseg.models.weights import (
            build_on_meta,
            check_counts,
            check_state,
            count_summary,
            meta_state,
            read_safetensors,
            read_shapes,
        )

        root = Path(path)
        what, fix = f"L2L checkpoint {root}", "use the config.json saved with these weights, or write the checkpoint " \
                                               "with training/"
        unused = ("vision.layernorm.",)  # Swin's final norm: see __init__

        def unreadable(exc: Exception) -> CheckpointError:
            return CheckpointError(f"{root} is not a readable L2L segmentor checkpoint ({exc}); write one with "
                                   "training/ (L2LSegmentor.save_pretrained)")

        def check(model: L2LSegmentor, state: dict[str, Any]) -> None:
            report = check_state(model, {k: v for k, v in state.items() if not k.startswith(unused)})
            if not report.clean:
                raise CheckpointError(report.explain(what, fix))

        try:
            raw = json.loads((root / "config.json").read_text())
            shapes = read_shapes(root)
        except (OSError, ValueError) as exc:
            raise unreadable(exc) from None
        check_counts(raw, len(shapes), what, fix)  # before L2LConfig: a count is a loop there
        try:
            config = L2LConfig.from_json(raw)
        except (ValueError, TypeError, AttributeError) as exc:
            raise unreadable(exc) from None
        check(build_on_meta(lambda: cls(config), len(shapes), what, fix, count_summary(raw)), meta_state(shapes))
        try:
            state = read_safetensors(root)  # checked against its recorded sha256
        except (OSError, SafetensorError) as exc:
            raise unreadable(exc) from None
        model = cls(config)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(unused)}, strict=False)
        return model.eval()

    # -- forward -------------------------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> BERT token states [B, T, D] and the padding mask (True = pad) the cross-attentions use."""
        return self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask == 0

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """[B,3,S,S] normalised pixels + expression tokens + prior probabilities [B,1,S,S] (None: 0.5, no
        information) -> [B,1,S,S] mask logits."""
        text, pad = self.encode_text(input_ids, attention_mask)
        return self.decode(pixel_values, text, pad, prior)

    def decode(self, pixel_values: torch.Tensor, text: torch.Tensor, pad: torch.Tensor,
               prior: torch.Tensor | None) -> torch.Tensor:
        b, _, h, w = pixel_values.shape
        if prior is None:
            prior = pixel_values.new_full((b, 1, h, w), 0.5)
        hidden, dims = self.vision.embeddings(pixel_values)
        feats = []
        for stage, sesm in zip(self.vision.encoder.layers, self.sesm):
            for block in stage.blocks:
                hidden = block(hidden, dims)[0]
            hidden = sesm(hidden, dims, text, pad, prior)
            feats.append(hidden.transpose(1, 2).reshape(b, -1, *dims))
            if stage.downsample is not None:
                hidden = stage.downsample(hidden, dims)
                dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
        top = self.lateral[-1](feats[-1])
        for lateral, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):  # FPN, top-down
            top = lateral(f) + F.interpolate(top, size=f.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.head(self.smooth(top))
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)


def _config_dict(config: Any) -> dict[str, Any]:
    """The architecture fields of a transformers config (no runtime bookkeeping)."""
    raw = config.to_dict()
    for key in ("transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "model_type",
                "id2label", "label2id", "out_features", "out_indices", "stage_names"):
        raw.pop(key, None)
    return raw


def preprocess(image_rgb: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 RGB -> [1,3,S,S] normalised (square resize, no padding: the mask maps back the same way)."""
    import cv2

    x = cv2.resize(np.ascontiguousarray(image_rgb), (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (x / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


__all__ = ["L2LConfig", "L2LSegmentor", "SesmBlock", "preprocess", "MODEL_TYPE"]
