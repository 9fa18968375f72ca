"""Which int8 kernels a CPU runs (from /proc/cpuinfo) and when an int8 file's judged masks do not carry over
to it. The export's 7-bit weights and `auto` on such a CPU: test_export.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from reasonseg.backends.cpu_int8 import int8_kernels, read_cpu, saturation_risk

# /proc/cpuinfo as the kernel prints it, one processor each, flags cut to the telling ones
ZEN4 = """processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9554 64-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: sse2\n"""
SKYLAKE = """processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl\n"""
ALDER_LAKE = "processor\t: 0\nmodel name\t: 12th Gen Intel(R) Core(TM) i7-1265U\nflags\t\t: sse2 avx2 avx_vnni\n"
ORIN = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes asimddp\nCPU part\t: 0xd42\n"


@pytest.mark.parametrize("text, arch, kernels, model", [
    (ZEN4, "x86_64", "exact", "AMD EPYC 9554 64-Core Processor"),
    (SKYLAKE, "x86_64", "saturating", "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"),  # AVX-512 without VNNI
    (ALDER_LAKE, "x86_64", "exact", "12th Gen Intel(R) Core(TM) i7-1265U"),
    (ORIN, "aarch64", "exact", ""),
    ("", "x86_64", "unknown", ""),
])
def test_cpu_int8_kernels_from_cpuinfo(tmp_path: Path, text: str, arch: str, kernels: str, model: str) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    name, flags = read_cpu(info)
    assert name == model and int8_kernels(arch, flags) == kernels
    assert read_cpu(tmp_path / "absent") == ("", frozenset())


def test_saturation_risk_needs_all_three_conditions() -> None:
    full = {"reduce_range": False, "judged_on": {"int8_kernels": "exact"}}
    assert saturation_risk(full, "saturating")
    assert saturation_risk(full, "exact") is None and saturation_risk(full, "unknown") is None
    assert saturation_risk({**full, "reduce_range": True}, "saturating") is None
    assert saturation_risk({"parity": {}}, "saturating") is None  # a manifest from before the field: as judged
