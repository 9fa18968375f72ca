"""Benchmark: one LENS grounding per stage — generate, second pass, connector, SAM2 — plus the tracker step.

    .venv/bin/python bench/bench_lens.py [--dims tiny|3b] [--device cpu|cuda] [--repeats 5] [--new-tokens 32]
                                         [--size 640x480] [--out bench/results]

`tiny`: the tests' tiny checkpoint (Qwen2.5-VL 2+2 layers with the real vocabulary, 8 queries, 128-px SAM2).
`3b`: the released architecture with random weights — Qwen2.5-VL-3B, 64 queries, connector, SAM 2.0 Hiera-L —
written in the release's layout (~9 GB, bf16) and loaded through `lens.model` like OuyBin/LENS; meant for a
GPU machine (on CUDA: bfloat16 MLLM, float32 SAM2, peak GPU memory reported). Timing needs no trained weights;
generation is forced to `--new-tokens` tokens so every repeat does the same work. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders live with the tests


def build_checkpoint(dims: str, work: Path) -> Path:
    from tiny_models import QWEN25_VL_3B, tiny_lens_release

    if dims == "tiny":
        return tiny_lens_release(work / "lens", num_queries=8)[0]
    from reasonseg.models.lens import sam2_hiera_l_config

    return tiny_lens_release(work / "lens", num_queries=64, qwen_dims=QWEN25_VL_3B,
                             sam2_config=sam2_hiera_l_config())[0]


def run(dims: str, device: str, repeats: int, new_tokens: int, size: tuple[int, int]) -> dict:
    import torch

    from reasonseg.core.settings import Settings
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.settings.loading import with_overrides

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ckpt = build_checkpoint(dims, Path(tmp))
        write_s = time.perf_counter() - t0
        settings = with_overrides(Settings(), ["pipeline=lens", f"lens.model={ckpt}", f"lens.device={device}",
                                               f"lens.max_new_tokens={new_tokens}", "lens.timeout_s=600"])
        t0 = time.perf_counter()
        pipeline = build_pipeline(settings)
        load_s = time.perf_counter() - t0
    model = pipeline.vlm.model
    # every repeat generates exactly new_tokens tokens (a random model may stop early otherwise)
    model.mllm.generation_config.min_new_tokens = new_tokens
    w, h = size
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    stages: dict[str, list[float]] = {}
    for i in range(repeats + 1):  # the first run warms up and is not counted
        sync()
        g = pipeline.ground(image, "the pedestrian about to cross")
        sync()
        seg = pipeline.segment(image, g)
        track = pipeline.start(image, g)
        step = track.step(image)
        track.close()
        sync()
        if i == 0:
            continue
        for name, ms in {**g.timings_ms, **seg.timings_ms, **step.timings_ms}.items():
            stages.setdefault(name, []).append(ms)
    med = {k: round(median(v), 1) for k, v in stages.items()}
    med["grounding_total"] = round(sum(med.get(k, 0.0) for k in ("generate", "second_pass", "connector",
                                                                  "sam_encoder", "sam_decoder")), 1)
    params = {"mllm": sum(p.numel() for p in model.mllm.parameters()),
              "head": sum(p.numel() for p in model.head.parameters()),
              "sam2": sum(p.numel() for p in model.sam.parameters())}
    out = {"dims": dims, "device": device, "repeats": repeats, "new_tokens": new_tokens, "frame": f"{w}x{h}",
           "num_queries": model.num_queries, "params": params, "checkpoint_write_s": round(write_s, 1),
           "load_s": round(load_s, 1), "median_ms": med,
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["gpu"] = torch.cuda.get_device_name()
    out["host"] = {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                   "torch": torch.__version__}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", choices=("tiny", "3b"), default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--size", default="640x480")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    res = run(a.dims, a.device, a.repeats, a.new_tokens, (w, h))
    print(f"LENS grounding, {a.dims} dims on {a.device} ({res.get('gpu', 'CPU')}), {res['frame']} frame, "
          f"{a.new_tokens} new tokens, median of {a.repeats}")
    print(f"{'stage':<16}{'ms':>10}")
    for k, v in res["median_ms"].items():
        print(f"{k:<16}{v:>10.1f}")
    mem = f"peak RSS {res['peak_rss_mb']} MB" + (f", peak GPU {res['peak_gpu_mb']} MB" if "peak_gpu_mb" in res else "")
    print(f"params: {', '.join(f'{k} {v / 1e6:.1f} M' for k, v in res['params'].items())}; {mem}")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"lens-{a.dims}-{a.device.replace(':', '')}.json"
    path.write_text(json.dumps(res, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
