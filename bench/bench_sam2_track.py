"""SAM2 tracking per frame at 720p: PyTorch (transformers' streaming session) vs the exported graphs on
onnxruntime (issue 10), side by side in one run.

    .venv/bin/python bench/bench_sam2_track.py [--frames 12] [--device cpu|cuda] [--out bench/results/sam2_track]

SAM2.1-hiera-tiny architecture (transformers' `Sam2VideoConfig()` defaults, random weights: timings do not
depend on the values, and nothing downloads), exported with `reasonseg export sam2`. A 1280x720 camera
pans over a photo; one box target is conditioned on the first frame, then every frame is one tracking
step. Per backend: image encoder, prompt decoder (image path), tracking step without the encoder (memory
attention + decoder + memory encoder), and the whole stream step; medians over interleaved frames.
On a GPU machine run with `--device cuda` (onnxruntime-gpu's CUDA provider; torch on CUDA).
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


def main() -> int:
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.prompt import Prompt
    from reasonseg.core.report import markdown_table
    from reasonseg.segmenters.sam2.graphs import STEP_INPUTS
    from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter
    from reasonseg_export.sam2 import export_sam2

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sam2_track")
    args = p.parse_args()
    torch.manual_seed(0)
    photo = cv2.imread(str(resolve_cache_dir() / "images" / "dog.jpg"))[:, :, ::-1]
    wide = cv2.resize(photo, (1280 + 8 * args.frames, 720))
    frames = [np.ascontiguousarray(wide[:, 8 * i:8 * i + 1280]) for i in range(args.frames + 1)]
    box = Prompt(box=(250, 200, 700, 700))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "sam2.1-hiera-tiny-random"
        Sam2VideoModel(Sam2VideoConfig()).eval().save_pretrained(ckpt)
        t0 = time.perf_counter()
        export_sam2(str(ckpt), Path(tmp) / "onnx")
        export_s = time.perf_counter() - t0
        segs = {"torch": Sam2Segmenter(str(ckpt), device=args.device),
                "onnxruntime": OnnxSam2Segmenter(Path(tmp) / "onnx", device=args.device)}
        streams = {k: s.start_stream(frames[0], [box], memory_frames=16) for k, s in segs.items()}
        times: dict[str, dict[str, list[float]]] = {k: {"encoder": [], "decoder": [], "stream step": []}
                                                    for k in segs}
        for frame in frames[1:]:
            for name, seg in segs.items():
                t = time.perf_counter()
                emb = seg.encode(frame)
                times[name]["encoder"].append(time.perf_counter() - t)
                t = time.perf_counter()
                seg.predict(emb, box)
                times[name]["decoder"].append(time.perf_counter() - t)
                t = time.perf_counter()
                streams[name].step(frame)
                times[name]["stream step"].append(time.perf_counter() - t)
        # the step graph alone on the last frame's features and a full bank
        onnx, stream = segs["onnxruntime"], streams["onnxruntime"]
        feats = onnx.encode(frames[-1]).features
        obj = stream.objects[0]
        past = sorted(obj["past"])[-6:]
        feeds = dict(zip(STEP_INPUTS, (*feats,
                                       np.stack([obj["cond"]["maskmem_features"]]
                                                + [obj["past"][k]["maskmem_features"] for k in past]),
                                       np.array([0, *range(len(past), 0, -1)], np.int64),
                                       np.concatenate([obj["cond"]["object_pointer"]]
                                                      + [obj["past"][k]["object_pointer"] for k in past]),
                                       np.array([len(frames), *range(1, len(past) + 1)], np.float32))))
        step_ms = []
        for _ in range(len(frames) - 1):
            t = time.perf_counter()
            onnx.track_step.run(None, feeds)
            step_ms.append(time.perf_counter() - t)
    result = {k: {part: round(median(v) * 1e3, 1) for part, v in parts.items()} for k, parts in times.items()}
    result["onnxruntime"]["tracking step, no encoder"] = round(median(step_ms) * 1e3, 1)
    result["torch"]["tracking step, no encoder"] = round(result["torch"]["stream step"]
                                                         - result["torch"]["encoder"], 1)  # derived: not timed alone
    parts = ["encoder", "decoder", "tracking step, no encoder", "stream step"]
    rows = [[part, result["torch"][part], result["onnxruntime"][part],
             f"{result['torch'][part] / result['onnxruntime'][part]:.2f}"] for part in parts]
    print(markdown_table(["SAM2.1-hiera-tiny, 1280x720 (ms, median)", "torch", "onnxruntime", "speed-up"], rows))
    print(f"stream fps: torch {1e3 / result['torch']['stream step']:.2f}, "
          f"onnxruntime {1e3 / result['onnxruntime']['stream step']:.2f}; export took {export_s:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"device": args.device, "frames": args.frames, "frame_size": [1280, 720], "model": "sam2.1-hiera-tiny dims",
              "torch_threads": torch.get_num_threads(), "ms": result, "export_s": round(export_s, 1),
              "note": "torch 'tracking step, no encoder' = stream step - encoder (transformers' session runs both)"}
    (args.out / "bench_sam2_track.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
