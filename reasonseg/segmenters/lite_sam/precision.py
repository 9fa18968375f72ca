"""Which LiteSAM encoder file a backend loads: file names per precision, and `segmenter.precision: auto`.

The set-up's exports leave a manifest beside each encoder with its mask IoU against fp32 (and for int8 the CPU
that judged it); the OpenVINO pair is also timed side by side on this CPU (`SPEED_FILE`). This module reads
those records, never writes them (the export tree does), and logs why it picked what it picked.
"""
from __future__ import annotations

import json
from pathlib import Path

from reasonseg.backends import cpu_int8
from reasonseg.core.errors import ConfigError, ModelCacheError
from reasonseg.core.graph_manifest import read_manifest
from reasonseg.core.model_cache import check_files, require
from reasonseg.core.settings import SegmenterSettings
from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE, ENCODER, FOLDER, encoder_file, export_command

SPEED_FILE = "openvino_speed.json"


PRECISIONS = ("int8", "bf16")


SPEED_ISA = frozenset({"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni"})  # what decides the race


def cpu_signature() -> dict:
    """This CPU as a timing is tied to it: the model name (a VM's can be generic) and the ISA extensions that
    set int8's pace against bf16's."""
    return {**cpu_int8.this_cpu(), "isa": sorted(cpu_int8.read_cpu(cpu_int8.CPUINFO)[1] & SPEED_ISA)}


def read_speed(out_dir: Path) -> dict[str, float] | None:
    """precision -> median ms from `out_dir/SPEED_FILE` where it was timed on a CPU like this one
    (`cpu_signature`) and of the IRs now there; else None (no timing, a timing from another machine, or of files
    since re-made)."""
    try:
        record = json.loads((out_dir / SPEED_FILE).read_text())
        timed = record["encoders"]
        if record["measured_on"] != cpu_signature():
            return None
        irs = judged_irs(out_dir)
        if set(timed) != set(irs) or any(timed[p]["sha256"] != irs[p]["sha256"] for p in irs):
            return None
        return {p: float(timed[p]["median_ms"]) for p in irs}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def int8_not_worth_it(out_dir: Path) -> str | None:
    """Why bf16 rather than int8 on this CPU (one clause for the log), or None where int8 was timed faster
    enough or there is no timing to go by (then int8 first, as its matrix products suggest)."""
    ms = read_speed(out_dir)
    if not ms or ms["int8"] * INT8_MIN_SPEEDUP <= ms["bf16"]:
        return None
    return (f"int8 timed {ms['int8']:.0f} ms vs bf16 {ms['bf16']:.0f} ms per encoder on this CPU at set-up "
            f"(< {INT8_MIN_SPEEDUP}x faster), so bf16, whose masks are closer to fp32")


AUTO_INT8_MIN_IOU = 0.95  # issue 10: int8 only where it keeps the masks


def _set_encoder(seg: SegmenterSettings, cache: Path, backend: str = "onnxruntime") -> tuple[Path, str]:
    """The encoder file an explicit `segmenter.precision` names, or one line on how to make it."""

    name = f"{FOLDER}/{encoder_file(seg.precision, backend)}"
    if check_files(cache, name) is not None:
        raise ModelCacheError(f"segmenter.precision={seg.precision}: {cache / name} is missing or not the "
                              f"set-up's; make it with `{export_command(seg.precision, backend)}` "
                              "(then run the set-up step again) or set segmenter.precision=auto")
    return cache / name, f"{seg.precision} (set)"


def _judged_iou(cache: Path, precision: str, backend: str = "onnxruntime") -> tuple[float | None, dict | None]:
    """Mean mask IoU vs fp32 the set-up's manifest of the `precision` encoder records (None: no such encoder)."""

    path = cache / FOLDER / encoder_file(precision, backend)
    # absent (a cache from before that export): None; present but damaged: refused like any cache file
    record = read_manifest(require(cache, f"{FOLDER}/{path.name}")) if path.exists() else None
    return (record or {}).get("parity", {}).get("mask_iou_mean"), record


def lite_sam_encoder(seg: SegmenterSettings, cache: Path) -> tuple[Path, str]:
    """The LiteSAM encoder file `segmenter.precision` asks for on onnxruntime, and why that one (logged)."""

    if seg.precision != "auto":
        return _set_encoder(seg, cache)
    int8 = cache / FOLDER / encoder_file("int8")
    iou, record = _judged_iou(cache, "int8")
    risk = cpu_int8.saturation_risk(record, cpu_int8.this_cpu()["int8_kernels"]) if record else None
    if iou is not None and iou >= AUTO_INT8_MIN_IOU and risk is None:
        return int8, f"int8 (auto: mean mask IoU {iou:.3f} vs fp32 >= {AUTO_INT8_MIN_IOU})"
    if risk:
        why = (f"int8 not used: {risk}; judge it here with `reasonseg export lite-sam --precision fp32 int8`, "
               "then run the set-up step again")
    else:
        why = ("no int8 encoder with a manifest" if iou is None
               else f"int8 mean mask IoU {iou:.3f} < {AUTO_INT8_MIN_IOU}")
    return require(cache, f"{FOLDER}/{ENCODER}"), f"fp32 (auto: {why})"


def openvino_encoder(seg: SegmenterSettings, cache: Path) -> tuple[Path, str, str]:
    """The LiteSAM encoder file and precision `segmenter.precision` asks for on openvino, and why (logged).
    auto = int8, then bf16, among those the set-up judged here (mask IoU vs fp32; int8 with the floating-point
    precision this CPU runs around it, bf16 only on native bf16), else fp32; int8 gives way to bf16 where the
    set-up timed it no faster on this CPU (export/openvino_speed.py: AMX runs bf16 as fast as int8)."""
    from reasonseg.backends.openvino_graph import inner_precision, native_bf16

    if seg.precision != "auto":
        return (*_set_encoder(seg, cache, "openvino"), seg.precision) if seg.precision in ("bf16", "int8") else \
            (require(cache, f"{FOLDER}/{ENCODER}"), "fp32 (set)", "fp32")
    why_not: dict[str, str] = {}  # precision -> why it was passed over (the log line names those ahead of the pick)
    judged: dict[str, tuple[float, str]] = {}
    for precision in PRECISIONS:
        iou, record = _judged_iou(cache, precision, "openvino")
        judged_inside = (record or {}).get("inner_precision", precision)
        if precision == "bf16" and not native_bf16():
            why_not[precision] = "this CPU has no native bf16"
        elif iou is None:
            why_not[precision] = (f"no {precision} encoder with a manifest (the set-up step makes them on a CPU "
                                  f"with native bf16: `{export_command(precision, 'openvino')}`)")
        elif judged_inside != inner_precision(precision):
            why_not[precision] = (f"{precision} was judged with {judged_inside} around it, this CPU runs "
                                  f"{inner_precision(precision)}")
        elif iou < AUTO_INT8_MIN_IOU:
            why_not[precision] = f"{precision} mean mask IoU {iou:.3f} < {AUTO_INT8_MIN_IOU}"
        elif precision == "int8" and (risk := cpu_int8.saturation_risk(record or {}, cpu_int8.this_cpu()["int8_kernels"])):
            why_not[precision] = f"int8: {risk}"
        else:
            judged[precision] = (iou, judged_inside)
    if len(judged) == 2 and (cache / FOLDER / SPEED_FILE).exists():
        require(cache, f"{FOLDER}/{SPEED_FILE}")  # the set-up's timing, checksummed like every cache file
        if slower := int8_not_worth_it(cache / FOLDER):
            why_not["int8"] = slower
            del judged["int8"]
    for precision, (iou, judged_inside) in judged.items():
        inside = f"{judged_inside} around it" if precision == "int8" else "native bf16"
        return (cache / FOLDER / encoder_file(precision, "openvino"),
                f"{precision} (auto: {inside}, mean mask IoU {iou:.3f} vs fp32 >= {AUTO_INT8_MIN_IOU}"
                + (f"; {why_not['int8']}" if precision == "bf16" and "int8" in why_not else "") + ")", precision)
    return require(cache, f"{FOLDER}/{ENCODER}"), f"fp32 (auto: {'; '.join(why_not.values())})", "fp32"


def tensorrt_engines(seg: SegmenterSettings, cache: Path) -> list[tuple[Path, str]]:
    """(ONNX file, TensorRT precision) of every engine `segmenter.*` needs: what build-only mode builds and the
    tensorrt backend loads. auto = fp16 on a GPU; int8 needs the calibrated QDQ encoder (static method)."""
    if seg.kind != "lite_sam":
        raise ConfigError(f"segmenter.kind {seg.kind} has no tensorrt backend yet (export its ONNX with "
                          "`reasonseg export` and use segmenter.backend=onnxruntime with the TensorRT provider)")
    precision = "fp16" if seg.precision == "auto" else seg.precision
    enc = require(cache, f"{FOLDER}/{encoder_file(precision if precision == 'int8' else 'fp32')}")
    if precision == "int8" and (read_manifest(enc) or {}).get("int8_method") != "static":
        raise ConfigError("segmenter.precision=int8 on tensorrt needs the calibrated QDQ encoder: "
                          "reasonseg export lite-sam --precision int8 --int8-method static")
    decoder = require(cache, f"{FOLDER}/{DECODER_FILE}")
    return [(enc, precision), (decoder, "fp16" if precision == "int8" else precision)]


INT8_MIN_SPEEDUP = 1.05  # int8 over bf16 only where it saves at least this much: below, bf16 keeps the masks closer


def judged_irs(out_dir: Path) -> dict[str, dict]:
    """The OpenVINO encoders in `out_dir` with a manifest that still describes them: precision -> manifest."""

    found = {p: read_manifest(out_dir / encoder_file(p, "openvino")) for p in PRECISIONS}
    return {p: record for p, record in found.items() if record}
