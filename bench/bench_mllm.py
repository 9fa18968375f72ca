"""Benchmark: the `mllm` pipeline per stage — VLM grounding, segmenter, SAM2 tracking — side by side in one run.

    .venv/bin/python bench/bench_mllm.py [--repeats 5] [--sam2 test128,hiera_tiny] [--device cpu]
                                         [--size 640x480] [--out bench/results]

VLMs: a scripted VLM behind a real OpenAI-compatible server on 127.0.0.1 (client + transport cost only; a
real VLM adds its own 1-3 s) and a tiny random-weight Qwen2.5-VL in process (real config classes and
vocabulary). Segmenters: the embedded LiteSAM (ONNX Runtime) and SAM2 with random weights at real
architectures (`hiera_tiny` = sam2.1-hiera-tiny, `hiera_large` = sam2.1-hiera-large, 1024 px) or the
tests' 128-px toy, all loaded through `segmenter.model` like users' checkpoints. Timing needs no trained
weights.

Per frame, re-grounding every frame costs grounding + segmentation; the tracking path costs one SAM2
memory step (LiteSAM has no memory: it re-prompts with the grounded box, i.e. segmentation again). Also
SAM2 memory: the session's stored frames and RSS over `--track-frames` steps. Prints tables, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the scripted server and the tiny-model builders live with the tests

# sam2.1 architectures (Hiera backbone) on transformers' Sam2VideoConfig; the defaults are hiera-tiny.
SAM2_ARCHS = ("hiera_tiny", "hiera_large")  # transformers' Sam2VideoConfig default; SAM 2.1 Hiera-L


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _sync(device: str):
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def bench_vlm(settings, image, repeats: int) -> dict:
    from reasonseg.core.errors import ReasonSegError
    from reasonseg.core.report import median_ms
    from reasonseg.pipelines.registry import build_pipeline

    pipeline = build_pipeline(settings)

    def ground():
        try:
            return pipeline.ground(image, "the dog")
        except ReasonSegError:  # a random-weight model answers nonsense: the cost is what is measured
            return None

    out = {"ground_ms": median_ms(ground, repeats)}
    stats = getattr(pipeline.vlm, "stats", None)
    if stats and stats["seconds"]:
        out["tokens_per_s"] = round(stats["tokens"] / stats["seconds"], 1)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _dog_prompt(image):
    from reasonseg.core.prompt import Prompt

    h, w = image.shape[:2]
    return Prompt(box=(130 / 768 * w, 220 / 576 * h, 310 / 768 * w, 545 / 576 * h))


def bench_segmenter(segmenter, image, repeats: int, track_frames: int, device: str) -> dict:
    from reasonseg.core.report import median_ms

    sync = _sync(device)
    prompt = _dog_prompt(image)
    emb = segmenter.encode(image)
    out = {"encoder_ms": median_ms(lambda: segmenter.encode(image), repeats, sync),
           "decoder_ms": median_ms(lambda: segmenter.predict(emb, prompt), repeats, sync)}
    out["segment_ms"] = round(out["encoder_ms"] + out["decoder_ms"], 1)
    if getattr(segmenter, "can_track", False):
        stream = segmenter.start_stream(image, [prompt], memory_frames=16)
        frames = [np.roll(image, 4 * i, axis=1) for i in range(8)]  # a panning camera
        steps, rss = [], {}
        for i in range(track_frames):
            sync()
            t0 = time.perf_counter()
            stream.step(frames[i % len(frames)])
            sync()
            steps.append((time.perf_counter() - t0) * 1e3)
            if i in (track_frames // 4, track_frames - 1):
                rss[i] = _rss_mb()
        out["track_step_ms"] = round(median(steps[1:]), 1)
        out["track_stored_frames"] = stream.stored_frames()
        a, b = sorted(rss)
        out[f"track_rss_growth_mb_{a}_to_{b}"] = round(rss[b] - rss[a], 1)
        stream.close()
    else:
        out["track_step_ms"] = out["segment_ms"]  # no memory: re-prompt the grounded box each frame
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _sam2_checkpoint(arch: str, directory: Path) -> Path:
    import torch
    from tiny_models import tiny_sam2
    from transformers import Sam2VideoConfig, Sam2VideoModel

    from reasonseg.models.lens import sam2_hiera_l_config

    if arch == "test128":
        return tiny_sam2(directory, presence_logit=6.0)
    torch.manual_seed(0)
    # Hiera-L: LENS's SAM2 backbone with SAM 2.1's defaults (object-pointer temporal encoding, occlusion embedding)
    config = Sam2VideoConfig(vision_config=sam2_hiera_l_config().vision_config) if arch == "hiera_large" \
        else Sam2VideoConfig()
    Sam2VideoModel(config).eval().save_pretrained(directory)
    return directory


def main() -> int:
    from openai_server import OpenAiServer, scripted_vlm
    from tiny_models import QWEN25_VL_3B, tiny_qwen25_vl

    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.report import markdown_table
    from reasonseg.core.settings import Settings
    from reasonseg.segmenters.registry import build_segmenter
    from reasonseg.settings.loading import with_overrides

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sam2", default="test128,hiera_tiny", help=f"test128 and/or {', '.join(SAM2_ARCHS)}")
    p.add_argument("--device", default="cpu", help="segmenter device (cpu, cuda)")
    p.add_argument("--size", default="640x480", help="frame WxH (1280x720 on a GPU)")
    p.add_argument("--track-frames", type=int, default=40)
    p.add_argument("--no-vlm", action="store_true", help="segmenters only (e.g. a GPU machine without ROS/CV deps)")
    p.add_argument("--qwen-3b", action="store_true",
                   help="also time Qwen2.5-VL-3B's real architecture in process (random weights; ~16 GB RAM on CPU)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    w, h = (int(v) for v in args.size.split("x"))
    image = cv2.resize(cv2.imread(str(resolve_cache_dir() / "images" / "dog.jpg")), (w, h))[:, :, ::-1].copy()
    report: dict = {"frame": args.size, "device": args.device, "baseline_peak_rss_mb": _peak_rss_mb(),
                    "vlm": {}, "segmenter": {}}
    with tempfile.TemporaryDirectory(prefix="bench-mllm-") as tmp:
        if not args.no_vlm:
            with OpenAiServer() as srv:
                srv.behaviour = scripted_vlm({"dog": (130 / 768, 220 / 576, 310 / 768, 545 / 576)})
                print("[bench] VLM served (scripted, 127.0.0.1) ...", flush=True)
                report["vlm"]["openai_scripted"] = bench_vlm(with_overrides(Settings(), [
                    "pipeline=mllm", "mllm.backend=openai", "mllm.model=scripted", f"mllm.base_url={srv.base_url}"]),
                    image, args.repeats)
            print("[bench] VLM in process (tiny random Qwen2.5-VL, CPU) ...", flush=True)
            model = tiny_qwen25_vl(Path(tmp) / "qwen")
            report["vlm"]["transformers_tiny_qwen25_vl"] = bench_vlm(with_overrides(Settings(), [
                "pipeline=mllm", "mllm.backend=transformers", f"mllm.model={model}", "mllm.device=cpu",
                "mllm.max_new_tokens=32", "mllm.max_pixels=200704"]), image, args.repeats)
            if args.qwen_3b:
                print("[bench] VLM in process (Qwen2.5-VL-3B architecture, random weights, CPU float32) ...",
                      flush=True)
                model = tiny_qwen25_vl(Path(tmp) / "qwen3b", dims=QWEN25_VL_3B)
                report["vlm"]["transformers_qwen25_vl_3b_arch"] = bench_vlm(with_overrides(Settings(), [
                    "pipeline=mllm", "mllm.backend=transformers", f"mllm.model={model}", "mllm.device=cpu",
                    "mllm.dtype=float32", "mllm.max_new_tokens=32", "mllm.timeout_s=600"]), image, 1)
            print("[bench] segmenter lite_sam (onnxruntime) ...", flush=True)
            seg = build_segmenter(Settings().segmenter, resolve_cache_dir())
            report["segmenter"]["lite_sam"] = bench_segmenter(seg, image, args.repeats, args.track_frames, "cpu")
            del seg
        for arch in filter(None, args.sam2.split(",")):
            print(f"[bench] segmenter sam2 {arch} (random weights, {args.device}) ...", flush=True)
            ckpt = _sam2_checkpoint(arch, Path(tmp) / f"sam2-{arch}")
            s = with_overrides(Settings(), ["segmenter.kind=sam2", f"segmenter.model={ckpt}", "segmenter.backend=torch",
                                            f"segmenter.device={args.device}"])
            seg = build_segmenter(s.segmenter, s.cache_path)
            report["segmenter"][f"sam2_{arch}"] = {"input_px": seg.input_size, **bench_segmenter(
                seg, image, args.repeats, args.track_frames, args.device)}
            del seg
    seg_keys = sorted({k for v in report["segmenter"].values() for k in v})
    print(markdown_table([f"segmenter, median ({args.size}, {args.device})", *report["segmenter"]],
                         [[k, *(v.get(k, "-") for v in report["segmenter"].values())] for k in seg_keys]))
    rows = []
    report["reground_vs_track"] = {}
    for vname, v in report["vlm"].items():
        for sname, s in report["segmenter"].items():
            every = round(v["ground_ms"] + s["segment_ms"], 1)
            ratio = round(every / s["track_step_ms"], 2)
            report["reground_vs_track"][f"{vname}+{sname}"] = {"reground_every_frame_ms": every,
                                                                "tracking_ms": s["track_step_ms"], "cheaper_x": ratio}
            rows.append([vname, sname, v["ground_ms"], every, s["track_step_ms"], ratio])
    if rows:
        print(markdown_table(["VLM", "segmenter", "ground ms", "re-ground every frame ms", "tracking ms/frame",
                              "tracking cheaper x"], rows))
        print(markdown_table(["VLM", *report["vlm"]],
                             [[k, *(v.get(k, "-") for v in report["vlm"].values())]
                              for k in ("ground_ms", "tokens_per_s", "peak_rss_mb")]))
    path = args.out / "mllm.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
