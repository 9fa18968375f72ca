"""The SAM 3 contract: which transformers checkpoints the torch runner takes and the input it builds. No ONNX
graphs yet (`GRAPH_FILES` is empty): an exporter would add its file and tensor names here, as `sam2/graphs.py`."""
from __future__ import annotations

from typing import Any

GRAPH_FILES: tuple[str, ...] = ()
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
