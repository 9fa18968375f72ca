"""The SAM 3 contract: which transformers checkpoints the torch runner takes, the input it builds, and the ONNX
graphs `reasonseg export sam3` writes and `onnx_runner` runs (both sides import the names from here).

SAM 3's tracker is SAM2's prompt encoder + mask decoder over SAM 3's ViT + FPN neck, so its two graphs have
SAM2's tensor names and layout (`sam2/graphs.py`): only the file names, the input side and the normalisation differ.

* `sam3_encoder.onnx`: pixel_values [1,3,S,S] (mean = std = 0.5) -> the three feature levels;
* `sam3_decoder.onnx`: the features + points / raw sparse tokens / mask input -> low-res mask, IoU, object score.

No tracking graphs yet: SAM 3's memory encoder resizes the 1008-px mask to 4 x 288 = 1152 px with an
antialiased resize ONNX opset 17 has no op for (SAM2's sizes match and skip it), so tracking runs on torch.
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
GRAPH_FILES: tuple[str, ...] = (ENCODER, DECODER)  # in the folder `reasonseg export sam3` writes
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
