"""Benchmark the export tree's artifacts on this machine, side by side in one run (issue 10).

    .venv/bin/python bench/bench_export.py [--rounds 15] [--out bench/results/export]

Per component, medians over interleaved rounds (every variant once per round, so a busy shared machine
slows all of them alike): LiteSAM encoder on torch / onnxruntime fp32 / fp16 / int8 dynamic (7-bit weights,
onnxruntime's auto; and 8-bit) / int8 static QDQ / OpenVINO fp32 / OpenVINO bf16 (where the CPU has native
bf16) / OpenVINO int8 (NNCF; where the set-up made it), with their mask IoU vs fp32 and the CPU's int8 kernels, LiteSAM decoder torch / onnxruntime / OpenVINO,
CenterNet detector and the person segmenter on onnxruntime; then the embedded default end to end per frame
at 640x480 (`refine`, a grounded target followed frame to frame: detector + encoder + decoder, as the node
runs it): onnxruntime fp32, onnxruntime auto (int8), OpenVINO bf16 and the shipped default (`segmenter.backend:
auto`), and
the mask IoU of each against onnxruntime fp32. Then onnxruntime's own per-operator profile of the encoder
(fp32 and int8): the time in matrix products (all int8 can speed up) against the rest, and the per-frame
floor were those products free (Amdahl); OpenVINO's per-node profile of the bf16 and int8 encoders; and the
compute floor (the encoder's FLOPs at the best matrix-product rate of these cores; with onnxruntime's own fp32 and u8s8 int8 matrix-product rates); and LiteSAM at smaller inputs than
its 256, of the whole frame or of a crop around the target (masks vs 256). Prints tables, writes
`bench_export.json`.
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


MATMUL_OPS = frozenset({"Gemm", "MatMul", "FusedMatMul", "DynamicQuantizeMatMul", "MatMulInteger", "QLinearMatMul",
                        "MatMulIntegerToFloat", "FusedGemm"})


def op_profile(path: Path, feed: dict, rounds: int) -> dict[str, float]:
    """Mean ms per run by operator type, from onnxruntime's profiler (session options as `open_session`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="reasonseg-prof-") as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        sess.run(None, feed)  # warm-up, counted out below by the mean over `rounds` more
        for _ in range(rounds):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            total[op] = total.get(op, 0.0) + e["dur"] / 1e3
    return {op: round(ms / (rounds + 1), 1) for op, ms in sorted(total.items(), key=lambda kv: -kv[1])}


def ov_op_profile(path: Path, feed: dict, rounds: int, precision: str) -> dict[str, float]:
    """Mean ms per run by node type, from OpenVINO's per-node counters (compiled with OvGraph's latency settings,
    plus the counters)."""
    import openvino as ov

    from reasonseg.backends.openvino_graph import compile_config

    cm = ov.Core().compile_model(str(path), "CPU", {**compile_config(precision), "PERF_COUNT": True})
    req = cm.create_infer_request()
    req.infer(list(feed.values()))  # warm-up
    total: dict[str, float] = {}
    for _ in range(rounds):
        req.infer(list(feed.values()))
        for node in req.profiling_info:
            total[node.node_type] = total.get(node.node_type, 0.0) + node.real_time.total_seconds() * 1e3
    return {op: round(ms / rounds, 1) for op, ms in sorted(total.items(), key=lambda kv: -kv[1]) if ms / rounds >= 0.05}


def best_seconds(fn, runs: int = 7) -> float:  # noqa: ANN001
    """Fastest of `runs` calls after one warm-up: a peak rate, not a typical time."""
    fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def ort_matmul_rates(n: int = 2048) -> dict[str, float]:
    """Best-of-7 rate of onnxruntime's own n^3 matrix products on these cores: MatMul (fp32, GFLOP/s) and
    MatMulInteger u8 x s8 (the dynamic-int8 kernel, GOP/s): how much int8 can gain here at most."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    cases = {"fp32 MatMul": ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT,
                             rng.random((n, n), np.float32), rng.random((n, n), np.float32)),
             "u8s8 MatMulInteger": ("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32,
                                    rng.integers(0, 256, (n, n), np.uint8), rng.integers(-127, 128, (n, n), np.int8))}
    rates = {}
    for name, (op, ta, tb, ty, a, b) in cases.items():
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], name,
                                  [helper.make_tensor_value_info("a", ta, [n, n]),
                                   helper.make_tensor_value_info("b", tb, [n, n])],
                                  [helper.make_tensor_value_info("y", ty, [n, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        rates[name] = round(2 * n ** 3 / best_seconds(lambda: sess.run(None, {"a": a, "b": b})) / 1e9, 1)
    return rates


def compute_floor(weights: Path, other_ms: float) -> dict:
    """The frame time no kernel can beat here: the encoder's FLOPs (torch's counter, a multiply-add = 2) at the
    best dense fp32 matrix-product rate these cores reach (2048^3 sgemm, best of 7), plus the other graphs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from reasonseg.models.lite_sam.configuration import LiteSamConfig
    from reasonseg.models.lite_sam.convert import load_lite_sam

    model = load_lite_sam(weights, LiteSamConfig()).eval()
    s = model.cfg.img_size
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.image_encoder(torch.rand(1, 3, s, s))
    gflop = counter.get_total_flops() / 1e9
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    peak = 2 * 2048 ** 3 / best_seconds(lambda: a @ b) / 1e9
    encoder_ms = gflop / peak * 1e3
    return {"encoder_gflop": round(gflop, 2), "sgemm_gflop_per_s_best": round(peak, 1),
            "encoder_floor_ms_at_sgemm_rate": round(encoder_ms, 1),
            "detector_and_decoder_ms_measured": round(other_ms, 1),
            "per_frame_floor_ms_fp32": round(encoder_ms + other_ms, 1)}


def input_size_study(cache: Path, sizes: tuple[int, ...]) -> dict:
    """Why not encode smaller? LiteSAM (trained at 256) run at smaller inputs, masks vs its 256 masks for the
    detector's top-4 boxes (+ points, as `refine` prompts) on the evaluation photos (or the sample ones)."""
    import numpy as np

    from reasonseg.core.prompt import Prompt
    from reasonseg.core.settings import Settings
    from reasonseg.grounding.detector import CenterNetDetector
    from reasonseg.models.lite_sam.configuration import LiteSamConfig
    from reasonseg.segmenters.lite_sam.runners import TorchLiteSam
    from reasonseg_export.formats import read_photos
    from reasonseg_export.parity import mask_iou

    folder = cache / "eval_photos" if (cache / "eval_photos").is_dir() else cache / "images"
    photos = [cv2.resize(p, (640, 480)) for p in read_photos(folder, limit=64)]
    det = CenterNetDetector(cache / "centernet.onnx")
    n = Settings().segmenter.num_points
    prompts = [(i, Prompt(box=d.box, points=tuple(map(tuple, d.points[:n])))) for i, p in enumerate(photos)
               for d in det.detect(p)[:4]]
    masks, encode_ms, segs = {}, {}, {}
    for size in (256, *sizes):
        seg = segs[size] = TorchLiteSam(cache / "lite_sam.safetensors", LiteSamConfig(img_size=size),
                                        mask_choice="largest_in_box")
        times, embs = [], []
        for p in photos:
            t0 = time.perf_counter()
            embs.append(seg.encode(p))
            times.append((time.perf_counter() - t0) * 1e3)
        encode_ms[size] = round(median(times), 1)
        masks[size] = [seg.predict(embs[i], pr).mask for i, pr in prompts]
    out = {"photos": len(photos), "folder": folder.name, "prompts": len(prompts), "torch_encode_ms": encode_ms}
    for size in sizes:
        ious = np.array([mask_iou(a, b) for a, b in zip(masks[256], masks[size])])
        out[f"mask_iou_{size}_vs_256"] = {"mean": round(float(ious.mean()), 3), "median": round(float(np.median(ious)), 3),
                                         "p10": round(float(np.percentile(ious, 10)), 3)}
    out["crop_at_smallest"] = crop_study(segs[min(sizes)], photos, prompts, masks[256])
    return out


def crop_study(seg, photos: list, prompts: list, reference: list) -> dict:  # noqa: ANN001
    """Why not encode just a square around the target at a small input? Boxes whose crop (the box plus half
    its side on each side) shows the object at least as large as the full-frame 256 input does: crop, encode,
    prompt in crop pixels, paste back; masks vs the full-frame ones."""
    import numpy as np

    from reasonseg.core.prompt import Prompt
    from reasonseg_export.parity import mask_iou

    ious = []
    for (i, pr), ref in zip(prompts, reference):
        img = photos[i]
        h, w = img.shape[:2]
        x0, y0, x1, y1 = pr.box
        side = int(np.ceil(max(64.0, 2 * max(x1 - x0, y1 - y0))))
        if side * 256 / max(h, w) > seg.input_size:  # the crop would see the object smaller: not taken
            continue
        ox, oy = int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2))
        crop = np.zeros((side, side, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(ox, 0), max(oy, 0), min(ox + side, w), min(oy + side, h)
        crop[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox] = img[sy0:sy1, sx0:sx1]
        shifted = Prompt(box=(x0 - ox, y0 - oy, x1 - ox, y1 - oy), points=tuple((px - ox, py - oy) for px, py in pr.points))
        mask = np.zeros((h, w), bool)
        mask[sy0:sy1, sx0:sx1] = seg.predict(seg.encode(crop), shifted).mask[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox]
        ious.append(mask_iou(ref, mask))
    ious = np.array(ious) if ious else np.zeros(1)
    return {"input": seg.input_size, "prompts_cropped": len(ious), "mask_iou_vs_full_frame_256":
            {"mean": round(float(ious.mean()), 3), "median": round(float(np.median(ious)), 3)}}


def main() -> int:
    import torch

    from reasonseg.backends.cpu_int8 import this_cpu
    from reasonseg.backends.openvino_graph import OvGraph, native_bf16
    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.prompt import Prompt
    from reasonseg.core.report import interleaved_median_ms, markdown_table
    from reasonseg.core.settings import Settings
    from reasonseg.grounding.detector import CenterNetDetector
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.segmenters.lite_sam.graphs import DECODER_FILE
    from reasonseg.segmenters.lite_sam.runners import OnnxLiteSam, TorchLiteSam, preprocess_image
    from reasonseg.segmenters.person import PersonSegmenter
    from reasonseg.segmenters.registry import auto_backend
    from reasonseg.settings.loading import with_overrides
    from reasonseg_export.formats import read_photos
    from reasonseg_export.lite_sam import export_lite_sam, masks_iou_vs_fp32
    from reasonseg_export.parity import mask_iou
    from reasonseg_export.precision import to_int8

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export")
    args = p.parse_args()
    torch.set_num_threads(2)
    cache = resolve_cache_dir()
    ls = cache / "lite_sam"
    image = cv2.resize(cv2.imread(str(cache / "images" / "dog.jpg")), (640, 480))[:, :, ::-1].copy()
    box = Prompt(box=(120.0, 130.0, 560.0, 470.0))

    with tempfile.TemporaryDirectory(prefix="reasonseg-bench-") as tmp:  # the other precisions, to compare
        print("[bench] exporting fp16, static-int8 and full-range dynamic-int8 encoders for comparison ...",
              flush=True)
        photos = read_photos(cache / "images")
        written = export_lite_sam(cache / "lite_sam.safetensors", Path(tmp), precisions=("fp16", "int8"),
                                  photos=photos, int8_method="static")
        full = to_int8(written[0], Path(tmp) / "encoder.int8-full.onnx", method="dynamic")
        seg = {"torch": TorchLiteSam(cache / "lite_sam.safetensors"),
               "ort fp32": OnnxLiteSam(ls / "encoder.onnx", ls / DECODER_FILE),
               "ort fp16": OnnxLiteSam(written[2], ls / DECODER_FILE),
               "ort int8 dynamic (ort auto)": OnnxLiteSam(ls / "encoder.int8.onnx", ls / DECODER_FILE),
               "ort int8 dynamic, 8-bit weights": OnnxLiteSam(full, ls / DECODER_FILE),
               "ort int8 static QDQ": OnnxLiteSam(written[3], ls / DECODER_FILE),
               "openvino fp32": OnnxLiteSam(OvGraph(ls / "encoder.onnx", "enc"), OvGraph(ls / DECODER_FILE, "dec"))}
        judged = [("ort fp16", written[2]), ("ort int8 static QDQ", written[3]),
                  ("ort int8 dynamic (ort auto)", ls / "encoder.int8.onnx")]
        if native_bf16():  # the set-up made and judged it here
            seg["openvino bf16"] = OnnxLiteSam(OvGraph(ls / "encoder.bf16.xml", "enc", precision="bf16"),
                                               OvGraph(ls / DECODER_FILE, "dec", precision="bf16"))
            judged.append(("openvino bf16", ls / "encoder.bf16.xml"))
        if (ls / "encoder.int8.xml").is_file():  # the set-up's NNCF int8 (int8 products, bf16 or fp32 around them)
            seg["openvino int8"] = OnnxLiteSam(OvGraph(ls / "encoder.int8.xml", "enc", precision="int8"),
                                               OvGraph(ls / DECODER_FILE, "dec", precision="int8"))
            judged.append(("openvino int8", ls / "encoder.int8.xml"))
        iou = {name: json.loads(Path(f"{path}.manifest.json").read_text())["parity"] for name, path in judged}
        iou["ort int8 dynamic, 8-bit weights"] = masks_iou_vs_fp32(Path(tmp), full, photos)
        print("[bench] LiteSAM encoder ...", flush=True)
        enc = interleaved_median_ms({k: (lambda s=s: s.encode(image)) for k, s in seg.items()}, args.rounds)
        emb = {k: s.encode(image) for k, s in seg.items()}
    decoders = {"torch": "torch", "ort": "ort fp32", "openvino fp32": "openvino fp32", "openvino bf16": "openvino bf16",
                "openvino int8 (its floating point)": "openvino int8"}
    dec = interleaved_median_ms({k: (lambda v=v: seg[v].predict(emb[v], box)) for k, v in decoders.items()
                                 if v in seg}, args.rounds)
    det = CenterNetDetector(cache / "centernet.onnx")
    person = PersonSegmenter(cache / "person_selfie.onnx")
    other = interleaved_median_ms(
        {"CenterNet detector (ort fp32)": lambda: det.detect(image),
         "person segmenter (ort fp32)": lambda: person.mask(image, (300.0, 100.0, 450.0, 460.0), [])}, args.rounds)

    print("[bench] end to end per frame: onnxruntime fp32, onnxruntime auto, the shipped default ...", flush=True)
    variants = {"onnxruntime fp32": ["segmenter.backend=onnxruntime", "segmenter.precision=fp32"],
                "onnxruntime auto (int8 when its manifest allows)": ["segmenter.backend=onnxruntime"],
                "default (segmenter.backend auto)": []}
    for precision in ("bf16", "int8"):  # both, whichever of them the default's `auto` took on this CPU
        if f"openvino {precision}" in seg:
            variants[f"openvino {precision}"] = ["segmenter.backend=openvino", f"segmenter.precision={precision}"]
    pipes = {k: build_pipeline(with_overrides(Settings(), ["pipeline=refine", *v])) for k, v in variants.items()}
    grounded = {k: pl.ground(image, "the truck") for k, pl in pipes.items()}
    frame = interleaved_median_ms({k: (lambda k=k: pipes[k].segment(image, grounded[k])) for k in pipes}, args.rounds)
    masks = {k: pipes[k].segment(image, grounded[k]).mask for k in pipes}

    print("[bench] encoder operator profile ...", flush=True)
    feed = {"image": preprocess_image(image)[0]}
    prof = {name: op_profile(path, feed, max(3, args.rounds // 3))
            for name, path in (("ort fp32", ls / "encoder.onnx"), ("ort int8 dynamic (ort auto)", ls / "encoder.int8.onnx"))}
    ov_prof = {name: ov_op_profile(ls / f"encoder.{name}.xml", feed, max(3, args.rounds // 3), name)
               for name in ("bf16", "int8") if f"openvino {name}" in seg}
    matmul_ms = {k: round(sum(v for op, v in ops.items() if op in MATMUL_OPS), 1) for k, ops in prof.items()}
    other_ms = {k: round(sum(ops.values()) - matmul_ms[k], 1) for k, ops in prof.items()}
    amdahl = {"encoder_matmul_ms": matmul_ms, "encoder_other_ms": other_ms,
              "per_frame_floor_ms_if_matmuls_free": round(frame["onnxruntime fp32"] - matmul_ms["ort fp32"], 1),
              "encoder_speedup_bound_if_matmuls_free":
                  round((matmul_ms["ort fp32"] + other_ms["ort fp32"]) / other_ms["ort fp32"], 2)}

    floor = compute_floor(cache / "lite_sam.safetensors", other["CenterNet detector (ort fp32)"] + dec["ort"])
    floor["ort_matmul_2048_g_per_s"] = rates = ort_matmul_rates()

    print("[bench] smaller encoder inputs (torch) ...", flush=True)
    smaller = input_size_study(cache, (192, 128))

    report = {
        "machine": {"cores": 2, "what": "this shared dev machine", **this_cpu()}, "rounds": args.rounds,
        "image": "dog.jpg at 640x480",
        "lite_sam_encoder_ms": enc, "lite_sam_decoder_ms": dec, "other_graphs_ms": other,
        "encoder_speedup_vs_ort_fp32": {k: round(enc["ort fp32"] / v, 2) for k, v in enc.items()},
        "reduced_precision_mask_iou_vs_fp32": iou,
        "per_frame_ms": frame,
        "default_backend": dict(zip(("backend", "why"), auto_backend(Settings().segmenter, cache))),
        "per_frame_mask_iou_vs_onnxruntime_fp32": {k: round(mask_iou(masks["onnxruntime fp32"], m), 4)
                                                   for k, m in masks.items()},
        "encoder_op_profile_ms": prof, "encoder_op_profile_ms_openvino": ov_prof, "amdahl": amdahl,
        "compute_floor": floor,
        "smaller_encoder_inputs": smaller,
        "targets": {"per_frame_ms": 300, "int8_encoder_speedup": 2.0},
    }
    rows = [[f"LiteSAM encoder, {k}", v, report["encoder_speedup_vs_ort_fp32"][k],
             round(iou[k]["mask_iou_mean"], 3) if k in iou else ""] for k, v in enc.items()]
    rows += [[f"LiteSAM decoder, {k}", v, "", ""] for k, v in dec.items()]
    rows += [[k, v, "", ""] for k, v in other.items()]
    rows += [[f"refine per frame (640x480), {k}", v, round(frame["onnxruntime fp32"] / v, 2),
              report["per_frame_mask_iou_vs_onnxruntime_fp32"][k]] for k, v in frame.items()]
    m = report["machine"]
    print(f"machine: {m['cpu']} ({m['arch']}, {m['cores']} cores), int8 kernels: {m['int8_kernels']}")
    print(markdown_table(["component (median ms)", "ms", "x vs ort fp32", "mask IoU vs fp32"], rows))
    ops = list(prof["ort fp32"])[:8]
    print(markdown_table(["encoder operator (ms per run)", *prof],
                         [[op, *(prof[k].get(op, 0.0) for k in prof)] for op in ops]
                         + [["all matrix products", *matmul_ms.values()],
                            ["everything else", *amdahl["encoder_other_ms"].values()]]))
    if ov_prof:
        kinds = list(dict.fromkeys(op for ops in ov_prof.values() for op in ops))[:10]
        print(markdown_table(["encoder node type, OpenVINO (ms per run)", *ov_prof],
                             [[op, *(ops.get(op, 0.0) for ops in ov_prof.values())] for op in kinds]
                             + [["all", *(round(sum(ops.values()), 1) for ops in ov_prof.values())]]))
    print(f"per-frame floor were every matrix product free: {amdahl['per_frame_floor_ms_if_matmuls_free']} ms "
          f"(target {report['targets']['per_frame_ms']} ms); encoder speed-up bound from faster matrix products "
          f"alone: {amdahl['encoder_speedup_bound_if_matmuls_free']}x (target {report['targets']['int8_encoder_speedup']}x)")
    print(f"compute floor: encoder {floor['encoder_gflop']} GFLOP at the best sgemm rate here "
          f"({floor['sgemm_gflop_per_s_best']} GFLOP/s) = {floor['encoder_floor_ms_at_sgemm_rate']} ms; with the "
          f"detector and decoder a frame cannot take under {floor['per_frame_floor_ms_fp32']} ms in fp32")
    print(f"onnxruntime 2048^3: fp32 MatMul {rates['fp32 MatMul']} GFLOP/s, u8s8 MatMulInteger "
          f"{rates['u8s8 MatMulInteger']} GOP/s ({rates['u8s8 MatMulInteger'] / rates['fp32 MatMul']:.1f}x; "
          f"int8 kernels: {report['machine']['int8_kernels']})")
    print(markdown_table(["encoder input", "torch encode ms", "mask IoU vs 256 (mean / median / p10)"],
                         [[256, smaller["torch_encode_ms"][256], "reference"]]
                         + [[k, smaller["torch_encode_ms"][k], " / ".join(map(str, smaller[f"mask_iou_{k}_vs_256"].values()))]
                            for k in (192, 128)]))
    crop = smaller["crop_at_smallest"]
    print(f"crop around the target at {crop['input']} px ({crop['prompts_cropped']} boxes small enough): mask IoU "
          f"vs the full frame at 256 mean {crop['mask_iou_vs_full_frame_256']['mean']}, median "
          f"{crop['mask_iou_vs_full_frame_256']['median']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_export.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {args.out / 'bench_export.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
