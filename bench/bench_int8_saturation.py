"""What the LiteSAM int8 encoder's masks become on a CPU whose int8 kernels saturate, measured on any CPU.

    .venv/bin/python bench/bench_int8_saturation.py [--photos N] [--out bench/results/int8-saturation]

onnxruntime's dynamic int8 matrix product quantizes activations to u8 per tensor and weights to s8 per output
channel. On x86 without VNNI its kernel (VPMADDUBSW) adds each adjacent pair of u8*s8 products into a
saturating int16 (`reasonseg/backends/cpu_int8.py`). This script runs the encoder's 40 matrix products in torch
with exactly that arithmetic - integer products, the pair sums clipped at int16 or not - for full-range
(|w| <= 127) and 7-bit (|w| <= 64, `reduce_range`, the export's default) weights, and reports the mask IoU
vs fp32 over the export check's box prompts (`EVAL_BOXES`, `largest_in_box`) and the share of pairs
clipped. About a minute per variant for 6 photos on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INT16_MAX = 32767
VARIANTS = {  # name: (weight qmax, pairs saturate)
    "8-bit weights, exact kernels (VNNI / ARM)": (127, False),
    "8-bit weights, saturating kernels (AVX2)": (127, True),
    "7-bit weights (default), exact kernels": (64, False),
    "7-bit weights (default), saturating kernels": (64, True),
}


class Emulation:
    """onnxruntime's DynamicQuantizeLinear + MatMulInteger for one nn.Linear; counts clipped pairs."""

    def __init__(self) -> None:
        self.qmax, self.saturate, self.clipped, self.pairs = 127, False, 0, 0

    def linear(self, layer, x):  # noqa: ANN001, ANN201 - bound as nn.Linear.forward
        import torch

        shape = x.shape
        a = x.reshape(-1, shape[-1]).double()
        lo, hi = min(0.0, a.min().item()), max(0.0, a.max().item())
        scale = (hi - lo) / 255.0 or 1.0
        zero = float(np.clip(np.rint(-lo / scale), 0, 255))
        aq = torch.clamp(torch.round(a / scale) + zero, 0, 255)  # torch.round: half to even, as onnxruntime
        w = layer.weight.double()
        w_scale = w.abs().amax(1).clamp_min(1e-12) / self.qmax
        wq = torch.clamp(torch.round(w / w_scale[:, None]), -self.qmax, self.qmax)
        acc = aq @ wq.t()  # exact: integers far below 2^53
        n, k2, m = a.shape[0], w.shape[1] // 2, w.shape[0]
        self.pairs += n * k2 * m
        if self.saturate:
            # only a weight pair with 255 * (|w0| + |w1|) > 32767 can clip: add back (clipped - exact) for those
            wp = wq.t().reshape(k2, 2, m)  # the adjacent pairs along K, as the kernel packs them
            kk, mm = torch.nonzero(255 * (wp[:, 0].abs() + wp[:, 1].abs()) > INT16_MAX, as_tuple=True)
            if kk.numel():
                w0, w1 = wp[kk, 0, mm], wp[kk, 1, mm]
                ap = aq.reshape(n, k2, 2)
                for i in range(0, n, 1024):
                    pairs = ap[i:i + 1024, kk, 0] * w0 + ap[i:i + 1024, kk, 1] * w1
                    delta = pairs.clamp(-INT16_MAX - 1, INT16_MAX) - pairs
                    self.clipped += int((delta != 0).sum())
                    acc[i:i + 1024].index_add_(1, mm, delta)
        y = scale * w_scale[None, :] * (acc - zero * wq.sum(1)[None, :])
        if layer.bias is not None:
            y = y + layer.bias.double()
        return y.to(x.dtype).reshape(*shape[:-1], -1)


def main() -> int:
    import torch

    from reasonseg.backends.cpu_int8 import this_cpu
    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.prompt import Prompt
    from reasonseg.core.report import markdown_table
    from reasonseg.segmenters.lite_sam.runners import TorchLiteSam
    from reasonseg_export.formats import read_photos
    from reasonseg_export.lite_sam import EVAL_BOXES
    from reasonseg_export.parity import mask_iou

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=6, help="sample photos from the set-up cache (6: the export's)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8-saturation")
    args = p.parse_args()
    torch.set_num_threads(2)
    cache = resolve_cache_dir()
    seg = TorchLiteSam(cache / "lite_sam.safetensors", mask_choice="largest_in_box")  # the export check's
    photos = read_photos(cache / "images", limit=args.photos)
    emu = Emulation()
    layers = [m for m in seg.model.image_encoder.modules() if isinstance(m, torch.nn.Linear)]  # the encoder's only

    def masks() -> list[np.ndarray]:
        out = []
        for img in photos:
            h, w = img.shape[:2]
            emb = seg.encode(img)
            out += [seg.predict(emb, Prompt(box=(x0 * w, y0 * h, x1 * w, y1 * h))).mask
                    for x0, y0, x1, y1 in EVAL_BOXES]
        return out

    reference = masks()
    for m in layers:
        m.forward = types.MethodType(emu.linear, m)
    results = {}
    for name, (qmax, saturate) in VARIANTS.items():
        t0 = time.perf_counter()
        emu.qmax, emu.saturate, emu.clipped, emu.pairs = qmax, saturate, 0, 0
        ious = [mask_iou(a, b) for a, b in zip(reference, masks())]
        results[name] = {"mask_iou_mean": round(float(np.mean(ious)), 4),
                         "mask_iou_median": round(float(np.median(ious)), 4),
                         "mask_iou_min": round(float(np.min(ious)), 4),
                         "pairs_clipped": emu.clipped / max(1, emu.pairs)}
        print(f"[bench] {name}: mean IoU {results[name]['mask_iou_mean']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    report = {"machine": {"cores": 2, **this_cpu()}, "photos": len(photos), "prompts": len(reference),
              "linear_layers": len(layers), "variants": results}
    print(markdown_table(["int8 encoder (emulated)", "mask IoU mean / median / min", "pairs clipped"],
                         [[k, f"{v['mask_iou_mean']} / {v['mask_iou_median']} / {v['mask_iou_min']}",
                           f"{v['pairs_clipped']:.1e}"] for k, v in results.items()]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_saturation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] wrote {args.out / 'int8_saturation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
