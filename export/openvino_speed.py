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

from reasonseg.core.output_files import write_bytes
from reasonseg.segmenters.lite_sam.precision import SPEED_FILE, cpu_signature, judged_irs


def time_encoders(out_dir: Path, photo: np.ndarray, rounds: int = 9) -> Path | None:
    """Median ms per encoder run of every judged OpenVINO IR in `out_dir`, interleaved on `photo` (RGB) with the
    runtime's own settings, written to `out_dir/SPEED_FILE`. None (nothing written) with fewer than two IRs."""
    from reasonseg.backends.openvino_graph import OvGraph, compile_config, require_openvino
    from reasonseg.core.report import interleaved_median_ms
    from reasonseg.segmenters.lite_sam.graphs import encoder_file
    from reasonseg_export.lite_sam import calibration_feeds

    irs = judged_irs(out_dir)
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


