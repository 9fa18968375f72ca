"""The SAM 3 contract: which transformers checkpoints the torch runner takes, the input it builds, and the ONNX
graphs `reasonseg export sam3` writes and `onnx_runner` runs (both sides import the names from here).

SAM 3's tracker is SAM2's prompt encoder + mask decoder over SAM 3's ViT + FPN neck, so its two graphs have
SAM2's tensor names and layout (`sam2/graphs.py`): only the file names, the input side and the normalisation differ.

* `sam3_encoder.onnx`: pixel_values [1,3,S,S] (mean = std = 0.5) -> the three feature levels;
* `sam3_decoder.onnx`: the features + points / raw sparse tokens / mask input -> low-res mask, IoU, object score.

* `sam3_track_start.onnx` / `sam3_track_step.onnx` / `sam3_track_start_mask.onnx` (a sam3_tracker_video /
  sam3_video checkpoint): SAM2's tracking graphs (`sam2/graphs.py`: START_INPUTS, STEP_INPUTS, START_MASK_INPUTS,
  TRACK_OUTPUTS). SAM 3's memory encoder resizes the 1008-px mask to 4 x 288 = 1152 px, and the mask start graph
  the 252-px downsampled mask to 288, with antialiased resizes ONNX opset 17 has no op for: the export writes
  them as products with constant matrices (`reasonseg_export.sam2_track`).
"""
from __future__ import annotations

from typing import Any

from reasonseg.segmenters.sam2.graphs import (  # noqa: F401 - SAM 3's graphs use SAM2's tensor names
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    FEATURES,
)

ENCODER, DECODER = "sam3_encoder.onnx", "sam3_decoder.onnx"
START, STEP = "sam3_track_start.onnx", "sam3_track_step.onnx"
START_MASK = "sam3_track_start_mask.onnx"
# in the folder `reasonseg export sam3` writes (the last three for a video checkpoint only)
GRAPH_FILES: tuple[str, ...] = (ENCODER, DECODER, START, STEP, START_MASK)
# sam3_tracker: image only (Sam3TrackerModel); sam3_tracker_video: + memory; sam3_video (facebook/sam3, the
# detector + tracker release): its tracker part loads as Sam3TrackerVideoModel (transformers renames the keys)
IMAGE_TYPES, VIDEO_TYPES = ("sam3_tracker",), ("sam3_tracker_video", "sam3_video")
MEAN = (0.5, 0.5, 0.5)  # Sam3ImageProcessor: IMAGENET_STANDARD statistics on [0, 1], not SAM2's ImageNet ones
STD = (0.5, 0.5, 0.5)


def sam3_image_size(config: Any) -> int:
    """The square input side S (1008 for facebook/sam3) of a tracker config: its vision config's, since
    `Sam3TrackerConfig` has no image_size of its own."""
    size = config.vision_config.image_size
    return int(size if isinstance(size, int) else size[0])
