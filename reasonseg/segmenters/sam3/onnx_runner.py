"""SAM 3 on onnxruntime: the graphs `reasonseg export sam3` writes, run by the SAM2 runner (the same decoder graph,
prompt encoding and mask choice) with SAM 3's file names, input side and [-1, 1] normalisation, so masks agree
with `Sam3Segmenter` within the export's tolerance (tests/test_sam3_export.py). Image prompts only: the export has
no tracking graphs yet (`graphs.py` says why); a stream runs on segmenter.backend=torch."""
from __future__ import annotations

from typing import NoReturn, Sequence

import numpy as np

from reasonseg.core.prompt import Prompt
from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter
from reasonseg.segmenters.sam3.graphs import DECODER, ENCODER
from reasonseg.segmenters.sam3.torch_runner import sam3_pixels


class OnnxSam3Segmenter(OnnxSam2Segmenter):
    name, label = "sam3", "SAM 3"
    FILES = {"encoder": ENCODER, "decoder": DECODER, "start": "", "step": "", "start_mask": ""}

    def pixels(self, image_rgb: np.ndarray) -> np.ndarray:
        return sam3_pixels(image_rgb, self.input_size)

    def start_stream(self, image_rgb: np.ndarray, prompts: Sequence[Prompt], memory_frames: int) -> NoReturn:
        raise ValueError(f"{self.source}: SAM 3's ONNX export has no tracking graphs yet; track on "
                         "segmenter.backend=torch (segmenter.model = the checkpoint)")
