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
Part 3 (`propagation`, in process, real video): per-frame segmentation vs key frames + optical flow
(runtime.keyframe_period of the shipped YAML) on the same frames of a street video — the mask IoU of every
propagated frame against per-frame segmentation, the flow's cost, and why extra key frames were taken.
The video is vtest.avi (768x576, 10 fps, pedestrians on a plaza) from Debian's opencv-doc 4.6.0, fetched once
into <cache>/videos/ and checked by sha256; the node soak streams it too (looped) unless --still.
--compare-keyframes runs the node soak twice on the same stream, side by side: every frame segmented
(runtime.keyframe_period:=1) and the shipped key frames + propagation.
Prints a table and writes JSON (+ soak.png: node RSS and every mask's latency over the soak) under --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from statistics import median

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the stub OpenAI server and the node harness live with the tests
BOX = (375.0, 60.0, 565.0, 140.0)  # the truck in the 640x480 frame: the decoder's box prompt
SHIPPED_YAML = ROOT / "ros_ws" / "src" / "reasonseg_bringup" / "config" / "driving.yaml"


def frame_bgr(cache: Path) -> np.ndarray:
    """The benchmark's camera frame: the sample dog photo at 640x480, BGR as a camera driver sends it."""
    return cv2.resize(cv2.imread(str(cache / "images" / "dog.jpg")), (640, 480))


# A real street video with moving people: Debian's opencv-doc ships OpenCV's sample data (Apache-2.0 / BSD-3).
VIDEO = {"package": "opencv-doc", "version": "4.6.0+dfsg-12",
         "member": "usr/share/doc/opencv-doc/examples/data/vtest.avi",
         "sha256": "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"}
VIDEO_INSTRUCTIONS = ("the person on the left", "the person in the middle", "the nearest person")


def street_video(cache: Path) -> Path:
    """vtest.avi in the cache, fetched from Debian once (apt-get download + dpkg-deb) and checked by sha256."""
    import hashlib
    import shutil
    import subprocess
    import tempfile

    dest = cache / "videos" / Path(VIDEO["member"]).name
    if not dest.is_file():
        print(f"[bench] fetching {dest.name} from Debian {VIDEO['package']} {VIDEO['version']} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="reasonseg-video-") as tmp:
            subprocess.run(["apt-get", "download", f"{VIDEO['package']}={VIDEO['version']}"], cwd=tmp, check=True,
                           capture_output=True)
            deb = next(Path(tmp).glob(f"{VIDEO['package']}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / "x" / VIDEO["member"], dest)
            shutil.copy(Path(tmp) / "x" / "usr/share/doc/opencv-doc/copyright", dest.parent / "COPYRIGHT.opencv-doc")
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    if digest != VIDEO["sha256"]:
        raise SystemExit(f"{dest}: sha256 {digest} is not the pinned {VIDEO['sha256']}: delete it and run again")
    return dest


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first `count` frames, BGR as a camera driver sends them."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def bench_propagation(frames_bgr: list[np.ndarray], instructions: tuple[str, ...], sheet: Path) -> dict:
    """Per-frame segmentation vs key frames + optical flow on the same frames, shipped YAML settings; `sheet`:
    a contact sheet of propagated frames (per-frame overlay | propagated mask | propagated overlay)."""
    from reasonseg.core.render import contact_sheet, render_overlay
    from reasonseg.core.timing import Timer
    from reasonseg.grounding.selection import box_iou
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.runtime.propagation import MaskPropagator
    from reasonseg.settings.loading import load_settings
    from reasonseg_export.parity import mask_iou

    settings = load_settings(SHIPPED_YAML, "reasonseg_node")
    pipeline = build_pipeline(settings)
    frames = [f[:, :, ::-1].copy() for f in frames_bgr]
    out: dict = {"keyframe_period": settings.runtime.keyframe_period, "frames": len(frames), "instructions": {}}
    all_iou: list[float] = []
    rows = []
    for text in instructions:
        first = frames[0]
        analysis = pipeline.analyse(first, Timer())
        grounding = pipeline.ground(first, text, analysis)
        per_frame, per_frame_ms = [], []
        track = pipeline.start(first, grounding, analysis)
        for f in frames:
            t0 = time.perf_counter()
            per_frame.append(track.step(f, pipeline.analyse(f, Timer())))
            per_frame_ms.append((time.perf_counter() - t0) * 1e3)
        track.close()
        # The reference's own frame-to-frame agreement: each per-frame mask carried one frame by flow against the
        # next per-frame mask. Small people's masks jitter; propagation cannot agree with them better than this.
        one_step = dataclasses.replace(settings.runtime, keyframe_period=2, flow_min_consistency=0.0,
                                       flow_max_area_change=1e9)
        self_iou = []
        for i in range(1, len(frames)):
            if per_frame[i - 1].valid and per_frame[i].valid:
                carry = MaskPropagator(one_step)
                carry.key(frames[i - 1], per_frame[i - 1])
                moved = carry.propagate(frames[i])
                if moved is not None:
                    self_iou.append(mask_iou(moved.mask, per_frame[i].mask))
        track = pipeline.start(first, grounding, analysis)
        prop = MaskPropagator(settings.runtime)
        ious, flow_ms, kinds, why, ref_missing, other_instance = [], [], [], {}, 0, 0
        for i, f in enumerate(frames):
            result = prop.propagate(f) if i else None
            if result is None:
                if i:  # "key frame every 10 frames", "flow 62% consistent", ...: counted by kind
                    kind = prop.why_key.split(" (")[0].split(",")[0]
                    why[kind] = why.get(kind, 0) + 1
                result = track.step(f, pipeline.analyse(f, Timer()))
                prop.key(f, result)
                kinds.append("K")
                continue
            kinds.append("P")
            track.carried(result)  # as the engine does: the next key frame follows the moved boxes
            flow_ms.append(sum(result.timings_ms.values()))
            if not per_frame[i].valid:  # nothing to compare with (counted apart)
                ref_missing += 1
                continue
            if not any(box_iou(a, b) > 0 for a in result.boxes for b in per_frame[i].boxes):
                other_instance += 1  # per-frame re-acquired another person: a choice, not the flow's error
                continue
            ious.append(mask_iou(result.mask, per_frame[i].mask))
            if i % 50 == 25:  # a few per instruction, wherever they fall in the key-frame cycle
                rows.append((render_overlay(f, per_frame[i], text), result.mask.astype(np.uint8) * 255,
                             render_overlay(f, result, text),
                             f"frame {i}: per-frame | propagated, {kinds[::-1].index('K')} after a key frame: "
                             f"IoU {ious[-1]:.2f}"))
        track.close()
        all_iou += ious
        out["instructions"][text] = {
            "grounding": grounding.reasoning, "per_frame_found": sum(r.valid for r in per_frame),
            "propagated_frames": kinds.count("P"), "key_frames": kinds.count("K"),
            "propagated_where_per_frame_found_none": ref_missing,
            "propagated_where_per_frame_chose_another_instance": other_instance,
            "iou_median": round(median(ious), 3) if ious else None,
            "iou_p10": round(float(np.percentile(ious, 10)), 3) if ious else None,
            "per_frame_self_iou_median": round(median(self_iou), 3) if self_iou else None,
            "mask_area_px_median": int(median(int(r.mask.sum()) for r in per_frame)),
            "per_frame_ms_median": round(median(per_frame_ms), 1),
            "propagation_ms_median": round(median(flow_ms), 1) if flow_ms else None,
            "extra_key_frames_because": why, "sequence": "".join(kinds)}
        print(f"  {text!r}: IoU median {out['instructions'][text]['iou_median']} over {len(ious)} propagated "
              f"frames ({ref_missing} more where per-frame found none, {other_instance} where it chose another "
              f"instance); per-frame {out['instructions'][text]['per_frame_ms_median']} ms, flow "
              f"{out['instructions'][text]['propagation_ms_median']} ms", flush=True)
    cv2.imwrite(str(sheet), contact_sheet(rows)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    out["iou_median_all"] = round(median(all_iou), 3) if all_iou else None
    out["iou_p10_all"] = round(float(np.percentile(all_iou, 10)), 3) if all_iou else None
    return out


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


def bench_node(frames: list[np.ndarray], instruction: str, duration: float, fps: float, out_dir: Path,
               node_params: tuple[str, ...] = ()) -> dict:
    from rosnode_harness import Client, rss_mb, stamp_of, start_node, stop_node, unique_domain_id, use_ros_transport

    use_ros_transport()

    domain = unique_domain_id()
    proc, log = start_node(out_dir, domain, "runtime.reground_period_s:=5.0", *node_params)
    client = Client(domain)
    diag: list = []
    from diagnostic_msgs.msg import DiagnosticArray
    client.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.append(m), 10)
    try:
        client.wait_node_ready(proc)
        client.instruct(instruction)
        sent: dict[int, float] = {}
        rss: list[tuple[float, float]] = []
        t_start = time.monotonic()
        next_rss, k = t_start, 0
        period = 1.0 / fps
        while (now := time.monotonic()) < t_start + duration:
            stamp = time.time_ns()
            client.send(frames[len(sent) % len(frames)], stamp)
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
        kinds = [r.mask_source for r in results]
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
            "masks_segmented": kinds.count("segmented"), "masks_propagated": kinds.count("propagated"),
            "masks_found": sum(r.valid for r in results),
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
    p.add_argument("--still", action="store_true", help="node soak on the sample dog photo instead of the video")
    p.add_argument("--video-frames", type=int, default=200, help="frames of the video for the propagation part")
    p.add_argument("--skip-propagation", action="store_true")
    p.add_argument("--compare-keyframes", action="store_true",
                   help="node soak twice, side by side: every frame segmented vs the shipped key frames")
    p.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                   help="node parameter over the shipped YAML, repeatable: --node-param segmenter.precision:=fp32")
    args = p.parse_args()
    if args.frame_sequence_child:
        print(json.dumps(frame_sequence_child(args.frame_sequence_child == "spinning", args.repeats)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    cache = resolve_cache_dir()
    print("[bench] per-stage medians (640x480, in process) ...", flush=True)
    from reasonseg.backends.cpu_int8 import CPUINFO, read_cpu

    model, flags = read_cpu(CPUINFO)
    report = {"cpu": {"model": model, "cores": os.cpu_count(),
                      "isa": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma")))}}
    report["stages_ms"] = bench_stages(cache, args.repeats)
    if not args.skip_frame_sequence:
        print("[bench] frame sequence, onnxruntime threads sleeping vs spinning (fresh processes) ...", flush=True)
        report["frame_sequence"] = bench_frame_sequence(args.repeats)
    video = None if args.still and args.skip_propagation else street_video(cache)
    report["video"] = {**VIDEO, "path": str(video)} if video else None
    if not args.skip_propagation:
        print(f"[bench] propagation on {video.name}: per-frame vs key frames + optical flow ...", flush=True)
        report["propagation"] = bench_propagation(video_frames(video, args.video_frames), VIDEO_INSTRUCTIONS,
                                                  args.out / "propagation.jpg")
    if not args.skip_node:
        frames, instruction = (([frame_bgr(cache)], "the dog") if args.still
                               else (video_frames(video, 10_000), VIDEO_INSTRUCTIONS[0]))
        modes = {"per_frame": ("runtime.keyframe_period:=1",), "keyframes": ()} if args.compare_keyframes else {"": ()}
        for mode, extra in modes.items():
            key = f"node_{mode}" if mode else "node"
            print(f"[bench] node soak{' (' + mode + ')' if mode else ''}: {args.fps:g} Hz for {args.duration:g} s ...",
                  flush=True)
            params = (*extra, *args.node_param)
            report[key] = bench_node(frames, instruction, args.duration, args.fps, args.out, params)
            report[key]["params"] = list(params)
    rows = [[k, v] for k, v in report["stages_ms"].items()]
    print(markdown_table(["stage (median ms)", "value"], rows))
    if "frame_sequence" in report:
        fs = report["frame_sequence"]
        rows = [[k, fs["median_ms"]["sleeping"][k], fs["median_ms"]["spinning"][k],
                 f"{fs['ratio_spinning_over_sleeping'][k]:.2f}x"] for k in fs["median_ms"]["sleeping"]]
        print(markdown_table(["frame sequence (median ms)", "threads sleep (shipped)", "threads spin", "spin / sleep"],
                             rows))
    if "propagation" in report:
        pr = report["propagation"]
        rows = [[t, v["iou_median"], v["iou_p10"], v["per_frame_self_iou_median"], v["mask_area_px_median"],
                 v["propagated_frames"],
                 v["propagated_where_per_frame_chose_another_instance"], v["key_frames"], v["per_frame_ms_median"],
                 v["propagation_ms_median"]] for t, v in pr["instructions"].items()]
        rows.append(["all", pr["iou_median_all"], pr["iou_p10_all"], "", "", "", "", "", "", ""])
        print(markdown_table(["propagated vs per-frame (same instance)", "IoU median", "IoU p10",
                              "per-frame vs itself 1 frame on", "mask px", "propagated",
                              "per-frame chose another", "key frames", "per-frame ms", "flow ms"], rows))
    nodes = [k for k in report if k.startswith("node")]
    skip = ("rss_series", "latency_series", "node_stage_medians_ms", "params")
    if nodes:
        names = sorted({k for n in nodes for k in report[n] if k not in skip}, key=list(report[nodes[0]]).index)
        rows = [[k, *(report[n].get(k) for n in nodes)] for k in names]
        stages = sorted({k for n in nodes for k in report[n]["node_stage_medians_ms"]})
        rows += [[f"node stage {k} (median ms)", *(report[n]["node_stage_medians_ms"].get(k) for n in nodes)]
                 for k in stages]
        print(markdown_table(["node soak", *nodes], rows))
        _plot_soak(report[nodes[-1]]["rss_series"], report[nodes[-1]]["latency_series"], args.out / "soak.png")
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
