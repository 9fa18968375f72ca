"""Benchmark: one grounding of Qwen2.5-VL-3B (real dimensions, random weights) through transformers (fp32, bf16)
and through ORT GenAI packages (fp32, int4), side by side in one run, each in its own process (own peak RSS).

    .venv/bin/python bench/bench_mllm_engine.py [--work /tmp/mllm-engine] [--device cpu|cuda] [--dims 3b|tiny]
                                                [--max-new-tokens 32] [--out bench/results]

The frame is a 640x480 photo; the processor's bounds (max 448x448 px) give the sent image; the answer budget is
32 tokens (random weights rarely stop early; every row reports its own token count). Each row warms up on a 56 px
crop first, as a running node is. Columns: load time, time to first token (vision + prefill), decode tokens/s, one
grounding's wall time, peak RSS. The checkpoint and packages
are kept in --work between runs (7 GB + 15 GB + 6 GB for 3B). Target (issue 31): ORT GenAI int4 grounds >= 5x
faster than transformers fp32 (today's CPU path) with <= 1/3 of its peak RSS.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders live with the tests

ROWS = ("transformers fp32", "transformers bf16", "ort-genai fp32", "ort-genai int4")
INSTRUCTION = "the dog"


def _frame():
    import cv2

    from reasonseg.core.model_cache import resolve_cache_dir

    bgr = cv2.imread(str(resolve_cache_dir() / "images" / "dog.jpg"))
    return cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_AREA)[:, :, ::-1].copy()


def _peak_rss_mb() -> int:
    """This process's own high-water mark (VmHWM: ru_maxrss would keep the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return -1


class _FirstToken:
    """A transformers streamer that notes when the first generated token arrives (its first `put` is the prompt)."""

    def __init__(self) -> None:
        self.calls, self.start, self.first = 0, 0.0, 0.0

    def put(self, value) -> None:  # noqa: ANN001 - a tensor of ids
        self.calls += 1
        if self.calls == 2:
            self.first = time.monotonic()

    def end(self) -> None:
        pass


def child(row: str, work: Path, device: str, max_new_tokens: int) -> dict:
    """One row, in this process: load, a small warm-up, one grounding (a 3B grounding is tens of seconds)."""
    from reasonseg.grounding.vlm.answer import build_prompt

    frame, prompt = _frame(), build_prompt(INSTRUCTION)
    t0 = time.monotonic()
    if row.startswith("transformers"):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from reasonseg.grounding.vlm.qwen_vl import generate, pixel_bounds

        dtype = torch.float32 if row.endswith("fp32") else torch.bfloat16
        processor = AutoProcessor.from_pretrained(work / "checkpoint", local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(work / "checkpoint", dtype=dtype,
                                                            local_files_only=True).to(device).eval()
        load_s = time.monotonic() - t0
        lo, hi = pixel_bounds(processor.image_processor)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]

        generate(model, processor, frame[:56, :56], messages, min_pixels=lo, max_pixels=hi, max_new_tokens=2,
                 timeout_s=3600.0, device=device)  # warm-up: kernels and allocations, as a running node has them
        clock = _FirstToken()
        t_start = clock.start = time.monotonic()
        g = generate(model, processor, frame, messages, min_pixels=lo, max_pixels=hi, max_new_tokens=max_new_tokens,
                     timeout_s=3600.0, device=device, streamer=clock)
        first = clock.first - t_start  # vision + prefill + one token, in the same call
        tokens = g.sequences[0, g.inputs["input_ids"].shape[1]:].tolist()
        seconds, sent = g.seconds, g.sent_size
    else:
        from reasonseg.grounding.vlm.genai_vlm import GenAiPackage

        package = GenAiPackage(work / row.split()[-1], device=device)
        load_s = time.monotonic() - t0
        package.generate(frame[:56, :56], prompt, max_new_tokens=2)  # warm-up, as for transformers
        g = package.generate(frame, prompt, max_new_tokens=max_new_tokens)
        tokens, seconds, first, sent = g.tokens, g.seconds, g.first_token_s, g.sent_size
    return {"load_s": round(load_s, 1), "first_token_s": round(first, 2), "tokens": len(tokens),
            "decode_tokens_per_s": round((len(tokens) - 1) / max(seconds - first, 1e-9), 2),
            "ground_s": round(seconds, 2), "peak_rss_mb": _peak_rss_mb(),
            "sent_size": list(sent), "token_ids": tokens}


def prepare(work: Path, dims: str) -> None:
    """The random-weight checkpoint and its fp32 / int4 packages (kept between runs)."""
    from tiny_models import QWEN25_VL_3B, tiny_qwen25_vl

    from reasonseg_export.qwen_vl import build_package

    if not (work / "checkpoint" / "config.json").is_file():
        print(f"[bench] building the {dims} checkpoint (random weights) ...", flush=True)
        tiny_qwen25_vl(work / "checkpoint", dims=QWEN25_VL_3B if dims == "3b" else None)
    for precision in ("fp32", "int4"):
        if not (work / precision / "genai_config.json").is_file():
            print(f"[bench] ORT GenAI package {precision} ...", flush=True)
            t0 = time.monotonic()
            build_package(work / "checkpoint", work / precision, precision)
            print(f"[bench]   {time.monotonic() - t0:.0f} s", flush=True)
        from reasonseg.core.model_cache import sha256
        from reasonseg_export.manifest import write_manifest

        folder = work / precision  # a manifest like the export command's (parity: see tests / the export)
        files = {f.name: sha256(f) for f in sorted(folder.iterdir()) if f.is_file()
                 and f.name != "genai_config.json" and not f.name.endswith(".manifest.json")}
        write_manifest(folder / "genai_config.json", format="qwen-vl", precision=precision, source=None,
                       parity={"checked": False, "why": "benchmark package"}, files=files)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/mllm-engine", help="checkpoint + packages, kept between runs")
    p.add_argument("--dims", choices=["3b", "tiny"], default="3b")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(args.child, work, args.device, args.max_new_tokens)))
        return 0
    from reasonseg.backends.cpu_int8 import this_cpu
    from reasonseg.core.report import markdown_table

    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.dims)
    from reasonseg_export.qwen_vl import vision_error

    report = {"machine": {"cores": 2, "what": "this shared dev machine", **this_cpu()}, "dims": args.dims,
              "device": args.device, "frame": "640x480 dog.jpg", "instruction": INSTRUCTION,
              "max_new_tokens": args.max_new_tokens, "rows": {},
              # the int4 package's int8 vision encoder vs the fp32 graph, on the benchmark frame
              "int4_vision_features_vs_fp32": vision_error(work / "int4", work / "fp32", [_frame()])}
    for row in args.rows.split(","):
        print(f"[bench] {row} ...", flush=True)
        run = subprocess.run([sys.executable, __file__, "--child", row, "--work", str(work), "--device", args.device,
                              "--max-new-tokens", str(args.max_new_tokens)], capture_output=True, text=True)
        if run.returncode != 0:
            report["rows"][row] = {"error": (run.stderr.strip().splitlines() or ["?"])[-1][:300]}
        else:
            report["rows"][row] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"[bench]   {({k: v for k, v in report['rows'][row].items() if k != 'token_ids'})}", flush=True)
    rows = report["rows"]
    base = rows.get("transformers fp32", {})
    for name, r in rows.items():
        if "ground_s" in r and "ground_s" in base:
            r["faster_than_transformers_fp32_x"] = round(base["ground_s"] / r["ground_s"], 2)
            r["rss_vs_transformers_fp32"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 3)
    if "token_ids" in rows.get("ort-genai fp32", {}) and "token_ids" in base:
        report["ort_fp32_tokens_equal_transformers_fp32"] = rows["ort-genai fp32"]["token_ids"] == base["token_ids"]
    cols = ["load_s", "first_token_s", "decode_tokens_per_s", "tokens", "ground_s", "peak_rss_mb",
            "faster_than_transformers_fp32_x", "rss_vs_transformers_fp32"]
    print(f"machine: {report['machine']['cpu']}, {args.dims} dims, device {args.device}")
    print(markdown_table(["row", *cols], [[name, *(r.get(c, r.get("error", "")) for c in cols)]
                                           for name, r in rows.items()]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"mllm-engine-{args.dims}-{args.device}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
