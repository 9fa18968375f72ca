"""How fast the judged OpenVINO encoders run on this CPU, timed side by side by the set-up step.

Why: int8 (NNCF) trades a little mask agreement with fp32 (mean IoU ~0.975 against bf16's ~0.987) for speed,
and whether it buys any depends on the CPU. With AVX-512 BF16 alone its int8 products run ~1.35x bf16's
(AMD EPYC: 216 vs 288 ms per encoder); with AMX, bf16 tiles are as fast as int8's and the int8 IR ran no faster
(Intel Xeon: 153 vs 145 ms). So `segmenter.precision: auto` on openvino reads this file and takes int8 only
where it was timed `INT8_MIN_SPEEDUP` faster than bf16 here. The file names the CPU and the IRs it timed (their
sha256); a timing of other files or of another CPU is not believed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reasonseg.output_files import write_bytes
from reasonseg.export.cpu_int8 import CPUINFO, read_cpu, this_cpu
from reasonseg.export.manifest import read_manifest

SPEED_FILE = "openvino_speed.json"
PRECISIONS = ("int8", "bf16")
INT8_MIN_SPEEDUP = 1.05  # int8 over bf16 only where it saves at least this much: below, bf16 keeps the masks closer
SPEED_ISA = frozenset({"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni"})  # what decides the race


def cpu_signature() -> dict:
    """This CPU as a timing is tied to it: the model name (a VM's can be generic) and the ISA extensions that
    set int8's pace against bf16's."""
    return {**this_cpu(), "isa": sorted(read_cpu(CPUINFO)[1] & SPEED_ISA)}


def _irs(out_dir: Path) -> dict[str, dict]:
    """The OpenVINO encoders in `out_dir` with a manifest that still describes them: precision -> manifest."""
    from reasonseg.export.lite_sam import encoder_file

    found = {p: read_manifest(out_dir / encoder_file(p, "openvino")) for p in PRECISIONS}
    return {p: record for p, record in found.items() if record}


def time_encoders(out_dir: Path, photo: np.ndarray, rounds: int = 9) -> Path | None:
    """Median ms per encoder run of every judged OpenVINO IR in `out_dir`, interleaved on `photo` (RGB) with the
    runtime's own settings, written to `out_dir/SPEED_FILE`. None (nothing written) with fewer than two IRs."""
    from reasonseg.openvino_graph import OvGraph, compile_config, require_openvino
    from reasonseg.report import interleaved_median_ms
    from reasonseg.export.lite_sam import calibration_feeds, encoder_file

    irs = _irs(out_dir)
    if len(irs) < 2:
        return None
    graphs = {p: OvGraph(out_dir / encoder_file(p, "openvino"), f"LiteSAM encoder {p}", precision=p) for p in irs}
    size = int(graphs["bf16"].inputs[0].shape[-1])
    feed = calibration_feeds([photo], size)[0]
    ms = interleaved_median_ms({p: (lambda g=g: g.run(None, feed)) for p, g in graphs.items()}, rounds)
    record = {"measured_on": cpu_signature(), "runtime": f"openvino {require_openvino().__version__}",
              "threads": compile_config("bf16")["INFERENCE_NUM_THREADS"], "rounds": rounds,
              "encoders": {p: {"file": irs[p]["file"], "sha256": irs[p]["sha256"], "median_ms": ms[p]} for p in irs}}
    target = out_dir / SPEED_FILE
    write_bytes(target, (json.dumps(record, indent=2) + "\n").encode())
    return target


def read_speed(out_dir: Path) -> dict[str, float] | None:
    """precision -> median ms from `out_dir/SPEED_FILE` where it was timed on a CPU like this one
    (`cpu_signature`) and of the IRs now there; else None (no timing, a timing from another machine, or of files
    since re-made)."""
    try:
        record = json.loads((out_dir / SPEED_FILE).read_text())
        timed = record["encoders"]
        if record["measured_on"] != cpu_signature():
            return None
        irs = _irs(out_dir)
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
