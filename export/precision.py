"""fp16 and int8 variants of an fp32 ONNX graph (onnxruntime's own converters; I/O stays fp32).

int8 comes two ways, recorded in the manifest:
* `static`: QDQ format (QuantizeLinear/DequantizeLinear pairs) with activation ranges calibrated on a folder
  of images - the form TensorRT reads as explicit quantization;
* `dynamic`: int8 weights, activations quantized per batch at run time (MatMulInteger); onnxruntime CPU only.
  The LiteSAM export gives it 7-bit weights (`reduce_range`): x86 CPUs without VNNI saturate full-range
  products (`cpu_int8`), and one file must keep its masks on whichever CPU runs it.
Measured on the LiteSAM encoder (2 CPU cores, 6 sample photos, mask IoU vs fp32 over 36 box prompts):
quantizing its convolutions costs IoU 0.61-0.68 on AVX2 and 0.75-0.80 on AVX-512 VNNI whichever subset is
chosen (and is no faster there than the matrix products alone), so both quantize the matrix products only
(MatMul / Gemm: 47 % of its time); dynamic per-channel was the faster (1.50x vs 1.40x) and the closer (IoU
0.970 vs 0.965, medians).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from reasonseg.core.output_files import atomic_target

INT8_METHODS = ("static", "dynamic")
MATMUL_OPS = ("MatMul", "Gemm")


def to_fp16(src: Path, dst: Path, *, op_block_list: Sequence[str] = ()) -> Path:
    """fp32 weights and activations -> fp16 inside; inputs and outputs stay fp32 (`keep_io_types`)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                     op_block_list=list(op_block_list) or None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over an iterable of input dicts."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def to_int8(src: Path, dst: Path, *, method: str = "static", calibration: Iterable[dict[str, np.ndarray]] = (),
            op_types: Sequence[str] = MATMUL_OPS, reduce_range: bool = False) -> Path:
    """Quantize `op_types` to int8, per output channel (7-bit weights with `reduce_range`). `static` needs
    `calibration` (model inputs)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if method not in INT8_METHODS:
        raise ValueError(f"int8 method must be one of {INT8_METHODS}, got {method!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger()  # onnxruntime's quantizer advises pre-processing on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with atomic_target(dst) as tmp:  # also removes what the quantizer left beside it under that name
            if method == "dynamic":
                quantize_dynamic(str(src), str(tmp), op_types_to_quantize=list(op_types), per_channel=True,
                                 weight_type=QuantType.QInt8, reduce_range=reduce_range)
            else:
                feeds = list(calibration)
                if not feeds:
                    raise ValueError("static int8 needs calibration inputs (a folder of images)")
                quantize_static(str(src), str(tmp), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(op_types), per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax, reduce_range=reduce_range)
    finally:
        quiet.setLevel(level)
    return dst
