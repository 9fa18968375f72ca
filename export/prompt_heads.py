"""The MLLM pipelines' prompt heads -> ONNX: what turns the language model's hidden states into the SAM2 prompt
token the SAM2 decoder graph takes as `sparse_embeddings`. The language model itself stays in PyTorch (or
behind vLLM / TensorRT-LLM on the `openai` backend): see export/README.md.

* `lens_connector.onnx` (LENS, paper eq. 3-4): query_states [B, M, D] -> queries -> connector -> conv_1d ->
  proj_to_sam -> prompt_token [B, 1, C].
* `cora_projection.onnx` (CORA / LISA): seg_state [B, D], the `<SEG>` token's last hidden state ->
  seg_projection -> prompt_token [B, 1, C].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonseg_export.manifest import write_manifest
from reasonseg_export.onnx_io import export_module
from reasonseg_export.parity import FP32_MAX_REL, require_close

CONNECTOR = "lens_connector.onnx"
CORA_PROJECTION = "cora_projection.onnx"


def _export_head(head, shape: tuple[int, ...], path: Path, input_name: str, what: str, seed: int,
                 **manifest) -> list[Path]:  # noqa: ANN001
    """Export `head` (input [batch, *shape[1:]] -> prompt_token), check it on fresh inputs, write the manifest."""
    import torch

    from reasonseg.backends.onnxruntime_graph import open_session

    path = export_module(head, (torch.randn(*shape),), path, inputs=[input_name], outputs=["prompt_token"],
                         dynamic_axes={input_name: {0: "batch"}, "prompt_token": {0: "batch"}})
    fresh = np.random.default_rng(seed + 1).standard_normal((3, *shape[1:])).astype(np.float32)
    with torch.inference_mode():
        ref = head(torch.from_numpy(fresh)).numpy()
    (got,) = open_session(path, what).run(None, {input_name: fresh})
    parity = {"prompt_token": require_close(what, ref, got, FP32_MAX_REL), "max_rel_tolerance": FP32_MAX_REL}
    write_manifest(path, precision="fp32", source=None, parity=parity, **manifest)
    return [path]


def export_lens_connector(checkpoint: str | Path, out_dir: Path, *, seed: int = 0) -> list[Path]:
    import torch

    from reasonseg.core.model_loading import load_hf_model
    from reasonseg.models.lens import LensModel

    lens = load_hf_model(f"LENS checkpoint {checkpoint}", checkpoint,
                         lambda: LensModel.from_pretrained(checkpoint, dtype=torch.float32))
    head = lens.head.float().eval()
    m, d = head.num_queries, head.learnable_query.shape[-1]
    return _export_head(head, (2, m, d), Path(out_dir) / CONNECTOR, "query_states", "LENS connector", seed,
                        format="lens-connector", checkpoint=str(checkpoint), num_queries=m, hidden_size=d)


def export_cora_projection(checkpoint: str | Path, out_dir: Path, *, seed: int = 0) -> list[Path]:
    import torch
    from torch import nn

    from reasonseg.core.model_loading import load_hf_model
    from reasonseg.models.cora import CoraModel

    class Projection(nn.Module):
        def __init__(self, projection: nn.Module) -> None:
            super().__init__()
            self.projection = projection

        def forward(self, seg_state: torch.Tensor) -> torch.Tensor:
            return self.projection(seg_state)[:, None]  # one sparse prompt token, as CoraModel feeds SAM2

    cora = load_hf_model(f"CORA checkpoint {checkpoint}", checkpoint,
                         lambda: CoraModel.from_pretrained(checkpoint, dtype=torch.float32))
    projection = cora.seg_projection.float().eval()
    d = projection[0].in_features
    return _export_head(Projection(projection).eval(), (2, d), Path(out_dir) / CORA_PROJECTION, "seg_state",
                        "CORA projection", seed, format="cora-projection", checkpoint=str(checkpoint), hidden_size=d)
