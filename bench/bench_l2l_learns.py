"""Does L2L's pseudo-labelling help? (issue 11, "it learns"): the same tiny segmentor trained on procedural
street scenes with 10 % labels, three ways, over seeds, side by side:

* `none`  — the labeled part alone;
* `fixed` — + FixMatch-style pseudo-labels from the weak view at a fixed confidence (App. A.1's baseline);
* `rple`  — + SPM-fused priors and RPLE's learned per-image thresholds (the paper's method).

Every arm trains with the module's schedule: AdamW, App. B.3's polynomial decay over the whole run.

    .venv/bin/python bench/bench_l2l_learns.py [--seeds 0 1 2] [--epochs 20] [--out bench/results/l2l_learns]

The unlabeled part's priors come from `training.data.simulated_prior` (a frozen MLLM + SAM2 as a noise model:
70 % a softened correct mask, 20 % another object's, 10 % a hallucinated blob). Validation is the inference
path (no prior: two passes, the model's own). Writes JSON (per run: val gIoU / cIoU per epoch, the last
epoch's, wall time) and a PNG of the curves (mean and min-max over seeds), prints a table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learning_curves import ValCurve, paired_margin, summarize, write_results  # noqa: E402


def run(init: Path, mode: str, seed: int, epochs: int, samples: int) -> dict:
    import torch

    from training.data import SemiSupervisedReferring
    from training.modules.l2l import L2LModule

    torch.set_num_threads(2)
    L.seed_everything(seed, verbose=False)
    module = L2LModule(str(init), pseudo_label=mode, lr=1e-3, seed=seed)
    data = SemiSupervisedReferring(str(init), num_samples=samples, num_val=128, labeled_share=0.1, seed=seed,
                                   batch_size=8, max_text_len=12)
    curve = ValCurve()
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[curve])
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return {"mode": mode, "seed": seed, **curve.record(), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    from reasonseg.core.report import markdown_table
    from training.init_model import init_l2l

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--modes", nargs="+", default=["none", "fixed", "rple"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=256, help="training scenes (10 %% labeled)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "l2l_learns")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            init = init_l2l(Path(tmp) / f"init{seed}", "tiny", seed)  # one start per seed, shared by the modes
            for mode in args.modes:
                runs.append(run(init, mode, seed, args.epochs, args.samples))
                print(f"seed {seed} {mode:5s}: gIoU {runs[-1]['final_giou']:.3f} cIoU {runs[-1]['final_ciou']:.3f} "
                      f"({runs[-1]['seconds']:.0f} s)", flush=True)
    summary, rows = summarize(runs, args.modes, "mode")
    print(markdown_table(["pseudo-labels", "val gIoU (mean ± std)", "val cIoU", "gIoU per seed"], rows))
    for a, b in (("rple", "none"), ("rple", "fixed")):
        if a in summary and b in summary:
            print(paired_margin(runs, summary, "mode", a, b))
    record = {"epochs": args.epochs, "train_scenes": args.samples, "labeled_share": 0.1, "val_scenes": 128,
              "seeds": args.seeds, "summary": summary, "runs": runs, "wall_s": round(time.perf_counter() - t0, 1)}
    write_results(args.out, "l2l_learns", record, "mode", "epochs", "epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
