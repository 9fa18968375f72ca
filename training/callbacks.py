"""Callbacks every recipe uses: learning curves as a PNG next to the CSV log when a fit ends."""
from __future__ import annotations

import csv
from pathlib import Path

import lightning as L


def plot_curves(metrics_csv: Path, out_png: Path) -> Path | None:
    """One panel per logged metric (x = step) from Lightning's CSVLogger `metrics.csv`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(metrics_csv.open()))
    names = [k for k in (rows[0] if rows else {}) if k not in ("step", "epoch") and any(r.get(k) for r in rows)]
    if not names:
        return None
    cols = min(3, len(names))
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((len(names) + cols - 1) // cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        pts = [(int(r["step"]), float(r[name])) for r in rows if r.get(name)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


class CurvesPng(L.Callback):
    """Writes `curves.png` beside the CSV logger's metrics.csv at the end of fit (rank 0)."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, L.pytorch.loggers.CSVLogger):
                logger.save()
                path = Path(logger.log_dir) / "metrics.csv"
                if path.is_file():
                    plot_curves(path, path.with_name("curves.png"))


def weights_digest(module) -> str:  # noqa: ANN001
    """sha256 over every parameter and buffer, by name: equal digests = bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class WeightsDigest(L.Callback):
    """At the end of fit each rank writes `weights-rank<R>.sha256` to the log dir: DDP ranks that drifted apart,
    or a resumed run that differs from an uninterrupted one, show up as different digests."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = Path(trainer.log_dir or trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"weights-rank{trainer.global_rank}.sha256").write_text(weights_digest(pl_module) + "\n")


class RngState(L.Callback):
    """Saves the python / numpy / torch generators in every checkpoint and restores them on resume, so dropout and
    drop-path draw the same numbers after a restart as without one."""

    def state_dict(self) -> dict:
        import random

        import numpy as np
        import torch

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # plain types and tensors only: checkpoints load with torch.load(weights_only=True)
        return {"python": random.getstate(), "torch": torch.get_rng_state(),
                "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)}}

    def load_state_dict(self, state: dict) -> None:
        import random

        import numpy as np
        import torch

        n = state["numpy"]
        random.setstate(state["python"])
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        torch.set_rng_state(state["torch"])
