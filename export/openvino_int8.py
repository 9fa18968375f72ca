"""An fp32 ONNX encoder -> an OpenVINO model with int8 matrix products (NNCF post-training quantization).

Why NNCF rather than onnxruntime's QDQ: OpenVINO fuses the quantizers NNCF places (SmoothQuant on the matrix
products, fast bias correction) into its int8 kernels. On the LiteSAM encoder, in OpenVINO with bf16 elsewhere,
2 cores with AVX-512 VNNI + BF16, calibrated on the 6 sample photos and their mirror images, judged on the 31
evaluation photos x 6 boxes (mask IoU vs fp32):
  NNCF, matrix products + neck convolutions int8 ... 210 ms, IoU 0.970  (bf16 alone: 285 ms, 0.987)
  onnxruntime static QDQ on the same operations ..... 238 ms, IoU 0.965
  NNCF, every convolution int8 as well .............. 207 ms, IoU 0.934  (below the 0.95 bar)
so the convolutions before the neck (the full-resolution MBConv stage, the local and merging convolutions) stay
in floating point: int8 there costs the masks and buys nothing.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from reasonseg.core.errors import ConfigError

INSTALL_HINT = "install it with `pip install nncf` (the `export` extra has it)"
CONVOLUTIONS = ("Convolution", "GroupConvolution")
KEEP_INT8_CONV = "/neck/"  # the encoder's neck (1x1 + 3x3 convolutions after the last stage): int8 keeps the masks


def require_nncf():
    # NNCF reports usage over the network unless told it runs in CI; an export makes no network calls
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
    except ImportError:
        raise ConfigError(f"int8 for openvino needs the nncf package; {INSTALL_HINT}") from None
    logging.getLogger("nncf").setLevel(logging.WARNING)  # one INFO line per operation it leaves alone
    return nncf


def quantize_encoder(src: Path, calibration: Sequence[dict[str, np.ndarray]]):  # noqa: ANN201 - openvino.Model
    """`src` (ONNX, one input) -> an OpenVINO model with its matrix products and neck convolutions int8
    (per-channel weights, activation ranges from `calibration`), everything else fp32 weights for the runtime
    to run in bf16 or fp32."""
    from reasonseg.backends.openvino_graph import require_openvino

    if not calibration:
        raise ValueError("int8 needs calibration inputs (a folder of photos)")
    ov, nncf = require_openvino(), require_nncf()
    model = ov.Core().read_model(str(src))
    keep_float = [op.get_friendly_name() for op in model.get_ops()
                  if op.get_type_name() in CONVOLUTIONS and KEEP_INT8_CONV not in op.get_friendly_name()]
    name = model.inputs[0].any_name
    quantized = nncf.quantize(model, nncf.Dataset(list(calibration), lambda feed: feed[name]),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(names=keep_float))
    return quantized
