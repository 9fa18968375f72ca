"""SAM 3 on onnxruntime: the graphs `reasonseg export sam3` writes, run by the SAM2 runner (the same decoder graph,
prompt encoding, mask choice and, for a video checkpoint's export, the same tracking graphs and memory bank:
`Sam2OnnxStream`) with SAM 3's file names, input side and [-1, 1] normalisation, so masks agree with
`Sam3Segmenter` within the export's tolerance (tests/test_sam3_export.py). An image-only export (sam3_tracker)
has no tracking graphs: its stream refuses, as the torch backend does on that checkpoint."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from reasonseg.core.prompt import Prompt
from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter, Sam2OnnxStream
from reasonseg.segmenters.sam3.graphs import DECODER, ENCODER, START, START_MASK, STEP
from reasonseg.segmenters.sam3.torch_runner import sam3_pixels


class OnnxSam3Segmenter(OnnxSam2Segmenter):
    name, label = "sam3", "SAM 3"
    FILES = {"encoder": ENCODER, "decoder": DECODER, "start": START, "step": STEP, "start_mask": START_MASK}

    def pixels(self, image_rgb: np.ndarray) -> np.ndarray:
        return sam3_pixels(image_rgb, self.input_size)

    def start_stream(self, image_rgb: np.ndarray, prompts: Sequence[Prompt], memory_frames: int) -> Sam2OnnxStream:
        if not self.can_track:
            raise ValueError(f"{self.source} has no tracking graphs (an image-only sam3_tracker export): export a "
                             "sam3_tracker_video / sam3_video checkpoint to track, or track on segmenter.backend=torch")
        return Sam2OnnxStream(self, image_rgb, prompts, memory_frames)
