"""SAM 3's tracker (transformers `Sam3TrackerModel` / `Sam3TrackerVideoModel`) -> the ONNX graphs the runtime's
`sam3` onnxruntime backend runs (`reasonseg.segmenters.sam3.onnx_runner.OnnxSam3Segmenter`):

* `sam3_encoder.onnx`: pixel_values [1,3,S,S] (S = 1008 for facebook/sam3; mean = std = 0.5) -> SAM 3's ViT + FPN
  neck -> high_res_feats_0, high_res_feats_1, image_embeddings (no-memory token added), as `get_image_embeddings`;
* `sam3_decoder.onnx`: SAM2's decoder graph (box, points, raw tokens, mask input, one-click multimask).

The tracker's prompt encoder, mask decoder and `get_image_embeddings` are SAM2's, so the graphs and their parity
check are `reasonseg_export.sam2`'s. The ViT's 2-D RoPE is real arithmetic in transformers (cos / sin and a
pairwise rotation; Meta's reference multiplies complex numbers, which no ONNX exporter takes): the export
refuses a graph with a complex tensor, and tests/test_sam3_export.py proves the two RoPEs equal.

A video checkpoint (sam3_tracker_video / sam3_video) also gets `sam2_track.py`'s tracking graphs under SAM 3's
names (`sam3_track_start.onnx`, `sam3_track_step.onnx`, `sam3_track_start_mask.onnx`), with the same parity checks.
SAM 3's memory encoder resizes the S-px mask to 4 x the mask-input side (1152 px for 1008), and the mask start
graph the S / 4 downsampled mask to the mask-input side, with antialiased resizes (no ONNX op at opset 17; SAM2's
sizes match and skip them): the graphs compute them as products with constant matrices, checked against
transformers' own resizes.
"""
from __future__ import annotations

from pathlib import Path

from reasonseg.segmenters.sam3.graphs import (
    DECODER,
    ENCODER,
    IMAGE_TYPES,
    MEAN,
    START,
    START_MASK,
    STD,
    STEP,
    VIDEO_TYPES,
    sam3_image_size,
)
from reasonseg_export.manifest import write_manifest
from reasonseg_export.parity import ParityError
from reasonseg_export.sam2 import export_image_graphs, weights_file

_SPECTRAL_OPS = {"DFT", "STFT"}


def export_sam3(checkpoint: str | Path, out_dir: Path) -> list[Path]:
    """Export the encoder and decoder of a local SAM 3 tracker checkpoint (sam3_tracker, sam3_tracker_video or
    sam3_video: dir or cached HF id), + the tracking graphs for a video one, and check them against PyTorch
    (ParityError over 1e-4 relative)."""
    import torch
    from transformers import AutoConfig, Sam3TrackerModel, Sam3TrackerVideoModel

    from reasonseg.core.model_loading import load_hf_model
    from reasonseg.models.weights import check_model_dir

    what = f"SAM 3 checkpoint {checkpoint}"
    check_model_dir(checkpoint, "SAM 3 checkpoint")  # layer counts vs the weights, before transformers builds it
    config = load_hf_model(what, checkpoint, lambda: AutoConfig.from_pretrained(str(checkpoint), local_files_only=True))
    if config.model_type not in IMAGE_TYPES + VIDEO_TYPES:
        raise ValueError(f"{checkpoint} is a {config.model_type!r} checkpoint, not SAM 3's tracker "
                         f"({' / '.join(IMAGE_TYPES + VIDEO_TYPES)})")
    cls = Sam3TrackerVideoModel if config.model_type in VIDEO_TYPES else Sam3TrackerModel
    model = load_hf_model(what, checkpoint, lambda: cls.from_pretrained(str(checkpoint), local_files_only=True,
                                                                       dtype=torch.float32)).eval()
    size = sam3_image_size(model.config)
    *_, enc, dec, parity = export_image_graphs(model, Path(out_dir), size, (ENCODER, DECODER), "SAM 3")
    require_real(enc)
    for path in (enc, dec):
        write_manifest(path, format="sam3", precision="fp32", source=weights_file(checkpoint), parity=parity,
                       checkpoint=str(checkpoint), input_size=size, mean=list(MEAN), std=list(STD))
    if not isinstance(model, Sam3TrackerVideoModel):
        return [enc, dec]
    from reasonseg_export.sam2_track import export_sam2_track

    return [enc, dec, *export_sam2_track(model, Path(out_dir), weights_file(checkpoint), str(checkpoint),
                                         names=(START, STEP, START_MASK), format="sam3", label="SAM 3")]


def complex_parts(path: Path) -> list[str]:
    """Tensors of a complex type and spectral ops in an ONNX graph (what a `view_as_complex` RoPE would leave)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:  # every intermediate typed, not only those the exporter annotated
        model = onnx.shape_inference.infer_shapes(model)
    except (ValueError, onnx.shape_inference.InferenceError):  # > 2 GB in memory: the annotated ones
        pass
    complex_types = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}
    g = model.graph
    typed = [*g.input, *g.output, *g.value_info]
    found = [v.name for v in typed if v.type.tensor_type.elem_type in complex_types]
    found += [t.name for t in g.initializer if t.data_type in complex_types]
    return found + [f"{n.op_type} node {n.name}" for n in g.node if n.op_type in _SPECTRAL_OPS]


def require_real(path: Path) -> None:
    found = complex_parts(path)
    if found:
        raise ParityError(f"{path.name} has complex parts ({', '.join(found[:3])}): the RoPE must be real arithmetic")
