"""Which int8 matrix-product kernels onnxruntime runs on this CPU, and whether they saturate.

onnxruntime's MLAS multiplies u8 activations by s8 weights. On x86 without VNNI (AVX2, AVX-512 without VNNI)
it uses VPMADDUBSW, which adds adjacent u8*s8 products into a *saturating* int16: with full-range weights
(|w| <= 127) a pair can reach 2 * 255 * 127 = 64770 and is clipped to 32767. VNNI / AMX (VPDPBUSD: int32
accumulate) and ARM's dot-product and widening kernels are exact. onnxruntime's quantization guide names the
cure: `reduce_range` (7-bit weights, |w| <= 64), under which no pair can pass 2 * 255 * 64 = 32640.

Measured on the LiteSAM encoder's 40 matrix products (6 sample photos, 36 boxes, mean mask IoU vs fp32):
full-range weights 0.982 on AVX-512 VNNI and 0.954 on an AVX2 machine; 7-bit weights 0.975 on VNNI. An int8
file is therefore described by the kernels it was judged on, and made with 7-bit weights by default so that
one file keeps its masks on every CPU.
"""
from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
ARCH = platform.machine()
# /proc/cpuinfo flags of the non-saturating x86 int8 kernels MLAS dispatches to
EXACT_X86_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "avx_vnni_int8"})


def read_cpu(cpuinfo: Path) -> tuple[str, frozenset[str]]:
    """(model name, ISA flags) of this CPU; ("", {}) where /proc/cpuinfo is not there (not Linux)."""
    model, flags = "", frozenset[str]()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 / arm64 spelling
            flags = frozenset(value.split())
    return model, flags


def int8_kernels(arch: str, flags: frozenset[str]) -> str:
    """'exact' or 'saturating' (x86 without VNNI: adjacent u8*s8 pairs clip at int16), 'unknown' otherwise."""
    arch = arch.lower()
    if arch in ("x86_64", "amd64", "i686", "x86"):
        if not flags:
            return "unknown"
        return "exact" if flags & EXACT_X86_FLAGS else "saturating"
    if arch in ("aarch64", "arm64"):
        return "exact"  # SDOT / UDOT or widening multiplies: int32 sums
    return "unknown"


def this_cpu() -> dict[str, str]:
    """What a manifest records about the machine that judged an int8 file."""
    model, flags = read_cpu(CPUINFO)
    return {"cpu": model or platform.processor() or ARCH, "arch": ARCH, "int8_kernels": int8_kernels(ARCH, flags)}


def saturation_risk(record: dict, here: str) -> str | None:
    """Why an int8 file's judged masks may not hold on a CPU with `here` kernels, or None: full-range weights
    judged on exact kernels, run where pairs saturate."""
    judged = (record.get("judged_on") or {}).get("int8_kernels")
    if record.get("reduce_range") or judged != "exact" or here != "saturating":
        return None
    return ("its masks were judged on a CPU with exact int8 kernels and its weights are full-range, but this "
            "CPU has no VNNI (its int8 products saturate)")
