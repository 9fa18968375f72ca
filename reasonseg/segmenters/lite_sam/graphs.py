"""The LiteSAM graph contract: the files the export tree writes (`reasonseg export lite-sam`) and the runners read,
by precision and backend, and their input / output names. Both sides import them from here."""
from __future__ import annotations

WEIGHTS = "lite_sam.safetensors"      # the PyTorch weights in the cache (torch backend; the exporter's source)
FOLDER = "lite_sam"                   # the exported graphs' folder in the cache
ENCODER = "encoder.onnx"              # fp32; reduced precisions: `encoder_file`
DECODER_FILE = "decoder_multimask.onnx"  # all four mask tokens; token 0 is the single-mask output
ENCODER_INPUTS, ENCODER_OUTPUTS = ["image"], ["image_embeddings"]
DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels"]
DECODER_OUTPUTS = ["low_res_masks", "iou_predictions"]


def encoder_file(precision: str, backend: str = "onnxruntime") -> str:
    """The encoder's file name in the cache for `precision` as `backend` runs it."""
    if precision == "bf16" or (backend == "openvino" and precision == "int8"):
        return f"encoder.{precision}.xml"  # OpenVINO IR (+ .bin); bf16 is how OpenVINO runs it, not a file format
    return ENCODER if precision == "fp32" else f"encoder.{precision}.onnx"


def export_command(precision: str, backend: str = "onnxruntime") -> str:
    """The command that makes the encoder `encoder_file(precision, backend)` names (said in error lines)."""
    how = " --int8-method openvino" if backend == "openvino" and precision == "int8" else ""
    return f"reasonseg export lite-sam --precision {precision}{how}"


def _every_file() -> tuple[str, ...]:
    encoders = dict.fromkeys(encoder_file(p, b) for p in ("fp32", "fp16", "int8", "bf16")
                             for b in ("onnxruntime", "openvino"))
    return (WEIGHTS, *(f"{FOLDER}/{e}" for e in encoders), f"{FOLDER}/{DECODER_FILE}")


def graph_files(backend: str, precisions: tuple[str, ...]) -> tuple[str, ...]:
    """The cache files (relative) `backend` may load for those precisions."""
    if backend == "torch":
        return (WEIGHTS,)
    return (*(f"{FOLDER}/{encoder_file(p, backend)}" for p in precisions), f"{FOLDER}/{DECODER_FILE}")


GRAPH_FILES = _every_file()  # every cache file of the contract (the registry rows and export formats name these)
