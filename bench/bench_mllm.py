"""Benchmark: the `mllm` pipeline on CPU, per stage, with both backends side by side in one run.

    .venv/bin/python bench/bench_mllm.py [--repeats 5] [--out bench/results]

Backends: a scripted VLM behind a real OpenAI-compatible server on 127.0.0.1 (client + transport cost
only; a real VLM adds its own seconds) and a tiny random-weight Qwen2.5-VL in process (real config
classes and vocabulary; timing of the plumbing, not of a real model). For each: median ms of grounding
(VLM), of segmentation with the grounded box (the per-frame path between groundings), of re-grounding on
every frame (both), tokens/s, and the process's peak RSS after that backend ran. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the scripted server and the tiny-model builder live with the tests


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_backend(settings, image, repeats: int) -> dict:
    from reasonseg.errors import ReasonSegError
    from reasonseg.pipelines import build_pipeline
    from reasonseg.report import median_ms

    pipeline = build_pipeline(settings)
    vlm = pipeline.vlm

    def ground():
        try:
            return pipeline.ground(image, "the dog")
        except ReasonSegError:  # a random-weight model answers nonsense: the cost is what is measured
            return None

    grounding = ground() or _fixed_grounding(pipeline, image)
    out = {"ground_ms": median_ms(ground, repeats),
           "segment_ms": median_ms(lambda: pipeline.segment(image, grounding), repeats)}
    out["reground_every_frame_ms"] = round(out["ground_ms"] + out["segment_ms"], 1)
    out["tracking_path_cheaper_x"] = round(out["reground_every_frame_ms"] / out["segment_ms"], 2)
    stats = getattr(vlm, "stats", None)
    if stats and stats["seconds"]:
        out["tokens_per_s"] = round(stats["tokens"] / stats["seconds"], 1)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _fixed_grounding(pipeline, image):
    """The dog's box as a grounding, for timing segmentation when the model's own answer is unusable."""
    from reasonseg.pipelines.base import Grounding, Target
    from reasonseg.prompt import Prompt

    h, w = image.shape[:2]
    box = (130 / 768 * w, 220 / 576 * h, 310 / 768 * w, 545 / 576 * h)
    return Grounding("the dog", ("dog",), (Target("dog", 1.0, Prompt(box=box)),), "fixed", "bench", "mllm")


def main() -> int:
    from openai_server import OpenAiServer, scripted_vlm
    from reasonseg.config import Settings, resolve_cache_dir, with_overrides
    from reasonseg.report import markdown_table
    from tiny_models import tiny_qwen25_vl

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image = cv2.resize(cv2.imread(str(resolve_cache_dir() / "images" / "dog.jpg")), (640, 480))[:, :, ::-1].copy()
    report = {"frame": "640x480", "baseline_peak_rss_mb": _peak_rss_mb()}
    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"dog": (130 / 768, 220 / 576, 310 / 768, 545 / 576)})
        print("[bench] served backend (scripted VLM on 127.0.0.1) ...", flush=True)
        report["openai_scripted"] = bench_backend(with_overrides(Settings(), [
            "pipeline=mllm", "mllm.backend=openai", "mllm.model=scripted", f"mllm.base_url={srv.base_url}"]),
            image, args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench-mllm-") as tmp:
        print("[bench] in-process backend (tiny random Qwen2.5-VL, CPU) ...", flush=True)
        model = tiny_qwen25_vl(Path(tmp))
        report["transformers_tiny_qwen25_vl"] = bench_backend(with_overrides(Settings(), [
            "pipeline=mllm", "mllm.backend=transformers", f"mllm.model={model}", "mllm.device=cpu",
            "mllm.max_new_tokens=32", "mllm.max_pixels=200704"]), image, args.repeats)
    keys = ["ground_ms", "segment_ms", "reground_every_frame_ms", "tracking_path_cheaper_x", "tokens_per_s",
            "peak_rss_mb"]
    rows = [[k, report["openai_scripted"].get(k, "-"), report["transformers_tiny_qwen25_vl"].get(k, "-")] for k in keys]
    print(markdown_table(["median (640x480, CPU)", "openai (scripted)", "transformers (tiny Qwen2.5-VL)"], rows))
    path = args.out / "mllm.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
