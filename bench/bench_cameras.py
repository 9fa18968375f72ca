"""Benchmark: one node, 1 camera vs 3 cameras sharing its models, side by side in one run.

    .venv/bin/python bench/bench_cameras.py [--duration 60] [--hz 10] [--out bench/results]

Each camera streams 640x480 bgr8 at --hz into reasonseg_node over DDS with its own instruction. Reports
per-camera and total masks/s, frame stamp -> mask received latency (median, p95), the share of masks
each camera got (fairness) and the node's RSS. Prints a table and writes JSON under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the node harness lives with the tests

SCENES = {"front": ("dog.jpg", "the dog"), "left": ("dog.jpg", "the white truck"), "right": ("person.jpg", "the horse")}


def run(cache: Path, cameras: list[str], duration: float, hz: float, tmp: Path) -> dict:
    from rosnode_harness import Client, rss_mb, shipped_params, stamp_of, start_node, stop_node, unique_domain_id

    names = cameras if len(cameras) > 1 else [""]
    scenes = {n: SCENES[c] for n, c in zip(names, cameras)}
    frames = {n: cv2.resize(cv2.imread(str(cache / "images" / photo)), (640, 480)) for n, (photo, _) in scenes.items()}
    domain = unique_domain_id()
    proc, log = start_node(tmp, domain, params_file=shipped_params(tmp, lambda p: p.update(cameras=names)))
    client = Client(domain, cameras=tuple(names))
    try:
        client.wait_node_ready(proc)
        for n, (_, text) in scenes.items():
            client.instruct(text, camera=n)
        sent: dict[int, float] = {}
        warm_until = time.monotonic() + 90
        while time.monotonic() < warm_until and len(client.results) < 2 * len(names):  # models warm, grounded
            for n, img in frames.items():
                client.send(img, time.time_ns(), camera=n)
            time.sleep(1.0 / hz)
        client.clear()
        t_start = time.monotonic()
        while (now := time.monotonic()) < t_start + duration:
            for n, img in frames.items():
                stamp = time.time_ns()
                client.send(img, stamp, camera=n)
                sent[stamp] = time.monotonic()
            time.sleep(max(0.0, 1.0 / hz - (time.monotonic() - now)))
        time.sleep(2.0)
        elapsed = time.monotonic() - t_start
        rss = rss_mb(proc.pid)
        per_cam = {}
        with client.lock:
            for n in names:
                lat = [(t - sent[stamp_of(m)]) * 1e3 for t, m in client.cam_masks[n] if stamp_of(m) in sent]
                per_cam[n or "(default)"] = {
                    "masks": len(lat), "masks_per_s": round(len(lat) / elapsed, 3),
                    "latency_ms_median": round(median(lat), 1) if lat else None,
                    "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat else None}
        total = sum(c["masks"] for c in per_cam.values())
        for c in per_cam.values():
            c["share"] = round(c["masks"] / total, 3) if total else 0.0
        return {"cameras": len(names), "hz_per_camera": hz, "duration_s": round(elapsed, 1),
                "masks_per_s_total": round(total / elapsed, 3), "rss_mb": round(rss, 1), "per_camera": per_cam}
    finally:
        client.close()
        stop_node(proc)


def main() -> int:
    from rosnode_harness import use_ros_transport

    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per configuration")
    p.add_argument("--hz", type=float, default=10.0, help="frames per second per camera")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    use_ros_transport()
    cache = resolve_cache_dir()
    report = {}
    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as tmp:
        for cams in (["front"], ["front", "left", "right"]):
            print(f"[bench] {len(cams)} camera(s) at {args.hz:g} Hz each for {args.duration:g} s ...", flush=True)
            report[f"{len(cams)}_cameras"] = run(cache, cams, args.duration, args.hz, Path(tmp))
    one, three = report["1_cameras"], report["3_cameras"]
    report["ratios_3_vs_1"] = {"masks_per_s_total": round(three["masks_per_s_total"] / one["masks_per_s_total"], 3),
                               "rss": round(three["rss_mb"] / one["rss_mb"], 3)}
    rows = []
    for key, r in (("1 camera", one), ("3 cameras", three)):
        for cam, c in r["per_camera"].items():
            rows.append([key, cam, c["masks_per_s"], c["share"], c["latency_ms_median"], c["latency_ms_p95"]])
        rows.append([key, "total", r["masks_per_s_total"], 1.0, "", f"RSS {r['rss_mb']} MB"])
    print(markdown_table(["run", "camera", "masks/s", "share", "latency median ms", "latency p95 ms"], rows))
    print(f"3 vs 1 camera: total masks/s x{report['ratios_3_vs_1']['masks_per_s_total']}, "
          f"RSS x{report['ratios_3_vs_1']['rss']}")
    path = args.out / "cameras.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
