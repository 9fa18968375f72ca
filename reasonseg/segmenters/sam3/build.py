"""SAM 3's tracker on each backend it runs on: a checkpoint on torch, the folder `reasonseg export sam3` wrote on
onnxruntime (SAM2's builders, `sam2.build.SamBuilders`, with SAM 3's runners and file names)."""
from __future__ import annotations

from reasonseg.segmenters.sam2.build import SamBuilders
from reasonseg.segmenters.sam3.graphs import ENCODER


def _torch_runner() -> type:
    from reasonseg.segmenters.sam3.torch_runner import Sam3Segmenter

    return Sam3Segmenter


def _onnx_runner() -> type:
    from reasonseg.segmenters.sam3.onnx_runner import OnnxSam3Segmenter

    return OnnxSam3Segmenter


SAM3 = SamBuilders("sam3", "SAM 3", ENCODER, "HF id or local dir of a sam3_tracker / sam3_tracker_video / sam3_video "
                   "checkpoint, e.g. facebook/sam3", _torch_runner, _onnx_runner)
build_torch, build_onnxruntime, auto_backend = SAM3.build_torch, SAM3.build_onnxruntime, SAM3.auto_backend
