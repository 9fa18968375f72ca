"""What the "it learns" benchmarks share: a validation-curve callback, the summary table over seeds and the
curve plot (mean and min-max band over seeds, one line per arm)."""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean, pstdev

import lightning as L


class ValCurve(L.Callback):
    """val/gIoU and val/cIoU after every validation, with the step and epoch they were taken at (a plain
    callback: no logger files needed)."""

    def __init__(self) -> None:
        self.step: list[int] = []
        self.epoch: list[int] = []
        self.giou: list[float] = []
        self.ciou: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:  # after the module logged
        if not trainer.sanity_checking:
            self.step.append(trainer.global_step)
            self.epoch.append(trainer.current_epoch + 1)
            self.giou.append(float(trainer.callback_metrics["val/gIoU"]))
            self.ciou.append(float(trainer.callback_metrics["val/cIoU"]))

    def record(self) -> dict:
        return {"steps": self.step, "epochs": self.epoch, "val_giou": self.giou, "val_ciou": self.ciou,
                "final_giou": self.giou[-1], "final_ciou": self.ciou[-1]}


def summarize(runs: list[dict], arms: list[str], key: str) -> tuple[dict, list[list[str]]]:
    """Per arm (`run[key]`): mean ± std of the final gIoU / cIoU over seeds, and the table's rows."""
    summary, rows = {}, []
    for arm in arms:
        g = [r["final_giou"] for r in runs if r[key] == arm]
        c = [r["final_ciou"] for r in runs if r[key] == arm]
        summary[arm] = {"giou_mean": mean(g), "giou_std": pstdev(g), "ciou_mean": mean(c), "ciou_std": pstdev(c)}
        rows.append([arm, f"{mean(g):.3f} ± {pstdev(g):.3f}", f"{mean(c):.3f} ± {pstdev(c):.3f}",
                     " / ".join(f"{v:.3f}" for v in g)])
    return summary, rows


def paired_margin(runs: list[dict], summary: dict, key: str, a: str, b: str) -> str:
    """"a - b: gIoU +x (k/n seeds better)", seeds paired in run order."""
    pairs = list(zip([r for r in runs if r[key] == a], [r for r in runs if r[key] == b]))
    wins = sum(x["final_giou"] > y["final_giou"] for x, y in pairs)
    return f"{a} - {b}: gIoU {summary[a]['giou_mean'] - summary[b]['giou_mean']:+.3f} ({wins}/{len(pairs)} seeds better)"


def plot_curves(runs: list[dict], key: str, x: str, xlabel: str, out: Path) -> None:
    """gIoU and cIoU curves against `x` ("steps" or "epochs"), one line per arm, min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("val_giou", "val_ciou")):
        for arm in dict.fromkeys(r[key] for r in runs):
            mine = [r for r in runs if r[key] == arm]
            curves = [r[metric] for r in mine]
            ax.plot(mine[0][x], [mean(v) for v in zip(*curves)], label=arm)
            ax.fill_between(mine[0][x], [min(v) for v in zip(*curves)], [max(v) for v in zip(*curves)], alpha=0.2)
        ax.set_xlabel(xlabel)
        ax.set_title(metric.replace("val_", "validation ").replace("iou", "IoU"))
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_results(out: Path, stem: str, record: dict, key: str, x: str, xlabel: str) -> None:
    """`<stem>.json` (the record) and `<stem>.png` (the curves of `record["runs"]`) under `out`."""
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    plot_curves(record["runs"], key, x, xlabel, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and {stem}.png in {record['wall_s']:.0f} s")
