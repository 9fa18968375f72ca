"""The SAM2 ONNX graph contracts: file names and input / output names of the graphs the export tree writes
(`reasonseg export sam2`) and `onnx_runner` runs. Both sides import them from here.

* `sam2_encoder.onnx`: pixel_values [1,3,S,S] -> the three feature levels;
* `sam2_decoder.onnx`: the features + points / raw sparse tokens / mask input -> low-res mask, IoU, object score;
* `sam2_track_start.onnx` / `sam2_track_step.onnx`: memory tracking with the memory bank held by the caller;
  `sam2_track_start_mask.onnx`: the conditioning frame given as a mask (what a LENS / CORA token decodes to).
"""
from __future__ import annotations

from typing import Any

ENCODER, DECODER = "sam2_encoder.onnx", "sam2_decoder.onnx"
START, STEP = "sam2_track_start.onnx", "sam2_track_step.onnx"
START_MASK = "sam2_track_start_mask.onnx"
GRAPH_FILES = (ENCODER, DECODER, START, STEP, START_MASK)  # in the folder `reasonseg export sam2` writes

FEATURES = ["high_res_feats_0", "high_res_feats_1", "image_embeddings"]  # the encoder's three levels
ENCODER_INPUTS, ENCODER_OUTPUTS = ["pixel_values"], FEATURES
DECODER_INPUTS = [*FEATURES, "point_coords", "point_labels", "sparse_embeddings", "mask_input", "has_mask_input",
                  "multimask_output"]
DECODER_OUTPUTS = ["low_res_masks", "iou_predictions", "object_score_logits"]
START_INPUTS = [*FEATURES, "point_coords", "point_labels", "multimask_output"]
STEP_INPUTS = [*FEATURES, "memory", "memory_offsets", "object_pointers", "pointer_offsets"]
START_MASK_INPUTS = [FEATURES[-1], "mask_input"]  # mask_input [1, 1, S, S]: 1 inside the object, 0 outside
TRACK_OUTPUTS = ["low_res_masks", "object_score_logits", "object_pointer", "maskmem_features"]


def sam2_image_size(config: Any) -> int:
    """The square input side S of a transformers SAM2 config (`Sam2Config` / `Sam2VideoConfig`), whose
    `image_size` is an int or an [S, S] pair."""
    size = config.image_size
    return int(size if isinstance(size, int) else size[0])
