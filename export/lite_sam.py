"""LiteSAM (TinyViT image encoder + SAM prompt decoder) -> ONNX, fp32 / fp16 / int8, each checked and described;
for OpenVINO: bf16, an IR of the fp32 encoder, and int8, an IR with NNCF-quantized matrix products
(export/openvino_int8.py), each judged as OpenVINO runs it (encoder and decoder).

fp32 is checked against PyTorch on fresh random inputs (relative error on embeddings and mask logits);
fp16, int8 and bf16 against the fp32 graphs by mask IoU on real photos, through the product's own
pre/post-processing and mask choice (`OnnxLiteSam.predict`), for a fixed set of box prompts per photo.
bf16 is judged only where the CPU runs it natively: elsewhere OpenVINO would not run bf16 at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from reasonseg.backends.cpu_int8 import this_cpu
from reasonseg.core.errors import CheckpointError, ConfigError, one_line
from reasonseg.core.model_cache import sha256
from reasonseg.core.output_files import atomic_target
from reasonseg.segmenters.lite_sam.graphs import ENCODER, encoder_file
from reasonseg_export.manifest import write_manifest
from reasonseg_export.onnx_io import export_module
from reasonseg_export.parity import FP32_MAX_REL, mask_iou, require_close
from reasonseg_export.precision import to_fp16, to_int8

if TYPE_CHECKING:
    from reasonseg.models.lite_sam.configuration import LiteSamConfig
    from reasonseg.models.lite_sam.modeling import LiteSam

# box prompts as fractions of the photo: whole, halves, a centre crop, a corner - objects or not, every
# prompt kind the encoder must keep
EVAL_BOXES = ((0.05, 0.05, 0.95, 0.95), (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75),
              (0.1, 0.4, 0.6, 0.95), (0.55, 0.1, 0.95, 0.5))


def to_openvino_ir(src: Path, dst: Path) -> Path:
    """The ONNX graph as an OpenVINO IR (`dst` .xml + .bin), weights kept fp32 (the runtime picks bf16)."""
    from reasonseg.backends.openvino_graph import require_openvino

    try:  # the core's ONNX reader: the same conversion as `ov.convert_model`, without its usage reporting
        model = require_openvino().Core().read_model(str(src))
    except Exception as exc:  # noqa: BLE001 - OpenVINO's converter errors are long
        raise CheckpointError(f"{src}: OpenVINO cannot convert it: {one_line(exc)}") from None
    return save_ir(model, dst)


def save_ir(model, dst: Path) -> Path:  # noqa: ANN001 - an openvino.Model
    """`model` as `dst` (.xml) + its .bin, fp32 weights kept; both renamed into place, .bin first (a reader
    finds the .bin by the .xml's name), so a crash never leaves a half-written pair under the real names."""
    from reasonseg.backends.openvino_graph import require_openvino

    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(dst, companions=(".bin",)) as tmp:
        require_openvino().save_model(model, str(tmp), compress_to_fp16=False)
    return dst


def export_lite_sam_onnx(model: LiteSam, out_dir: Path) -> tuple[Path, Path]:
    """Write `encoder.onnx` (image [1,3,S,S] -> image_embeddings [1,C,E,E]) and `decoder_multimask.onnx`
    (image_embeddings, point_coords [1,N,2], point_labels [1,N] -> low_res_masks [1,4,S,S],
    iou_predictions [1,4]: every mask token; N dynamic)."""
    import torch

    from reasonseg.segmenters.lite_sam.graphs import (
        DECODER_FILE,
        DECODER_INPUTS,
        DECODER_OUTPUTS,
        ENCODER_INPUTS,
        ENCODER_OUTPUTS,
    )

    class _Decoder(torch.nn.Module):
        def __init__(self, m: LiteSam) -> None:
            super().__init__()
            self.m = m

        def forward(self, emb: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor):  # noqa: ANN202
            return self.m.decode(emb, coords, labels, multimask_output=None)  # all four tokens

    out_dir = Path(out_dir)
    s, e, c = model.cfg.img_size, model.cfg.embedding_size, model.cfg.prompt_dim
    was_training = model.training
    model.eval()
    try:
        enc = export_module(model.image_encoder, (torch.rand(1, 3, s, s),), out_dir / ENCODER,
                            inputs=ENCODER_INPUTS, outputs=ENCODER_OUTPUTS)
        dec = export_module(_Decoder(model), (torch.randn(1, c, e, e),
                                              torch.tensor([[[s * 0.25, s * 0.25], [s * 0.75, s * 0.75]]]),
                                              torch.tensor([[2.0, 3.0]])),
                            out_dir / DECODER_FILE, inputs=DECODER_INPUTS, outputs=DECODER_OUTPUTS,
                            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    finally:
        model.train(was_training)
    return enc, dec


def check_fp32(model: LiteSam, enc: Path, dec: Path, *, seed: int = 0) -> dict:
    """PyTorch vs onnxruntime on inputs the export never saw: a random image, a box plus three points."""
    import torch

    from reasonseg.backends.onnxruntime_graph import open_session
    from reasonseg.segmenters.lite_sam.graphs import DECODER_INPUTS, DECODER_OUTPUTS

    g = torch.Generator().manual_seed(seed)
    s = model.cfg.img_size
    image = torch.rand(1, 3, s, s, generator=g)
    coords = torch.rand(1, 5, 2, generator=g) * s
    labels = torch.tensor([[1.0, 0.0, 1.0, 2.0, 3.0]])
    with torch.inference_mode():
        emb = model.encode(image)
        logits, iou = model.decode(emb, coords, labels, multimask_output=None)
    (emb_ort,) = open_session(enc, "LiteSAM encoder").run(None, {"image": image.numpy()})
    logits_ort, iou_ort = open_session(dec, "LiteSAM decoder").run(
        DECODER_OUTPUTS, dict(zip(DECODER_INPUTS, (emb.numpy(), coords.numpy(), labels.numpy()))))
    return {"image_embeddings": require_close("encoder", emb.numpy(), emb_ort, FP32_MAX_REL),
            "low_res_masks": require_close("decoder", logits.numpy(), logits_ort, FP32_MAX_REL),
            "iou_predictions": require_close("decoder IoU head", iou.numpy(), iou_ort, FP32_MAX_REL),
            "max_rel_tolerance": FP32_MAX_REL}


def masks_iou_vs_fp32(out_dir: Path, candidate: Path, photos: Sequence[np.ndarray],
                      mask_choice: str = "largest_in_box", openvino: str | None = None) -> dict:
    """Mask IoU of `candidate` encoder vs the fp32 one, EVAL_BOXES on every photo: with the fp32 decoder on
    onnxruntime, or with `openvino` (a precision) both candidate graphs run in OpenVINO at that precision."""
    from reasonseg.core.prompt import Prompt
    from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE
    from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam

    ref = OnnxLiteSam(out_dir / ENCODER, out_dir / DECODER_FILE, mask_choice=mask_choice)
    if openvino:
        from reasonseg.backends.openvino_graph import OvGraph

        alt = OnnxLiteSam(OvGraph(candidate, "LiteSAM encoder", precision=openvino),
                          OvGraph(out_dir / DECODER_FILE, "LiteSAM decoder", precision=openvino),
                          mask_choice=mask_choice)
    else:
        alt = OnnxLiteSam(candidate, out_dir / DECODER_FILE, mask_choice=mask_choice)
    from tqdm import tqdm

    ious = []
    for img in tqdm(photos, desc=f"[export] {candidate.name} vs fp32", unit="photo", leave=False):
        h, w = img.shape[:2]
        e_ref, e_alt = ref.encode(img), alt.encode(img)
        for fx0, fy0, fx1, fy1 in EVAL_BOXES:
            p = Prompt(box=(fx0 * w, fy0 * h, fx1 * w, fy1 * h))
            ious.append(mask_iou(ref.predict(e_ref, p).mask, alt.predict(e_alt, p).mask))
    return {"mask_iou_mean": float(np.mean(ious)), "mask_iou_median": float(np.median(ious)),
            "mask_iou_min": float(np.min(ious)), "prompts": len(ious), "photos": len(photos)}


def calibration_feeds(photos: Iterable[np.ndarray], input_size: int) -> list[dict[str, np.ndarray]]:
    from reasonseg.segmenters.lite_sam.runners import preprocess_image

    return [{"image": preprocess_image(p, input_size)[0]} for p in photos]


def export_lite_sam(weights: Path, out_dir: Path, *, precisions: Sequence[str] = ("fp32",),
                    photos: Sequence[np.ndarray] = (), int8_method: str = "dynamic",
                    cfg: LiteSamConfig | None = None) -> list[Path]:
    """Export, check and describe every precision asked for; fp32 always comes first (the others' reference)."""
    from reasonseg.models.lite_sam.configuration import LiteSamConfig
    from reasonseg.models.lite_sam.convert import load_lite_sam

    model = load_lite_sam(Path(weights), cfg or LiteSamConfig())
    enc, dec = export_lite_sam_onnx(model, out_dir)
    parity = check_fp32(model, enc, dec)
    write_manifest(enc, format="lite-sam", precision="fp32", source=weights, parity=parity)
    write_manifest(dec, format="lite-sam", precision="fp32", source=weights, parity=parity)
    written = [enc, dec]
    for precision in precisions:
        if precision == "fp32":
            continue
        if not photos:
            raise ValueError(f"{precision}: needs photos to judge masks against fp32 (and to calibrate int8)")
        if precision == "bf16" or (precision == "int8" and int8_method == "openvino"):
            written.append(export_openvino(out_dir, photos, precision, weights))
            continue
        target = out_dir / encoder_file(precision)
        if precision == "fp16":
            to_fp16(enc, target)
            extra = {}
        elif precision == "int8":
            reduce_range = int8_method == "dynamic"  # 7-bit weights where CPU kernels run it (cpu_int8)
            to_int8(enc, target, method=int8_method, calibration=calibration_feeds(photos, model.cfg.img_size),
                    reduce_range=reduce_range)
            extra = {"int8_method": int8_method, "reduce_range": reduce_range}
        else:
            raise ValueError(f"precision must be fp32, fp16, int8 or bf16, got {precision!r}")
        write_manifest(target, format="lite-sam", precision=precision, source=weights,
                       parity=masks_iou_vs_fp32(out_dir, target, photos), judged_on=this_cpu(), **extra)
        written.append(target)
    return written


def export_openvino(out_dir: Path, photos: Sequence[np.ndarray], precision: str, source: Path | None = None) -> Path:
    """`out_dir`'s fp32 encoder as an OpenVINO IR - `bf16`: as it is, for OpenVINO to run in bf16; `int8`: its
    matrix products quantized (NNCF, calibrated on `photos`) - judged by mask IoU vs fp32 on `photos` as OpenVINO
    runs it (encoder and decoder). Its manifest is what `segmenter.precision: auto` reads on the openvino backend."""
    from reasonseg.backends.openvino_graph import inner_precision, native_bf16, require_openvino

    if precision not in ("bf16", "int8"):
        raise ValueError(f"openvino precision must be bf16 or int8, got {precision!r}")
    if precision == "bf16" and not native_bf16():  # judged where it runs: elsewhere the judgement would be of fp32
        raise ConfigError("bf16: this CPU has no native bf16 (AVX512_BF16 / AMX), so OpenVINO would not run bf16 "
                          "here; export it on the machine that will run it")
    if not photos:
        raise ValueError(f"{precision}: needs photos to judge masks against fp32")
    target = out_dir / encoder_file(precision, "openvino")
    extra = {}
    if precision == "bf16":
        to_openvino_ir(out_dir / ENCODER, target)
    else:
        from reasonseg_export.openvino_int8 import quantize_encoder, require_nncf

        size = int(require_openvino().Core().read_model(str(out_dir / ENCODER)).inputs[0].get_shape()[-1])
        save_ir(quantize_encoder(out_dir / ENCODER, calibration_feeds(photos, size)), target)
        extra = {"int8_method": f"nncf {require_nncf().__version__}", "inner_precision": inner_precision("int8")}
    write_manifest(target, format="lite-sam", precision=precision, source=source or out_dir / ENCODER,
                   parity=masks_iou_vs_fp32(out_dir, target, photos, openvino=precision), judged_on=this_cpu(),
                   runtime=f"openvino {require_openvino().__version__}",
                   weights_sha256=sha256(target.with_suffix(".bin")), **extra)
    return target
