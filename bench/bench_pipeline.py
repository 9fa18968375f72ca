"""Benchmark: per-stage medians, end-to-end node latency, throughput, memory and node overhead.

    .venv/bin/python bench/bench_pipeline.py [--duration 600] [--fps 30] [--out bench/results]

Part 1 (in process): medians of detector, LiteSAM encoder/decoder on every backend here side by side (auto:
what the shipped default runs on this machine), local resolver, and an LLM round trip against a stub OpenAI
server on 127.0.0.1 (client cost only).
Part 1b (`frame_sequence`): one refine frame's sessions back to back (detector -> encoder -> decoder), in
fresh processes, onnxruntime's idle threads sleeping (as open_session sets) vs spinning (onnxruntime's
default), alternated; and the encoder alone, back to back (the one case spinning helps).
Part 2 (real node over DDS): 640x480 bgr8 at --fps for --duration seconds into reasonseg_node; reports
frame-stamp -> mask-received latency, masks/s vs frames/s, node RSS over time (flatness), stale-frame
drops and the node's own overhead (image conversion + publishing) as a share of pipeline compute.
Prints a table and writes JSON (+ soak.png: node RSS and every mask's latency over the soak) under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import median

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the stub OpenAI server and the node harness live with the tests
BOX = (375.0, 60.0, 565.0, 140.0)  # the truck in the 640x480 frame: the decoder's box prompt


def frame_bgr(cache: Path) -> np.ndarray:
    """The benchmark's camera frame: the sample dog photo at 640x480, BGR as a camera driver sends it."""
    return cv2.resize(cv2.imread(str(cache / "images" / "dog.jpg")), (640, 480))


def bench_stages(cache: Path, repeats: int) -> dict:
    from openai_server import OpenAiServer

    from reasonseg.core.errors import ReasonSegError
    from reasonseg.core.report import median_ms
    from reasonseg.core.settings import Settings
    from reasonseg.grounding.detector import COCO_LABELS, CenterNetDetector
    from reasonseg.grounding.label_resolver import LabelResolver
    from reasonseg.grounding.llm.client import ChatLlm
    from reasonseg.grounding.text_embedding import TextEmbedder
    from reasonseg.segmenters.registry import BACKENDS, build_segmenter

    image = frame_bgr(cache)[:, :, ::-1].copy()
    settings = Settings()
    det = CenterNetDetector(cache / "centernet.onnx")
    out = {"detector": median_ms(lambda: det.detect(image), repeats)}
    for backend in BACKENDS:
        try:
            seg = build_segmenter(Settings(segmenter=type(settings.segmenter)(backend=backend)).segmenter, cache)
        except ReasonSegError as exc:  # tensorrt where it is not installed
            print(f"[bench] skipping sam_encoder[{backend}]: {exc}", flush=True)
            continue
        emb = seg.encode(image)
        out[f"sam_encoder[{backend}]"] = median_ms(lambda: seg.encode(image), repeats)
        out[f"sam_decoder[{backend}]"] = median_ms(lambda: seg.decode(emb, BOX), repeats)
    resolver = LabelResolver(COCO_LABELS, TextEmbedder(cache / "minilm"))
    words = iter(f"the parked vehicle number {i}" for i in range(10_000))  # uncached phrases
    out["local_resolver"] = median_ms(lambda: resolver.resolve(next(words)), repeats)
    with OpenAiServer() as srv:
        srv.behaviour = lambda m: '{"labels": ["truck"], "reference_labels": []}'
        llm = ChatLlm("stub", base_url=srv.base_url, api_key="k", timeout_s=5)
        # complete(), not pre_refine(): validated answers are memoised, so a repeat would measure the memo
        out["llm_roundtrip_stub"] = median_ms(lambda: llm.complete("system", '{"instruction": "the white truck"}'),
                                               repeats)
    return out


def frame_sequence_child(spin: bool, repeats: int) -> dict:
    """Median ms of detector, encoder, decoder and the whole frame, run one after the other as the node does;
    then of the encoder run alone, back to back."""
    if spin:  # what open_session ran before it set allow_spinning = 0: onnxruntime's default
        import onnxruntime as ort

        real = ort.SessionOptions.add_session_config_entry
        ort.SessionOptions.add_session_config_entry = (
            lambda self, key, value: real(self, key, "1" if key == "session.intra_op.allow_spinning" else value))
    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.settings import Settings
    from reasonseg.grounding.detector import CenterNetDetector
    from reasonseg.segmenters.registry import build_segmenter

    cache = resolve_cache_dir()
    image = frame_bgr(cache)[:, :, ::-1].copy()
    det, seg = CenterNetDetector(cache / "centernet.onnx"), build_segmenter(Settings().segmenter, cache)
    times: dict[str, list[float]] = {"detector": [], "encoder": [], "decoder": [], "frame": []}
    for i in range(repeats + 2):  # two warm-up frames
        t0 = time.perf_counter()
        det.detect(image)
        t1 = time.perf_counter()
        emb = seg.encode(image)
        t2 = time.perf_counter()
        seg.decode(emb, BOX)
        t3 = time.perf_counter()
        if i >= 2:
            for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                times[name].append(dt * 1e3)
    times["encoder alone"] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        seg.encode(image)
        times["encoder alone"].append((time.perf_counter() - t0) * 1e3)
    return {name: round(median(v), 1) for name, v in times.items()}


def bench_frame_sequence(repeats: int, rounds: int = 3) -> dict:
    """frame_sequence_child in fresh processes, sleeping and spinning alternated `rounds` times; medians over
    rounds of the per-round medians, and spinning / sleeping ratios."""
    import subprocess

    runs: dict[str, list[dict]] = {"sleeping": [], "spinning": []}
    for _ in range(rounds):
        for variant, results in runs.items():
            out = subprocess.run([sys.executable, __file__, "--frame-sequence-child", variant, "--repeats",
                                  str(repeats)], check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    med = {v: {k: round(median(r[k] for r in rs), 1) for k in rs[0]} for v, rs in runs.items()}
    ratio = {k: round(med["spinning"][k] / med["sleeping"][k], 3) for k in med["sleeping"]}
    return {"median_ms": med, "ratio_spinning_over_sleeping": ratio, "rounds": runs}


def bench_node(cache: Path, duration: float, fps: float, out_dir: Path, node_params: tuple[str, ...] = ()) -> dict:
    from rosnode_harness import Client, rss_mb, stamp_of, start_node, stop_node, unique_domain_id, use_ros_transport

    use_ros_transport()

    image = frame_bgr(cache)
    domain = unique_domain_id()
    proc, log = start_node(out_dir, domain, "runtime.reground_period_s:=5.0", *node_params)
    client = Client(domain)
    diag: list = []
    from diagnostic_msgs.msg import DiagnosticArray
    client.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.append(m), 10)
    try:
        client.wait_node_ready(proc)
        client.instruct("the dog")
        sent: dict[int, float] = {}
        rss: list[tuple[float, float]] = []
        t_start = time.monotonic()
        next_rss, k = t_start, 0
        period = 1.0 / fps
        while (now := time.monotonic()) < t_start + duration:
            stamp = time.time_ns()
            client.send(image, stamp)
            sent[stamp] = now
            if now >= next_rss:
                rss.append((round(now - t_start, 1), round(rss_mb(proc.pid), 1)))
                next_rss += 10.0
                if k % 6 == 0:
                    print(f"  t={now - t_start:5.0f}s  rss={rss[-1][1]:.0f} MB  masks={len(client.masks)}", flush=True)
                k += 1
            time.sleep(max(0.0, t_start + len(sent) * period - time.monotonic()))
        time.sleep(3.0)
        elapsed = time.monotonic() - t_start
        with client.lock:
            masks = [(t, stamp_of(m)) for t, m in client.masks if stamp_of(m) in sent]
            results = [m for _, m in client.results]
        lat_e2e = [(t - sent[s]) * 1e3 for t, s in masks]  # stamp (= send time) -> mask received
        lat_series = [(round(sent[s] - t_start, 2), round(ms, 1)) for (_, s), ms in zip(masks, lat_e2e)]
        stages: dict[str, list[float]] = {}
        for r in results:
            for name, v in zip(r.stage_names, r.stage_ms):
                stages.setdefault(name, []).append(v)
        last = {kv.key: kv.value for kv in diag[-1].status[0].values} if diag else {}
        overhead, compute = float(last.get("ros_overhead_total_s", "nan")), float(last.get("compute_total_s", "nan"))
        warm = [r for t, r in rss if t >= min(60.0, duration / 5)]
        first, final = (median(warm[: max(1, len(warm) // 5)]), median(warm[-max(1, len(warm) // 5):])) if warm else (0, 0)
        return {
            "duration_s": round(elapsed, 1), "frames_in": len(sent), "frames_per_s": round(len(sent) / elapsed, 2),
            "masks": len(masks), "masks_per_s": round(len(masks) / elapsed, 3),
            "frames_dropped_stale": int(last.get("frames_dropped_stale", -1)),
            "latency_stamp_to_mask_ms_median": round(median(lat_e2e), 1) if lat_e2e else None,
            "latency_stamp_to_mask_ms_p95": round(float(np.percentile(lat_e2e, 95)), 1) if lat_e2e else None,
            "node_stage_medians_ms": {k: round(median(v), 1) for k, v in stages.items()},
            "node_overhead_s": overhead, "node_compute_s": compute,
            "node_overhead_ratio": round(overhead / compute, 4) if compute else None,
            "rss_mb_start_median": round(first, 1), "rss_mb_end_median": round(final, 1),
            "rss_growth_mb": round(final - first, 1), "rss_series": rss, "latency_series": lat_series,
        }
    finally:
        client.close()
        stop_node(proc)


def main() -> int:
    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="node soak seconds (acceptance: 600)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--skip-node", action="store_true")
    p.add_argument("--skip-frame-sequence", action="store_true")
    p.add_argument("--frame-sequence-child", choices=("sleeping", "spinning"), help=argparse.SUPPRESS)
    p.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                   help="node parameter over the shipped YAML, repeatable: --node-param segmenter.precision:=fp32")
    args = p.parse_args()
    if args.frame_sequence_child:
        print(json.dumps(frame_sequence_child(args.frame_sequence_child == "spinning", args.repeats)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    cache = resolve_cache_dir()
    print("[bench] per-stage medians (640x480, in process) ...", flush=True)
    report = {"stages_ms": bench_stages(cache, args.repeats)}
    if not args.skip_frame_sequence:
        print("[bench] frame sequence, onnxruntime threads sleeping vs spinning (fresh processes) ...", flush=True)
        report["frame_sequence"] = bench_frame_sequence(args.repeats)
    if not args.skip_node:
        print(f"[bench] node soak: {args.fps:g} Hz for {args.duration:g} s ...", flush=True)
        report["node"] = bench_node(cache, args.duration, args.fps, args.out, tuple(args.node_param))
        report["node"]["params"] = args.node_param
    rows = [[k, v] for k, v in report["stages_ms"].items()]
    print(markdown_table(["stage (median ms)", "value"], rows))
    if "frame_sequence" in report:
        fs = report["frame_sequence"]
        rows = [[k, fs["median_ms"]["sleeping"][k], fs["median_ms"]["spinning"][k],
                 f"{fs['ratio_spinning_over_sleeping'][k]:.2f}x"] for k in fs["median_ms"]["sleeping"]]
        print(markdown_table(["frame sequence (median ms)", "threads sleep (shipped)", "threads spin", "spin / sleep"],
                             rows))
    if "node" in report:
        n = report["node"]
        rows = [[k, v] for k, v in n.items()
                if k not in ("rss_series", "latency_series", "node_stage_medians_ms", "params")]
        rows += [[f"node stage {k} (median ms)", v] for k, v in n["node_stage_medians_ms"].items()]
        print(markdown_table(["node soak", "value"], rows))
        _plot_soak(n["rss_series"], n["latency_series"], args.out / "soak.png")
    path = args.out / "bench.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {path}")
    return 0


def _plot_soak(rss: list, latency: list, path: Path) -> None:
    """Two panels over the soak, drawn with OpenCV (no plotting dependency): node RSS after start-up (MB, its
    own narrow scale, so growth would show) and every mask's latency (ms) with the median line."""
    from reasonseg.core.output_files import write_png

    warm = [(t, r) for t, r in rss if t > 0]  # the first sample is the node still loading its models
    if len(warm) < 2 or not latency:
        return
    w, panel_h, left, pad = 760, 200, 70, 28
    img = np.full((2 * panel_h + 2 * pad, w, 3), 255, np.uint8)
    t_max = max(max(t for t, _ in warm), max(t for t, _ in latency))
    font, black, grey = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0), (200, 200, 200)

    def panel(top: int, series: list, lo: float, hi: float, title: str, unit: str, dots: bool) -> None:
        y0, y1 = top + pad, top + panel_h
        cv2.rectangle(img, (left, y0), (w - 10, y1), grey, 1)
        cv2.putText(img, title, (left, top + 18), font, 0.5, black, 1, cv2.LINE_AA)
        for v in (lo, hi):
            y = int(y1 - (v - lo) / (hi - lo) * (y1 - y0))
            cv2.putText(img, f"{v:.0f} {unit}", (4, y + 4), font, 0.4, black, 1, cv2.LINE_AA)
        pts = np.array([[left + t / t_max * (w - 10 - left), y1 - (v - lo) / (hi - lo) * (y1 - y0)]
                        for t, v in series], np.int32)
        if dots:
            for x, y in pts:
                cv2.circle(img, (int(x), int(y)), 1, (200, 60, 0), -1)
        else:
            cv2.polylines(img, [pts], False, (200, 60, 0), 2)

    r = np.array([v for _, v in warm])
    panel(0, warm, r.min() - 10, r.max() + 10,
          f"node RSS after start-up: {r.min():.0f}-{r.max():.0f} MB over {t_max:.0f} s", "MB", dots=False)
    lat = np.array([v for _, v in latency])
    top, hi = panel_h + pad, float(np.percentile(lat, 99.5)) * 1.1
    med = float(np.median(lat))
    panel(top, [(t, min(v, hi)) for t, v in latency], 0.0, hi,
          f"frame stamp -> mask latency, {len(lat)} masks: median {med:.0f} ms, p95 {np.percentile(lat, 95):.0f} ms",
          "ms", dots=True)
    y_med = int(top + panel_h - med / hi * (panel_h - pad))
    cv2.line(img, (left, y_med), (w - 10, y_med), (0, 140, 0), 1)
    cv2.putText(img, f"t = 0 .. {t_max:.0f} s", (w - 140, 2 * panel_h + 2 * pad - 8), font, 0.4, black, 1,
                cv2.LINE_AA)
    write_png(path, img)


if __name__ == "__main__":
    sys.exit(main())
