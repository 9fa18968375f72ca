"""`reasonseg` command line: segment one image, prepare the model cache. (The ROS side has its own commands:
reasonseg_node, reasonseg_launch, reasonseg_replay, reasonseg_demo, reasonseg_sample_drive.)"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from .config import PIPELINES
from .errors import ReasonSegError

log = logging.getLogger("reasonseg")


def _cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from .config import load_settings, with_overrides
    from .image_codec import read_image_file
    from .instruction import sanitize_instruction
    from .output_files import prepare_output_dir, write_json, write_png
    from .pipelines import build_pipeline
    from .render import render_overlay

    settings = with_overrides(load_settings(args.config), args.set)
    if args.pipeline:
        settings = dataclasses.replace(settings, pipeline=args.pipeline)
    instruction = sanitize_instruction(args.instruction, max_chars=settings.runtime.max_instruction_chars)
    out = prepare_output_dir(Path(args.out))  # before any model work: a bad --out fails in milliseconds
    rgb = read_image_file(args.image, max_pixels=settings.runtime.max_image_pixels,
                          max_aspect=settings.runtime.max_aspect_ratio)
    t0 = time.perf_counter()
    pipeline = build_pipeline(settings)
    load_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    result = pipeline.run(rgb, instruction)
    total_ms = (time.perf_counter() - t0) * 1e3
    write_png(out / "mask.png", result.mask.astype(np.uint8) * 255)
    write_png(out / "overlay.png", render_overlay(rgb, result, instruction)[:, :, ::-1])
    g = result.grounding
    record = {
        "instruction": instruction,
        "label": result.labels[0] if result.valid and result.labels else None,
        "labels": list(result.labels) if result.valid else [],
        "score": round(result.score, 4),
        "box": [round(v, 1) for v in result.box] if result.box else None,
        "found": result.valid,
        "pipeline": g.pipeline if g else pipeline.name,  # after a fallback: the one that answered
        "grounding_source": g.source if g else None,
        "reasoning": g.reasoning if g else result.note,
        "timings_ms": {**{k: round(v, 1) for k, v in result.timings_ms.items()},
                       "total": round(total_ms, 1), "model_load": round(load_ms, 1)},
    }
    write_json(out / "result.json", record)
    status = f"{record['label']} score={record['score']:.2f} box={record['box']}" if result.valid else "no target found"
    print(f"{instruction!r}: {status} [{record['grounding_source']}] -> {out}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .assets import prepare_all

    prepare_all(Path(args.cache) if args.cache else None, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reasonseg", description="Language-guided segmentation for robots.")
    p.add_argument("-v", "--verbose", action="store_true", help="log pipeline stages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="segment the target an instruction names in one image")
    s.add_argument("image")
    s.add_argument("instruction")
    s.add_argument("--out", required=True, help="output folder: mask.png, overlay.png, result.json")
    s.add_argument("--pipeline", choices=PIPELINES)
    s.add_argument("--config", help="settings YAML (plain or ROS params form)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, repeatable: --set mllm.model=Qwen/Qwen2.5-VL-7B-Instruct")
    s.set_defaults(func=_cmd_segment)

    s = sub.add_parser("prepare-models", help="fetch/convert model files into the cache (set-up step)")
    s.add_argument("--cache", help="cache folder (default $REASONSEG_CACHE or ~/.cache/reasonseg)")
    s.add_argument("--force", action="store_true", help="rebuild even if present")
    s.set_defaults(func=_cmd_prepare)

    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[%(levelname)s] %(name)s: %(message)s")
    try:
        return args.func(args)
    except ReasonSegError as exc:
        print(f"reasonseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
