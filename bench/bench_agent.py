"""Benchmark: one `agent` round, stage by stage, at real dimensions with random weights — Qwen3-VL-2B-class in
process (transformers), SAM 3 (facebook/sam3's architecture: 840 M-parameter concept model at 1008 px) and SAM 3's
tracker (466 M) — through the same classes the pipeline uses, loaded from dirs as users load them.

    .venv/bin/python bench/bench_agent.py [--work /tmp/agent-bench] [--device cpu|cuda] [--repeats 3]
                                          [--track-frames 10] [--out bench/results]

Stages (median of --repeats after one warm-up each): MLLM phrase answer (prompt + 24 tokens), SAM 3 concept pass
(one phrase), candidate sheet (12 candidates drawn), MLLM pick answer (sheet + 16 tokens), tracker start (the
chosen mask as the prompt) and tracker step (per frame, memory bank filling up to segmenter.memory_frames). Random
weights never stop early, so the token budgets are what is spent; a real model answering shorter is faster. The
frame is dog.jpg at 1280x720. Checkpoints are kept in --work (about 9 GB). Prints a table, writes JSON with the
CPU model and its ISA flags.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the model builders live with the tests

INSTRUCTION = "the car about to pull out"
PHRASE_TOKENS, PICK_TOKENS = 24, 16


def _cpu() -> dict:
    info = {"machine": platform.machine(), "model": "", "flags": []}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and not info["model"]:
            info["model"] = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not info["flags"]:
            flags = set(line.split(":", 1)[1].split())
            info["flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "avx_vnni")))
    return info


def _frame():
    import cv2

    from reasonseg.core.model_cache import resolve_cache_dir

    bgr = cv2.imread(str(resolve_cache_dir() / "images" / "dog.jpg"))
    return cv2.resize(bgr, (1280, 720), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].copy()


def _checkpoints(work: Path) -> tuple[Path, Path, Path]:
    from tiny_models import QWEN3_VL_2B, sam3_full_size, tiny_qwen3_vl

    qwen, sam3, tracker = work / "qwen3_vl_2b", work / "sam3", work / "sam3_tracker"
    if not (qwen / "config.json").exists():
        print("building Qwen3-VL-2B-class (random weights, bf16) ...", flush=True)
        tiny_qwen3_vl(qwen, dims=QWEN3_VL_2B)
    if not (sam3 / "config.json").exists() or not (tracker / "config.json").exists():
        print("building SAM 3 + its tracker (random weights) ...", flush=True)
        sam3_full_size(sam3, tracker)
    return qwen, sam3, tracker


def _timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up (allocator, kernels, caches), as a running node is
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/agent-bench"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--track-frames", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()

    import torch

    from reasonseg.core.prompt import Prompt
    from reasonseg.core.settings import Settings
    from reasonseg.grounding.agent import Candidate, candidate_sheet, phrase_prompt, pick_prompt
    from reasonseg.grounding.vlm.qwen_vl import QwenVl
    from reasonseg.pipelines.concepts import mask_prompt
    from reasonseg.segmenters.registry import build_segmenter
    from reasonseg.segmenters.sam3.concepts import Sam3Concepts
    from reasonseg.settings.loading import with_overrides

    args.work.mkdir(parents=True, exist_ok=True)
    qwen, sam3, tracker = _checkpoints(args.work)
    dtype = "bfloat16"  # the 2B MLLM's weights as stored; fp32 would double its 4 GB
    s = with_overrides(Settings(), [
        "mllm.backend=transformers", f"mllm.model={qwen}", f"mllm.device={args.device}", f"mllm.dtype={dtype}",
        f"mllm.max_new_tokens={PHRASE_TOKENS}", "mllm.timeout_s=600", f"sam3.model={sam3}", f"sam3.device={args.device}",
        "sam3.score_threshold=0.0", "sam3.presence_threshold=0.0", "segmenter.kind=sam3", f"segmenter.model={tracker}",
        f"segmenter.device={args.device}", "segmenter.backend=torch"])
    frame = _frame()
    t0 = time.perf_counter()
    vlm = QwenVl(s.mllm)
    concepts = Sam3Concepts(s.sam3)
    segmenter = build_segmenter(s.segmenter, s.cache_path)
    load_s = time.perf_counter() - t0
    rows: dict[str, dict] = {}

    def row(name: str, seconds: float, **extra) -> None:
        rows[name] = {"ms": round(seconds * 1e3, 1), **extra}
        print(f"  {name:<18} {seconds * 1e3:10.1f} ms  {extra if extra else ''}", flush=True)

    print(f"stages on {args.device} ({_cpu()['model']}, {torch.get_num_threads()} threads), median of {args.repeats}:")
    sec, _ = _timed(lambda: vlm.ask(frame, phrase_prompt(INSTRUCTION, 3)), args.repeats)
    row("mllm_phrase", sec, tokens=vlm.stats["tokens"], sent_size=list(vlm.stats["sent_size"]))
    sec, found = _timed(lambda: concepts.find(frame, "car"), args.repeats)
    row("sam3_concepts", sec, instances=len(found.instances))
    cands = tuple(Candidate(i + 1, "car", inst) for i, inst in enumerate(found.instances[:12]))
    sec, sheet = _timed(lambda: candidate_sheet(frame, cands), args.repeats)
    row("candidate_sheet", sec, candidates=len(cands))
    vlm.settings = with_overrides(s, [f"mllm.max_new_tokens={PICK_TOKENS}"]).mllm
    sec, _ = _timed(lambda: vlm.ask(sheet, pick_prompt(INSTRUCTION, ("car",), len(cands))), args.repeats)
    row("mllm_pick", sec, tokens=vlm.stats["tokens"])
    prompt = mask_prompt(cands[0].instance, True) if cands else Prompt(box=(400.0, 200.0, 800.0, 600.0))
    memory = s.segmenter.memory_frames
    sec, stream = _timed(lambda: segmenter.start_stream(frame, [prompt], memory), args.repeats)
    row("tracker_start", sec)
    steps = []
    for _ in range(args.track_frames):
        t = time.perf_counter()
        stream.step(frame)
        steps.append(time.perf_counter() - t)
    row("tracker_step", statistics.median(steps[1:] or steps), frames=args.track_frames, memory_frames=memory)
    stream.close()
    grounding_ms = sum(rows[k]["ms"] for k in ("mllm_phrase", "sam3_concepts", "candidate_sheet", "mllm_pick"))
    print(f"  {'one round':<18} {grounding_ms:10.1f} ms  (phrase + concepts + sheet + pick); load {load_s:.1f} s")
    out = {"bench": "agent", "date": time.strftime("%Y-%m-%d"), "device": args.device, "cpu": _cpu(),
           "torch_threads": torch.get_num_threads(), "frame": [1280, 720], "mllm": "Qwen3-VL-2B-class, random, " + dtype,
           "sam3": "facebook/sam3 architecture, random, fp32", "repeats": args.repeats, "load_s": round(load_s, 1),
           "stages": rows, "one_round_ms": round(grounding_ms, 1)}
    if args.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"agent-{args.device.split(':')[0]}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
