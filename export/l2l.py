"""L2L's onboard segmentor (`reasonseg.models.l2l`) -> one ONNX graph, the whole per-frame model:

`l2l_segmentor.onnx`: pixel_values [B,3,S,S] (ImageNet-normalised), input_ids / attention_mask [B,T] int64,
prior [B,1,S,S] probabilities -> mask_logits [B,1,S,S]. The `l2l` pipeline's second pass is this graph fed
the first pass's probabilities; the first pass feeds 0.5 everywhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonseg_export.manifest import write_manifest
from reasonseg_export.onnx_io import export_module
from reasonseg_export.parity import FP32_MAX_REL, require_close

SEGMENTOR = "l2l_segmentor.onnx"
INPUTS = ["pixel_values", "input_ids", "attention_mask", "prior"]


def example_inputs(size: int, text_len: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    attn = np.ones((batch, text_len), np.int64)
    attn[:, text_len // 2 + 1:] = 0  # padded expressions, as the tokenizer gives them
    return {"pixel_values": rng.standard_normal((batch, 3, size, size)).astype(np.float32),
            "input_ids": rng.integers(1000, 2000, (batch, text_len)).astype(np.int64), "attention_mask": attn,
            "prior": rng.random((batch, 1, size, size)).astype(np.float32)}


def export_l2l(checkpoint: str | Path, out_dir: Path) -> list[Path]:
    import torch

    from reasonseg.backends.onnxruntime_graph import open_session
    from reasonseg.models.l2l import L2LSegmentor

    model = L2LSegmentor.from_pretrained(checkpoint).eval()
    cfg = model.config
    trace = {k: torch.from_numpy(v) for k, v in example_inputs(cfg.image_size, cfg.max_text_len, 2).items()}
    path = export_module(model, tuple(trace.values()), Path(out_dir) / SEGMENTOR, inputs=INPUTS,
                         outputs=["mask_logits"], dynamic_axes={k: {0: "batch"} for k in [*INPUTS, "mask_logits"]})
    fresh = example_inputs(cfg.image_size, cfg.max_text_len, 3, seed=1)
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(v) for v in fresh.values())).numpy()
    (got,) = open_session(path, "L2L segmentor").run(None, fresh)
    parity = {"mask_logits": require_close("L2L segmentor", ref, got, FP32_MAX_REL), "max_rel_tolerance": FP32_MAX_REL}
    weights = Path(checkpoint) / "model.safetensors"
    write_manifest(path, format="l2l", precision="fp32", source=weights if weights.is_file() else None, parity=parity,
                   checkpoint=str(checkpoint), image_size=cfg.image_size, max_text_len=cfg.max_text_len)
    return [path]
