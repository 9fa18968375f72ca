"""`reasonseg` command line: segment images, prepare the model cache. (The ROS side has its own commands:
reasonseg_node, reasonseg_launch, reasonseg_replay, reasonseg_demo, reasonseg_sample_drive.)"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import time
from pathlib import Path

from reasonseg.core.errors import ReasonSegError
from reasonseg.core.image_codec import IMAGE_SUFFIXES
from reasonseg.core.model_text import clean_model_text
from reasonseg.core.signals import INTERRUPTED, stop_requested
from reasonseg.pipelines.registry import PIPELINES
from reasonseg_export.formats import add_export_parser

log = logging.getLogger("reasonseg")




def _expand_images(paths: list[str]) -> list[Path]:
    """Files as given; folders contribute their image files, sorted by name."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ReasonSegError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            out += found
        else:
            out.append(path)
    return out


def _shown(path: Path | str) -> str:
    """A path as text that prints and encodes anywhere: undecodable file-name bytes become U+FFFD."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _say(text: object) -> str:
    """A line for the terminal: `_shown`, then without control, escape or bidi characters. Labels and reasons
    come from a model's answer (sanitized where they are parsed; this is the second guard), file names from
    anyone: neither may recolour the terminal, retitle it or forge a log line."""
    return clean_model_text(_shown(text), max_chars=4000)


SUMMARY_FILES = ("summary.json", "summary.md")


def _output_names(images: list[Path]) -> list[str]:
    """One output folder name per image, all distinct and none a summary file's: the image's file name, or
    for a name already taken `<stem>-<n><suffix>` with the first n that no image is named and none took.
    Compared case-folded, as a case-insensitive disk (macOS, Windows shares) compares them."""
    own = {image.name.casefold() for image in images}
    taken = {name.casefold() for name in SUMMARY_FILES}
    names = []
    for image in images:
        name, n = image.name, 1
        while name.casefold() in taken or (n > 1 and name.casefold() in own):
            n += 1
            name = f"{image.stem}-{n}{image.suffix}"
        taken.add(name.casefold())
        names.append(name)
    return names


def _read(settings, image: Path):
    from reasonseg.core.image_codec import read_image_file

    return read_image_file(image, max_pixels=settings.runtime.max_image_pixels,
                           max_aspect=settings.runtime.max_aspect_ratio)


def _segment_one(pipeline, settings, image: Path, instruction: str, out: Path, rgb=None,
                 model_load_ms: float | None = None) -> dict:
    from reasonseg.core.output_files import prepare_output_dir

    rgb = _read(settings, image) if rgb is None else rgb
    t0 = time.perf_counter()
    result = pipeline.run(rgb, instruction)
    total_ms = (time.perf_counter() - t0) * 1e3
    # the folder only now, with results to hold: an image that fails to decode or segment leaves none behind
    created = not out.exists()
    out = prepare_output_dir(out)
    try:
        record = _write_result(out, image, instruction, pipeline, result, rgb, total_ms, model_load_ms)
    except BaseException:
        if created:  # ours since a moment ago: only part of our files in it
            shutil.rmtree(out, ignore_errors=True)
        raise
    status = f"{record['label']} score={record['score']:.2f} box={record['box']}" if result.valid else "no target found"
    print(_say(f"{_shown(image.name)}: {instruction!r}: {status} [{record['grounding_source']}] -> {_shown(out)}"),
          flush=True)
    return record


def _write_result(out: Path, image: Path, instruction: str, pipeline, result, rgb, total_ms: float,
                  model_load_ms: float | None) -> dict:
    import numpy as np

    from reasonseg.core.output_files import write_json, write_png
    from reasonseg.core.render import render_overlay

    write_png(out / "mask.png", result.mask.astype(np.uint8) * 255)
    write_png(out / "overlay.png", render_overlay(rgb, result, instruction)[:, :, ::-1])
    g = result.grounding
    record = {
        "image": _shown(image),
        "instruction": instruction,
        "label": result.labels[0] if result.valid and result.labels else None,
        "labels": list(result.labels) if result.valid else [],
        "score": round(result.score, 4),
        "box": [round(v, 1) for v in result.box] if result.box else None,
        "found": result.valid,
        "pipeline": g.pipeline if g else pipeline.name,  # after a fallback: the one that answered
        "grounding_source": g.source if g else None,
        "reasoning": g.reasoning if g else result.note,
        "timings_ms": {**{k: round(v, 1) for k, v in result.timings_ms.items()}, "total": round(total_ms, 1)},
    }
    if model_load_ms is not None:  # one-image call: it paid the model load
        record["timings_ms"]["model_load"] = model_load_ms
    write_json(out / "result.json", record)
    return record


def _cmd_segment(args: argparse.Namespace) -> int:
    """One image -> OUT/{mask,overlay}.png + result.json; several images or a folder -> OUT/<image name>/...
    each plus OUT/summary.json and summary.md, with the models loaded once."""
    from reasonseg.core.instruction import sanitize_instruction
    from reasonseg.core.output_files import prepare_output_dir, write_bytes, write_json
    from reasonseg.core.report import markdown_table
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.settings.loading import load_settings, with_overrides

    *image_args, raw_instruction = args.inputs
    if not image_args:
        raise ReasonSegError("give at least one image (or folder) and then the instruction")
    settings = with_overrides(load_settings(args.config), args.set)
    if args.pipeline:
        settings = dataclasses.replace(settings, pipeline=args.pipeline)
    instruction = sanitize_instruction(raw_instruction, max_chars=settings.runtime.max_instruction_chars)
    images = _expand_images(image_args)
    single = len(images) == 1 and not Path(image_args[0]).is_dir()
    rgb = _read(settings, images[0]) if single else None  # a bad image fails before the models load, no folder made
    out = prepare_output_dir(Path(args.out))  # before any model work: a bad --out fails in milliseconds
    t0 = time.perf_counter()
    pipeline = build_pipeline(settings)
    load_ms = round((time.perf_counter() - t0) * 1e3, 1)
    if single:
        _segment_one(pipeline, settings, images[0], instruction, out, rgb, model_load_ms=load_ms)
        return 0
    records, failed, interrupted = [], 0, False
    try:
        for image, name in zip(images, _output_names(images)):
            try:
                records.append({**_segment_one(pipeline, settings, image, instruction, out / name), "output": name})
            except ReasonSegError as exc:  # a bad image is reported and skipped; the others still run
                failed += 1
                print(_say(f"{_shown(image.name)}: error: {_shown(exc)}"), file=sys.stderr, flush=True)
                records.append({"image": _shown(image), "instruction": instruction, "error": _shown(exc)})
    except KeyboardInterrupt:  # a long folder run stopped: the summary still lists the images done before it
        interrupted = True
    totals = [r["timings_ms"]["total"] for r in records if "timings_ms" in r]
    summary = {"instruction": instruction, "images": len(images), "done": len(records), "failed": failed,
               "interrupted": interrupted, "model_load_ms": load_ms,
               "median_ms_per_image": round(sorted(totals)[len(totals) // 2], 1) if totals else None,
               "results": records}
    write_json(out / "summary.json", summary)
    rows = [[Path(r["image"]).name, r.get("label") or ("error" if "error" in r else "not found"),
             r.get("score", "-"), r.get("box", "-"), r["timings_ms"]["total"] if "timings_ms" in r else "-"]
            for r in records]
    table = markdown_table(["image", "label", "score", "box", "ms"], rows)
    stop = f" (interrupted after {len(records)} of {len(images)})" if interrupted else ""
    write_bytes(out / "summary.md",
                (f"{instruction!r}: models loaded once in {load_ms:.0f} ms{stop}\n\n" + table).encode())
    print(table + _say(f"{len(records) - failed}/{len(images)} images segmented{stop} -> {_shown(out)}/summary.md"))
    return INTERRUPTED if interrupted else 2 if failed else 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from reasonseg.cli.prepare_models import prepare_all

    prepare_all(Path(args.cache) if args.cache else None, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reasonseg", description="Language-guided segmentation for robots.")
    p.add_argument("-v", "--verbose", action="store_true", help="log pipeline stages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="segment the target an instruction names in images",
                       description="reasonseg segment IMAGE [IMAGE|FOLDER ...] INSTRUCTION --out OUT")
    s.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER ... INSTRUCTION",
                   help="one or more images or folders of images, then the instruction")
    s.add_argument("--out", required=True, help="output folder: mask.png, overlay.png, result.json (several "
                                                "images: one sub-folder each plus summary.json / summary.md)")
    s.add_argument("--pipeline", choices=PIPELINES)
    s.add_argument("--config", help="settings YAML (plain or ROS params form)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, repeatable: --set mllm.model=Qwen/Qwen2.5-VL-7B-Instruct")
    s.set_defaults(func=_cmd_segment)

    s = sub.add_parser("prepare-models", help="fetch/convert model files into the cache (set-up step)")
    s.add_argument("--cache", help="cache folder (default $REASONSEG_CACHE or ~/.cache/reasonseg)")
    s.add_argument("--force", action="store_true", help="rebuild even if present")
    s.set_defaults(func=_cmd_prepare)

    add_export_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[%(levelname)s] %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ReasonSegError, OSError) as exc:  # OSError: a cache or output path the system refuses (one line)
        if stop_requested():  # a Ctrl-C that a C library turned into its own error (reasonseg/core/signals.py)
            return INTERRUPTED
        print(f"reasonseg: error: {_say(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
