"""Does LENS stage 2 (GRPO with unified rewards) raise the mean reward over stage 1? (issue 11, "it learns")

    .venv/bin/python bench/bench_lens_learns.py [--seeds 0 1 2] [--format-steps 75]
        [--stage1-steps 60] [--stage2-steps 60]

Per seed: a tiny random-weight LENS (Qwen2.5-VL with the real Qwen vocabulary + SAM2 at 128 px, built by
tests/tiny_models.py from real configs). Its language model first gets a short answer-format pretraining
(`--format-steps` of next-token CE on ground-truth grounding answers): the stand-in for the pretraining the
real Qwen2.5-VL has had, which writes Qwen's grounding format out of the box. Kept short on purpose, so the
base model writes the format only part of the time, as an un-tuned base does. Then LENS proper: stage 1
(queries + connector, dice + focal), then stage 2 (GRPO). The mean unified reward — format + box IoU² +
mask IoU², G samples per held-out prompt, sampling seeded alike — is measured after stage 1 and after
stage 2, per part. JSON + PNG under --out.
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


def pretrain_answer_format(model, data, steps: int, lr: float = 3e-3) -> float:  # noqa: ANN001
    """Stands in for the pretraining a real base MLLM has had: next-token CE on ground-truth grounding answers
    (Qwen's `<|object_ref_start|>…<|box_end|>` format), the language model only. Qwen2.5-VL writes this format
    out of the box; a random tiny one never does, and GRPO cannot move a reward no sample ever earns.
    Returns the last step's loss."""
    import torch

    mllm = model.mllm
    im_start = data.train.processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    params = [p for n, p in mllm.named_parameters() if not n.startswith("model.visual.")]
    for p in mllm.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    mllm.train()
    loss, step, epoch = torch.tensor(float("nan")), 0, 0
    loader = data.train_dataloader()
    while step < steps:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            if step == steps:
                break
            step += 1
            ids = batch["input_ids"]
            labels = ids.masked_fill(batch["attention_mask"] == 0, -100)
            for row in range(ids.shape[0]):  # the answer only: after the last "<|im_start|>assistant\n"
                labels[row, :int((ids[row] == im_start).nonzero()[-1]) + 3] = -100
            loss = mllm(input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"],
                        image_grid_thw=batch["image_grid_thw"], labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch += 1
    mllm.eval()
    return float(loss.detach())


def one_seed(seed: int, format_steps: int, stage1_steps: int, stage2_steps: int, g: int, tmp: Path
             ) -> dict:
    import lightning as L
    import torch
    from tiny_models import tiny_lens_release
    from transformers import AutoProcessor

    from reasonseg.models.lens import LensModel
    from training.data_lens import LensReferringData
    from training.modules.lens import LensGrpoModule, LensStage1Module

    torch.set_num_threads(2)
    L.seed_everything(seed, verbose=False)
    init, _ = tiny_lens_release(tmp / f"init{seed}", seed=seed)
    t0 = time.perf_counter()
    processor = AutoProcessor.from_pretrained(str(init), local_files_only=True)
    base = LensModel.from_pretrained(str(init), dtype=torch.float32)
    sft_data = LensReferringData(str(init), num_samples=64, num_val=8, seed=seed, batch_size=4)
    sft_data.setup()
    format_loss = pretrain_answer_format(base, sft_data, format_steps)
    base.save_pretrained(tmp / f"base{seed}", dtype=torch.float32, processor=processor)
    init = tmp / f"base{seed}"
    stage1 = LensStage1Module(str(init), lr=1e-3)
    fit(stage1, LensReferringData(str(init), num_samples=64, num_val=8, seed=seed, batch_size=4), stage1_steps)
    stage1.model.save_pretrained(tmp / f"stage1_{seed}", dtype=torch.float32, processor=processor)
    ckpt = str(tmp / f"stage1_{seed}")
    rl_data = LensReferringData(ckpt, num_samples=64, num_val=8, seed=seed, batch_size=2, with_answer=False)
    rl_data.setup()
    grpo = LensGrpoModule(ckpt, num_generations=g, max_new_tokens=40, lr=1e-4)
    before = grpo.mean_reward(rl_data.val_dataloader(), seed=1000 + seed)
    t1 = time.perf_counter()
    fit(grpo, rl_data, stage2_steps)
    after = grpo.mean_reward(rl_data.val_dataloader(), seed=1000 + seed)
    return {"seed": seed, "format_pretrain_loss": round(format_loss, 3), "after_stage1": before, "after_stage2": after,
            "stage1_s": round(t1 - t0, 1), "stage2_s": round(time.perf_counter() - t1, 1)}


def main() -> int:
    from reasonseg.core.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--format-steps", type=int, default=75, help="answer-format pretraining of the tiny LM")
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
            runs.append(one_seed(seed, args.format_steps, args.stage1_steps, args.stage2_steps, args.generations,
                                 Path(tmp)))
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
    record = {"seeds": args.seeds, "format_steps": args.format_steps, "stage1_steps": args.stage1_steps,
              "stage2_steps": args.stage2_steps,
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
