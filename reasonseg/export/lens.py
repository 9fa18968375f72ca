"""LENS context module (queries' hidden states -> connector -> conv_1d -> proj_to_sam, paper eq. 3-4) -> ONNX.

`lens_connector.onnx`: query_states [B, M, D] -> prompt_token [B, 1, C], the SAM2 sparse prompt the SAM2
decoder graph takes as `sparse_embeddings`. The language model itself stays in PyTorch (or behind vLLM /
TensorRT-LLM on the `openai` backend): see export/README.md.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .manifest import write_manifest
from .onnx_io import export_module
from .parity import require_close

CONNECTOR = "lens_connector.onnx"
FP32_MAX_REL = 1e-4


def export_lens_connector(checkpoint: str | Path, out_dir: Path, *, seed: int = 0) -> list[Path]:
    import torch

    from ..models.lens import LensModel
    from ..onnx_session import open_session

    head = LensModel.from_pretrained(checkpoint, dtype=torch.float32).head.float().eval()
    m, d = head.num_queries, head.learnable_query.shape[-1]
    path = export_module(head, (torch.randn(2, m, d),), Path(out_dir) / CONNECTOR, inputs=["query_states"],
                         outputs=["prompt_token"], dynamic_axes={"query_states": {0: "batch"},
                                                                 "prompt_token": {0: "batch"}})
    fresh = torch.from_numpy(np.random.default_rng(seed + 1).standard_normal((3, m, d)).astype(np.float32))
    with torch.inference_mode():
        ref = head(fresh).numpy()
    (got,) = open_session(path, "LENS connector").run(None, {"query_states": fresh.numpy()})
    parity = {"prompt_token": require_close("LENS connector", ref, got, FP32_MAX_REL), "max_rel_tolerance": FP32_MAX_REL}
    write_manifest(path, format="lens-connector", precision="fp32", source=None, parity=parity,
                   checkpoint=str(checkpoint), num_queries=m, hidden_size=d)
    return [path]
