"""SAM2 (transformers `Sam2Model` / `Sam2VideoModel`) -> two ONNX graphs the runtime's `sam2` onnxruntime
backend runs (`reasonseg.segmenters.sam2.onnx_runner.OnnxSam2Segmenter`):

* `sam2_encoder.onnx`: pixel_values [1,3,S,S] -> high_res_feats_0, high_res_feats_1, image_embeddings (the last
  level with SAM2's no-memory embedding added, as `get_image_embeddings` returns it);
* `sam2_decoder.onnx`: the three feature maps, point_coords [1,N,2] (model pixels; box corners labelled 2 / 3;
  the caller appends SAM's padding point as the PyTorch path does), point_labels [1,N] int64,
  sparse_embeddings [1,K,C] (raw prompt tokens, LENS; K may be 0), mask_input [1,1,4h,4w] + has_mask_input [1],
  multimask_output [1] -> low_res_masks [1,1,4h,4w], iou_predictions [1,1], object_score_logits [1,1].

N and K are dynamic. A `sam2_video` checkpoint also gets the two tracking graphs (`sam2_track.py`). One graph serves single- and multi-mask prompts: the decoder runs once and the
selection (SAM2's stability fallback for one mask, the best of tokens 1-3 for an ambiguous click) is a
`Where` on `multimask_output`, the same choice `Sam2Segmenter.predict` makes in PyTorch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonseg.segmenters.sam2.graphs import (
    DECODER,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    sam2_image_size,
)
from reasonseg_export.manifest import write_manifest
from reasonseg_export.onnx_io import export_module
from reasonseg_export.parity import FP32_MAX_REL, require_close
from reasonseg_export.sam2_inputs import example_decoder_inputs


def _modules(model):
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values):  # noqa: ANN001, ANN202
            feats = self.model.get_image_embeddings(pixel_values)
            return feats[0], feats[1], feats[-1]

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("image_pe", model.get_image_wide_positional_embeddings().detach().clone())

        def forward(self, feat0, feat1, emb, coords, labels, sparse_raw, mask_input, has_mask, multimask):  # noqa: ANN001, ANN202
            pe, dec = self.model.prompt_encoder, self.model.mask_decoder
            points = pe._embed_points(coords[:, None], labels[:, None], pad=False)  # [1, 1, N, C]
            sparse = torch.cat([points, sparse_raw[:, None].to(points.dtype)], dim=2)
            no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *emb.shape[-2:])
            dense = has_mask.reshape(1, 1, 1, 1) * pe.mask_embed(mask_input) + (1 - has_mask.reshape(1, 1, 1, 1)) * no_mask
            seen: dict = {}
            original = dec._dynamic_multimask_via_stability
            stable = dec.dynamic_multimask_via_stability

            def keep_all(masks, iou):  # noqa: ANN001, ANN202 - every token's mask, before SAM2 picks one
                seen["masks"], seen["iou"] = masks, iou
                return original(masks, iou) if stable else (masks[:, :, :1], iou[:, :, :1])

            dec._dynamic_multimask_via_stability, dec.dynamic_multimask_via_stability = keep_all, True
            try:
                single, single_iou, _, obj = dec(image_embeddings=emb, image_positional_embeddings=self.image_pe,
                                                 sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                                 multimask_output=False, high_resolution_features=[feat0, feat1])
            finally:
                del dec._dynamic_multimask_via_stability
                dec.dynamic_multimask_via_stability = stable
            multi, multi_iou = seen["masks"][:, :, 1:], seen["iou"][:, :, 1:]
            best = torch.argmax(multi_iou, dim=-1, keepdim=True)  # [1, 1, 1]
            best_mask = torch.gather(multi, 2, best[..., None, None].expand(-1, -1, 1, *multi.shape[-2:]))
            best_iou = torch.gather(multi_iou, 2, best)
            use_multi = multimask.reshape(1, 1, 1) > 0
            masks = torch.where(use_multi[..., None, None], best_mask, single)[0]
            iou = torch.where(use_multi, best_iou, single_iou)[0]
            return masks, iou, obj.reshape(1, 1)

    return Encoder().eval(), Decoder().eval()


def export_sam2(checkpoint: str | Path, out_dir: Path) -> list[Path]:
    """Export both graphs of a local SAM2 checkpoint (dir or cached HF id) and check them against PyTorch."""
    import torch
    from transformers import AutoConfig, Sam2Model, Sam2VideoModel

    from reasonseg.core.model_loading import load_hf_model
    from reasonseg.models.weights import check_model_dir

    what = f"SAM2 checkpoint {checkpoint}"
    check_model_dir(checkpoint, "SAM2 checkpoint")  # layer counts vs the weights, before transformers builds it
    config = load_hf_model(what, checkpoint, lambda: AutoConfig.from_pretrained(str(checkpoint), local_files_only=True))
    if config.model_type not in ("sam2", "sam2_video"):
        raise ValueError(f"{checkpoint} is a {config.model_type!r} checkpoint, not SAM2")
    cls = Sam2VideoModel if config.model_type == "sam2_video" else Sam2Model
    model = load_hf_model(what, checkpoint, lambda: cls.from_pretrained(str(checkpoint), local_files_only=True,
                                                                       dtype=torch.float32)).eval()
    encoder, decoder, enc, dec, parity = export_image_graphs(model, Path(out_dir), sam2_image_size(config),
                                                             (ENCODER, DECODER), "SAM2")
    for path in (enc, dec):
        write_manifest(path, format="sam2", precision="fp32", source=weights_file(checkpoint), parity=parity,
                       checkpoint=str(checkpoint))
    if cls is not Sam2VideoModel:
        return [enc, dec]
    from reasonseg_export.sam2_track import export_sam2_track

    return [enc, dec, *export_sam2_track(model, Path(out_dir), weights_file(checkpoint), str(checkpoint))]


def export_image_graphs(model, out_dir: Path, size: int, files: tuple[str, str], label: str) -> tuple:
    """The encoder and decoder graphs of a loaded SAM2-style model (SAM2, or SAM 3's tracker: the same prompt
    encoder, mask decoder and `get_image_embeddings`) at `files`, checked against PyTorch:
    (encoder, decoder, encoder path, decoder path, parity)."""
    import torch

    encoder, decoder = _modules(model)
    enc = export_module(encoder, (torch.rand(1, 3, size, size),), out_dir / files[0], inputs=ENCODER_INPUTS,
                        outputs=ENCODER_OUTPUTS)
    trace = {k: torch.from_numpy(v) for k, v in example_decoder_inputs(model, size=size).items()}
    dec = export_module(decoder, tuple(trace.values()), out_dir / files[1], inputs=DECODER_INPUTS,
                        outputs=DECODER_OUTPUTS, dynamic_axes={"point_coords": {1: "num_points"},
                                                               "point_labels": {1: "num_points"},
                                                               "sparse_embeddings": {1: "num_tokens"}})
    return encoder, decoder, enc, dec, check_sam2(encoder, decoder, enc, dec, model, size=size, label=label)


def weights_file(checkpoint: str | Path) -> Path | None:
    """The checkpoint's weights file, the manifests' `source` (None when `checkpoint` is no local folder)."""
    path = Path(checkpoint) / "model.safetensors"
    return path if path.is_file() else None


def check_sam2(encoder, decoder, enc: Path, dec: Path, model, seed: int = 1, *, size: int | None = None,
               label: str = "SAM2") -> dict:
    """PyTorch vs onnxruntime on fresh inputs: a random frame; a box + point, raw tokens only (no points),
    a mask input, and a single ambiguous click (multimask). `size`: the input side (default: the config's)."""
    import torch

    from reasonseg.backends.onnxruntime_graph import open_session

    s = size or sam2_image_size(model.config)
    pixels = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 3, s, s)).astype(np.float32))
    with torch.inference_mode():
        ref = [t.numpy() for t in encoder(pixels)]
    got = open_session(enc, f"{label} encoder").run(None, {"pixel_values": pixels.numpy()})
    out = {name: require_close(f"{label} encoder {name}", r, g, FP32_MAX_REL)
           for name, r, g in zip(ENCODER_OUTPUTS, ref, got)}
    session = open_session(dec, f"{label} decoder")
    cases = {"box_and_point": dict(n_points=3, n_raw=0), "raw_tokens_only": dict(n_points=0, n_raw=2),
             "mask_input": dict(n_points=2, n_raw=0), "one_click_multimask": dict(n_points=1, n_raw=0)}
    for i, (case, shape) in enumerate(cases.items()):
        feeds = example_decoder_inputs(model, seed=seed + 10 + i, size=s, **shape)
        feeds["has_mask_input"][:] = 1.0 if case == "mask_input" else 0.0
        feeds["multimask_output"][:] = 1.0 if case == "one_click_multimask" else 0.0
        if case == "one_click_multimask":
            feeds["point_labels"][:] = 1
        with torch.inference_mode():
            ref = [t.numpy() for t in decoder(*(torch.from_numpy(v) for v in feeds.values()))]
        got = session.run(None, feeds)
        for name, r, g in zip(DECODER_OUTPUTS, ref, got):
            out[f"{case}/{name}"] = require_close(f"{label} decoder {case} {name}", r, g, FP32_MAX_REL)
    out["max_rel_tolerance"] = FP32_MAX_REL
    return out
