"""A LENS checkpoint -> everything `pipeline: lens` with `lens.backend: onnx` runs, no PyTorch on the frame path
(`reasonseg export lens`; contract: `reasonseg.grounding.vlm.lens_onnx`):

- `mllm/<precision>/`: its Qwen2.5-VL as an ORT GenAI package (`reasonseg export qwen-vl`), the release's system
  prompt baked into the template; fp32 parity: greedy tokens identical to transformers.
- `lens_second_pass.onnx` (paper eq. 2-4): prompt + answer embeddings (the package's own embedding graph fills the
  image rows) + attention mask -> the M context queries appended, the language model with the release's 1-D
  positions, the queries' last hidden states -> connector -> conv_1d -> proj_to_sam -> prompt_token [1, 1, C].
- `sam2/`: the checkpoint's SAM2 (`reasonseg export sam2`: encoder, decoder, tracking graphs).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from reasonseg.grounding.vlm import lens_onnx as contract
from reasonseg_export.manifest import write_manifest
from reasonseg_export.onnx_io import export_module
from reasonseg_export.parity import FP32_MAX_REL, require_close


def _second_pass(model):
    import torch
    from torch import nn

    from reasonseg.models.lens_head import second_pass_position_ids

    class SecondPass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm, self.head = model.mllm.model.language_model, model.head

        def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            embeds, mask = self.head.append_queries(inputs_embeds, attention_mask)
            hidden = self.lm(inputs_embeds=embeds, attention_mask=mask,
                             position_ids=second_pass_position_ids(mask)).last_hidden_state
            return self.head(hidden[:, -self.head.num_queries:])

    return SecondPass().eval()


def is_lens_checkpoint(checkpoint: str | Path) -> bool:
    """A LENS checkpoint (the release's flat config with `num_of_query`, or ours), not a plain Qwen-VL."""
    import json

    try:
        return "num_of_query" in json.loads((Path(checkpoint) / "config.json").read_text())
    except (OSError, ValueError):
        return False


def _load_lens(checkpoint: str | Path):
    import torch

    from reasonseg.core.model_loading import load_hf_model
    from reasonseg.models.lens import LensModel

    return load_hf_model(f"LENS checkpoint {checkpoint}", checkpoint,
                         lambda: LensModel.from_pretrained(checkpoint, dtype=torch.float32)).eval()


def save_language_part(checkpoint: str | Path, dst: Path, lens=None) -> Path:
    """The LENS checkpoint's Qwen2.5-VL (its answer model) as a plain Qwen2.5-VL dir + processor at `dst`: what the
    ORT GenAI and Edge-LLM exporters take."""
    from transformers import AutoProcessor

    from reasonseg.models.weights import resolve_checkpoint

    lens = lens if lens is not None else _load_lens(checkpoint)
    lens.mllm.save_pretrained(dst)
    AutoProcessor.from_pretrained(resolve_checkpoint(checkpoint), local_files_only=True).save_pretrained(dst)
    return dst


def export_lens(checkpoint: str | Path, out_dir: Path, *, precisions: list[str],
                photos: list[np.ndarray]) -> list[Path]:
    from reasonseg.grounding.vlm.lens import SYSTEM_PROMPT
    from reasonseg_export.qwen_vl import export_qwen_vl
    from reasonseg_export.sam2 import export_sam2

    out_dir = Path(out_dir)
    lens = _load_lens(checkpoint)
    written = []
    with tempfile.TemporaryDirectory(prefix="lens-export-") as tmp:
        qwen, sam = Path(tmp) / "qwen", Path(tmp) / "sam2"
        save_language_part(checkpoint, qwen, lens)
        lens.sam.save_pretrained(sam)
        written += export_qwen_vl(qwen, out_dir / contract.MLLM, precisions=precisions, photos=photos,
                                  system=SYSTEM_PROMPT)
        written += export_sam2(sam, out_dir / contract.SAM2)
    written.append(_export_second_pass(lens, out_dir / contract.SECOND_PASS, checkpoint))
    return written


def _export_second_pass(lens, path: Path, checkpoint: str | Path) -> Path:
    import torch

    from reasonseg.backends.onnxruntime_graph import open_session

    module = _second_pass(lens)
    d = lens.mllm.config.text_config.hidden_size
    trace = (torch.randn(1, 12, d), torch.ones(1, 12, dtype=torch.long))
    export_module(module, trace, path, inputs=["inputs_embeds", "attention_mask"], outputs=["prompt_token"],
                  dynamic_axes={"inputs_embeds": {1: "sequence_length"}, "attention_mask": {1: "sequence_length"}})
    rng = np.random.default_rng(1)
    fresh = {"inputs_embeds": (rng.standard_normal((1, 37, d)) * 0.05).astype(np.float32),
             "attention_mask": np.ones((1, 37), np.int64)}  # another length than the trace's
    with torch.inference_mode():
        ref = module(*(torch.from_numpy(v) for v in fresh.values())).numpy()
    (got,) = open_session(path, "LENS second pass").run(None, fresh)
    parity = {"prompt_token": require_close("LENS second pass", ref, got, FP32_MAX_REL),
              "max_rel_tolerance": FP32_MAX_REL}
    write_manifest(path, format="lens", precision="fp32", source=None, parity=parity, checkpoint=str(checkpoint),
                   num_queries=lens.head.num_queries, hidden_size=d)
    return path
