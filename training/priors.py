"""Offline prior generation (L2L §3.3, App. B.5), its own cached step: a frozen grounding pipeline (`mllm` /
`lens` + SAM2 on a GPU machine; any reasonseg pipeline) masks every training sample once, and the soft mask
is stored as `<priors_dir>/<sample id>.npy` (float16 probabilities at the image's size) for
`training.data.SemiSupervisedReferring` to fuse during training. Samples already there are skipped, so an
interrupted run continues where it stopped.

    python -m training.priors --config training/configs/l2l_refcoco.yaml --settings mllm_inprocess.yaml

Pipelines return binary masks; the prior keeps them soft at the edges (ASSUMPTION: p = 0.01 + 0.98 * the
mask blurred with σ = 1 px, SAM2-like confidence away from edges — SAM2's logits are not carried through the pipeline result).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import yaml

from reasonseg.core.output_files import atomic_target


def soft_prior(mask: np.ndarray) -> np.ndarray:
    return (0.01 + 0.98 * cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)).astype(np.float16)


def generate_priors(datamodule, pipeline, out_dir: Path) -> dict[str, int]:  # noqa: ANN001
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    items, _ = datamodule._items()
    counts = {"written": 0, "skipped": 0, "empty": 0}
    for it in tqdm(items, desc="priors", unit="sample"):
        path = out_dir / f"{it.sample_id}.npy"
        if path.is_file():
            counts["skipped"] += 1
            continue
        result = pipeline.run(it.image, it.expression)
        counts["empty"] += int(not result.mask.any())
        with atomic_target(path) as tmp:  # never a half-written prior under the real name
            np.save(tmp, soft_prior(result.mask))
        counts["written"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.settings.loading import load_settings

    from .data import SemiSupervisedReferring

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the training YAML (its data section and priors_dir)")
    p.add_argument("--settings", default="", help="reasonseg settings YAML choosing the pipeline (default: shipped)")
    p.add_argument("--pipeline", default="", help="override settings.pipeline (mllm, lens, refine, ...)")
    args = p.parse_args(argv)
    data_args = dict(yaml.safe_load(args.config.read_text())["data"]["init_args"])
    out = Path(data_args.pop("priors_dir", "") or "priors")
    settings = load_settings(args.settings or None)
    if args.pipeline:
        import dataclasses

        settings = dataclasses.replace(settings, pipeline=args.pipeline)
    dm = SemiSupervisedReferring(**data_args, priors_dir="", simulated_prior_seed=None)
    counts = generate_priors(dm, build_pipeline(settings), out)
    print(f"priors in {out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
