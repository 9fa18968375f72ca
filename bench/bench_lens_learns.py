"""Does LENS stage 2 (GRPO with unified rewards) raise the mean reward over stage 1? (issue 11, "it learns")

    .venv/bin/python bench/bench_lens_learns.py [--seeds 0 1 2] [--stage1-steps 60] [--stage2-steps 60]

Per seed: a tiny random-weight LENS (Qwen2.5-VL with the real Qwen vocabulary + SAM2 at 128 px, built by
tests/tiny_models.py from real configs) is aligned on procedural street scenes (stage 1: queries +
connector, dice + focal), then trained by GRPO (stage 2). The mean unified reward — format + box IoU² +
mask IoU², G samples per held-out prompt, sampling seeded alike — is measured after stage 1 and after
stage 2. A tiny random language model cannot learn Qwen's answer format in minutes, so format and box
rewards stay near 0 and the change is the mask term's: reported per part, honestly. JSON + PNG under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, pstdev

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def fit(module, data, steps: int) -> None:  # noqa: ANN001
    import lightning as L

    L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0).fit(module, datamodule=data)


def one_seed(seed: int, stage1_steps: int, stage2_steps: int, g: int, tmp: Path) -> dict:
    import lightning as L
    import torch
    from transformers import AutoProcessor

    from tiny_models import tiny_lens_release
    from training.data_lens import LensReferringData
    from training.modules.lens import LensGrpoModule, LensStage1Module

    torch.set_num_threads(2)
    L.seed_everything(seed, verbose=False)
    init, _ = tiny_lens_release(tmp / f"init{seed}", seed=seed)
    t0 = time.perf_counter()
    stage1 = LensStage1Module(str(init), lr=1e-3)
    fit(stage1, LensReferringData(str(init), num_samples=64, num_val=8, seed=seed, batch_size=4), stage1_steps)
    processor = AutoProcessor.from_pretrained(str(init), local_files_only=True)
    stage1.model.save_pretrained(tmp / f"stage1_{seed}", dtype=torch.float32, processor=processor)
    ckpt = str(tmp / f"stage1_{seed}")
    rl_data = LensReferringData(ckpt, num_samples=64, num_val=8, seed=seed, batch_size=2, with_answer=False)
    rl_data.setup()
    grpo = LensGrpoModule(ckpt, num_generations=g, max_new_tokens=16, lr=1e-4)
    before = grpo.mean_reward(rl_data.val_dataloader(), seed=1000 + seed)
    t1 = time.perf_counter()
    fit(grpo, rl_data, stage2_steps)
    after = grpo.mean_reward(rl_data.val_dataloader(), seed=1000 + seed)
    return {"seed": seed, "after_stage1": before, "after_stage2": after,
            "stage1_s": round(t1 - t0, 1), "stage2_s": round(time.perf_counter() - t1, 1)}


def main() -> int:
    from reasonseg.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--stage1-steps", type=int, default=60)
    p.add_argument("--stage2-steps", type=int, default=60)
    p.add_argument("--generations", type=int, default=4, help="G (Table A2: 8; 4 keeps the CPU run short)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lens_learns")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs.append(one_seed(seed, args.stage1_steps, args.stage2_steps, args.generations, Path(tmp)))
            r = runs[-1]
            print(f"seed {seed}: reward {r['after_stage1']['reward']:.3f} -> {r['after_stage2']['reward']:.3f} "
                  f"({r['stage1_s']:.0f} s + {r['stage2_s']:.0f} s)", flush=True)
    parts = ("reward", "format", "box_iou", "seg_iou")
    rows = []
    for part in parts:
        a = [r["after_stage1"][part] for r in runs]
        b = [r["after_stage2"][part] for r in runs]
        rows.append([part, f"{mean(a):.3f} ± {pstdev(a):.3f}", f"{mean(b):.3f} ± {pstdev(b):.3f}",
                     f"{mean(b) - mean(a):+.3f}", f"{sum(y > x for x, y in zip(a, b))}/{len(runs)}"])
    print(markdown_table(["mean over held-out prompts", "after stage 1", "after stage 2", "change",
                          "seeds up"], rows))
    record = {"seeds": args.seeds, "stage1_steps": args.stage1_steps, "stage2_steps": args.stage2_steps,
              "generations": args.generations, "runs": runs, "wall_s": round(time.perf_counter() - t0, 1)}
    (args.out / "lens_learns.json").write_text(json.dumps(record, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in runs:
        ax.plot([0, 1], [r["after_stage1"]["reward"], r["after_stage2"]["reward"]], marker="o", label=f"seed {r['seed']}")
    ax.set_xticks([0, 1], ["after stage 1", "after stage 2 (GRPO)"])
    ax.set_ylabel("mean unified reward")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "lens_learns.png", dpi=110)
    print(f"wrote {args.out / 'lens_learns.json'} in {record['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
