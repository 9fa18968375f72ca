"""Benchmark the export tree's artifacts on this machine, side by side in one run (issue 10).

    .venv/bin/python bench/bench_export.py [--rounds 15] [--out bench/results/export]

Per component, medians over interleaved rounds (every variant once per round, so a busy shared machine
slows all of them alike): LiteSAM encoder on torch / onnxruntime fp32 / fp16 / int8 dynamic / int8 static
QDQ, LiteSAM decoder torch / onnxruntime, CenterNet detector and the person segmenter on onnxruntime; then
the embedded default end to end per frame at 640x480 (`refine`, a grounded target followed frame to frame:
detector + encoder + decoder, as the node runs it) with `segmenter.precision` fp32 vs auto, and the mask
IoU between the two. Prints a table, writes `bench_export.json`.
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

ROOT = Path(__file__).resolve().parents[1]


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm-up: first-run allocations and kernel choices
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: round(median(v), 1) for k, v in times.items()}


def main() -> int:
    import torch

    from reasonseg.config import Settings, resolve_cache_dir, with_overrides
    from reasonseg.export.formats import read_photos
    from reasonseg.export.lite_sam import export_lite_sam
    from reasonseg.export.parity import mask_iou
    from reasonseg.models.centernet import CenterNetDetector
    from reasonseg.person_mask import PersonSegmenter
    from reasonseg.pipelines import build_pipeline
    from reasonseg.prompt import Prompt
    from reasonseg.report import markdown_table
    from reasonseg.segmenters import DECODER_FILE, OnnxLiteSam, TorchLiteSam

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export")
    args = p.parse_args()
    torch.set_num_threads(2)
    cache = resolve_cache_dir()
    ls = cache / "lite_sam"
    image = cv2.resize(cv2.imread(str(cache / "images" / "dog.jpg")), (640, 480))[:, :, ::-1].copy()
    box = Prompt(box=(120.0, 130.0, 560.0, 470.0))

    with tempfile.TemporaryDirectory(prefix="reasonseg-bench-") as tmp:  # fp16 and static int8 for comparison
        print("[bench] exporting fp16 and static-int8 encoders for comparison ...", flush=True)
        written = export_lite_sam(cache / "lite_sam.safetensors", Path(tmp), precisions=("fp16", "int8"),
                                  photos=read_photos(cache / "images"), int8_method="static")
        seg = {"torch": TorchLiteSam(cache / "lite_sam.safetensors"),
               "ort fp32": OnnxLiteSam(ls / "encoder.onnx", ls / DECODER_FILE),
               "ort fp16": OnnxLiteSam(written[2], ls / DECODER_FILE),
               "ort int8 dynamic (default)": OnnxLiteSam(ls / "encoder.int8.onnx", ls / DECODER_FILE),
               "ort int8 static QDQ": OnnxLiteSam(written[3], ls / DECODER_FILE)}
        iou = {name: json.loads(Path(f"{path}.manifest.json").read_text())["parity"]
               for name, path in (("ort fp16", written[2]), ("ort int8 static QDQ", written[3]),
                                  ("ort int8 dynamic (default)", ls / "encoder.int8.onnx"))}
        print("[bench] LiteSAM encoder ...", flush=True)
        enc = interleaved({k: (lambda s=s: s.encode(image)) for k, s in seg.items()}, args.rounds)
        emb = {k: s.encode(image) for k, s in seg.items()}
    dec = interleaved({"torch": lambda: seg["torch"].predict(emb["torch"], box),
                       "ort": lambda: seg["ort fp32"].predict(emb["ort fp32"], box)}, args.rounds)
    det = CenterNetDetector(cache / "centernet.onnx")
    person = PersonSegmenter(cache / "person_selfie.onnx")
    other = interleaved({"CenterNet detector (ort fp32)": lambda: det.detect(image),
                         "person segmenter (ort fp32)": lambda: person.mask(image, (300.0, 100.0, 450.0, 460.0), [])},
                        args.rounds)

    print("[bench] end to end per frame, fp32 vs auto ...", flush=True)
    pipes = {prec: build_pipeline(with_overrides(Settings(), ["pipeline=refine", f"segmenter.precision={prec}"]))
             for prec in ("fp32", "auto")}
    grounded = {k: pl.ground(image, "the truck") for k, pl in pipes.items()}
    frame = interleaved({k: (lambda k=k: pipes[k].segment(image, grounded[k])) for k in pipes}, args.rounds)
    masks = {k: pipes[k].segment(image, grounded[k]).mask for k in pipes}

    report = {
        "machine": "2 CPU cores (this shared dev machine)", "rounds": args.rounds, "image": "dog.jpg at 640x480",
        "lite_sam_encoder_ms": enc, "lite_sam_decoder_ms": dec, "other_graphs_ms": other,
        "encoder_speedup_vs_ort_fp32": {k: round(enc["ort fp32"] / v, 2) for k, v in enc.items()},
        "reduced_precision_mask_iou_vs_fp32": iou,
        "per_frame_ms": {"fp32": frame["fp32"], "auto (int8 when its manifest allows)": frame["auto"]},
        "per_frame_mask_iou_auto_vs_fp32": round(mask_iou(masks["fp32"], masks["auto"]), 4),
        "targets": {"per_frame_ms": 300, "int8_encoder_speedup": 2.0},
    }
    rows = [[f"LiteSAM encoder, {k}", v, report["encoder_speedup_vs_ort_fp32"][k]] for k, v in enc.items()]
    rows += [[f"LiteSAM decoder, {k}", v, ""] for k, v in dec.items()]
    rows += [[k, v, ""] for k, v in other.items()]
    rows += [[f"refine per frame (640x480), precision {k}", v, ""] for k, v in report["per_frame_ms"].items()]
    print(markdown_table(["component (median ms)", "ms", "x vs ort fp32"], rows))
    print(f"per-frame mask IoU auto vs fp32: {report['per_frame_mask_iou_auto_vs_fp32']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_export.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {args.out / 'bench_export.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
