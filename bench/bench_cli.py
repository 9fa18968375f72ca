"""Benchmark: `reasonseg segment` on N images — one process per image (the old way) vs one call for all.

    .venv/bin/python bench/bench_cli.py [--images 6] [--out bench/results]

Uses the sample photos in the model cache (and the evaluation photos when prepared). Prints a table and
writes `cli.json`: wall time per image both ways and the model-load time the one-call form pays once.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = [sys.executable, "-m", "reasonseg.cli.main", "segment"]


def main() -> int:
    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--instruction", default="the person")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    cache = resolve_cache_dir()
    photos = sorted((cache / "images").glob("*.jpg")) + sorted((cache / "eval_photos").glob("*.jpg"))
    photos = photos[: args.images]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for ph in photos:
            shutil.copy(ph, folder / ph.name)
        print(f"[bench] {len(photos)} images, one process each ...", flush=True)
        t0 = time.perf_counter()
        for i, ph in enumerate(photos):
            subprocess.run([*EXE, str(ph), args.instruction, "--out", f"{tmp}/single{i}"], check=True,
                           capture_output=True)
        separate_s = time.perf_counter() - t0
        print(f"[bench] {len(photos)} images, one call ...", flush=True)
        t0 = time.perf_counter()
        subprocess.run([*EXE, str(folder), args.instruction, "--out", f"{tmp}/many"], check=True, capture_output=True)
        one_call_s = time.perf_counter() - t0
        summary = json.loads((Path(tmp) / "many" / "summary.json").read_text())
    n = len(photos)
    report = {"images": n, "instruction": args.instruction,
              "one_process_per_image_s_per_image": round(separate_s / n, 2),
              "one_call_s_per_image": round(one_call_s / n, 2),
              "one_call_model_load_s": round(summary["model_load_ms"] / 1e3, 2),
              "one_call_median_segment_ms": summary["median_ms_per_image"],
              "speedup_x": round(separate_s / one_call_s, 2)}
    print(markdown_table(["wall time per image (2-core CPU)", "seconds"],
                         [["one process per image (models loaded every time)", report["one_process_per_image_s_per_image"]],
                          [f"one call for all {n} (models loaded once)", report["one_call_s_per_image"]],
                          ["  of which model load, once per call", report["one_call_model_load_s"]],
                          ["  median segmentation per image (ms)", report["one_call_median_segment_ms"]],
                          ["speed-up", f"{report['speedup_x']}x"]]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {args.out / 'cli.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
