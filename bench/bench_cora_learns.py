"""Does CORA's output-consistency weighting beat plain confidence thresholding? (issue 11, "it learns")

    .venv/bin/python bench/bench_cora_learns.py [--seeds 0 1 2] [--stage1-steps 200] [--stage3-steps 250]
        [--arms consistency confidence labeled]

Per seed: a tiny random-weight CORA (Qwen2.5-VL with the real Qwen vocabulary + SAM2 at 128 px, from real
configs by tests/tiny_models.py) is trained on procedural street scenes with few labels — stage 1 (semantic
+ attribute instructions, 16 labeled scenes) — and then, from that one checkpoint, stage 3 (+ 64 unlabeled
scenes with noisy pseudo-masks, `training.data_cora.write_pseudo_masks`) two ways, side by side (a third
on request):

* `consistency` — eq. 6-7: per-pixel weights from the variance over K − 1 = 6 frozen rephrasing passes;
* `confidence`  — Table 4's baseline: pixels where the trained pass is ≥ 0.95 confident weigh 1, others 0;
* `labeled`     — (`--arms`) the labeled loss alone (σ = 0): what the unlabeled scenes add at all.

Stage 2 (conditional instructions with anchors) is left out: it does not touch the unlabeled loss being
compared, and the CPU budget is 20 min. Validation: 48 held-out scenes, semantic and attribute instructions,
the `<SEG>` token's mask at the image's size; gIoU / cIoU. JSON + PNG of the curves under --out.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from learning_curves import ValCurve, paired_margin, summarize, write_results  # noqa: E402

ARMS = {"consistency": dict(pseudo_weighting="consistency"), "confidence": dict(pseudo_weighting="confidence"),
        "labeled": dict(pseudo_weighting="consistency", sigma=0.0)}


def fit(module, data, steps: int, every: int, curve: ValCurve | None = None) -> None:  # noqa: ANN001
    L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=every,
              check_val_every_n_epoch=None, limit_val_batches=1.0 if curve else 0,
              callbacks=[curve] if curve else []).fit(module, datamodule=data)


def one_seed(seed: int, stage1_steps: int, stage3_steps: int, every: int, arms: list[str], tmp: Path) -> list[dict]:
    import torch
    from tiny_models import tiny_qwen25_vl, tiny_sam2

    from reasonseg.models.cora import CoraModel
    from training.data_cora import CoraData
    from training.modules.cora import CoraModule

    torch.set_num_threads(2)
    L.seed_everything(seed, verbose=False)
    model, processor = CoraModel.from_base(tiny_qwen25_vl(tmp / f"qwen{seed}", seed),
                                           tiny_sam2(tmp / f"sam2_{seed}", seed, presence_logit=10.0))
    init = model.save_pretrained(tmp / f"init{seed}", dtype=torch.float32, processor=processor)
    data = dict(num_labeled=16, num_unlabeled=64, num_val=48, seed=seed)
    t0 = time.perf_counter()
    stage1 = CoraModule(str(init), stage=1, lr=1e-3)
    fit(stage1, CoraData(str(init), stage=1, **data), stage1_steps, every)
    ckpt = stage1.model.save_pretrained(tmp / f"stage1_{seed}", dtype=torch.float32, processor=stage1.processor())
    stage1_s = time.perf_counter() - t0
    runs = []
    for arm in arms:
        L.seed_everything(seed, verbose=False)
        curve = ValCurve()
        t1 = time.perf_counter()
        module = CoraModule(str(ckpt), stage=3, lr=1e-3, **ARMS[arm])
        fit(module, CoraData(str(ckpt), stage=3, **data), stage3_steps, every, curve)
        runs.append({"arm": arm, "seed": seed, **curve.record(), "stage1_s": round(stage1_s, 1),
                     "stage3_s": round(time.perf_counter() - t1, 1)})
        print(f"seed {seed} {arm:11s}: gIoU {curve.giou[0]:.3f} -> {curve.giou[-1]:.3f}  "
              f"cIoU {curve.ciou[-1]:.3f} ({runs[-1]['stage3_s']:.0f} s)", flush=True)
    return runs


def main() -> int:
    from reasonseg.core.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["consistency", "confidence"])
    p.add_argument("--stage1-steps", type=int, default=200)
    p.add_argument("--stage3-steps", type=int, default=250)
    p.add_argument("--val-every", type=int, default=50, help="validate every N steps")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cora_learns")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs += one_seed(seed, args.stage1_steps, args.stage3_steps, args.val_every, args.arms, Path(tmp))
    summary, rows = summarize(runs, args.arms, "arm")
    print(markdown_table(["stage-3 pseudo-label weighting", "val gIoU (mean ± std)", "val cIoU", "gIoU per seed"],
                         rows))
    for a, b in (("consistency", "confidence"), ("consistency", "labeled")):
        if a in summary and b in summary:
            print(paired_margin(runs, summary, "arm", a, b))
    record = {"stage1_steps": args.stage1_steps, "stage3_steps": args.stage3_steps, "labeled": 16, "unlabeled": 64,
              "val": 48, "seeds": args.seeds, "summary": summary, "runs": runs,
              "wall_s": round(time.perf_counter() - t0, 1)}
    write_results(args.out, "cora_learns", record, "arm", "steps", "stage-3 step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
