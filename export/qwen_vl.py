"""Qwen2.5-VL -> an ONNX Runtime GenAI package (`reasonseg export qwen-vl`): what `mllm.backend: onnxruntime-genai`
loads (the layout of microsoft/olive-recipes' Qwen2.5-VL packages; contract: `reasonseg.grounding.vlm.genai_package`).

- `vision.onnx` (ours): pixel_values [N, 1176] + image_grid_thw [1, 3] -> image_features [N/4, D], for any
  image size. transformers computes the window layout in Python from the grid (`get_vision_window_index`), which
  a trace would freeze at one resolution; here the layout is tensor arithmetic on the grid, in the graph, and the
  patches stay in the processor's merge-block order: a window is the set of merge units whose (row, col) fall in
  one `window_size` tile, attended with a key mask instead of a permutation.
- `embedding.onnx` (ours): input_ids + image_features -> inputs_embeds (image rows where the image pad token is).
- `model.onnx` (the decoder): ORT GenAI's model builder, `exclude_embeds=true`; fp32 / int4 (RTN in blocks of 128,
  int8 compute: CPU) / fp16 (CUDA).
  The int4 package is the CPU one: its vision encoder is int8 (dynamic, per channel), its embedding table fp16.
- `genai_config.json` with the `vision` / `embedding` sections, the tokenizer, `processor_config.json` (the
  checkpoint's image-processor numbers, flat), `prompt.json` (the chat template rendered around the instruction)
  and a manifest that lists every file's sha256 and the parity measured.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from reasonseg.core.output_files import write_bytes
from reasonseg.grounding.vlm import genai_package as pkg
from reasonseg_export.onnx_io import export_module

BUILDER_PRECISION = {"fp32": ("fp32", "cpu"), "int4": ("int4", "cpu"), "fp16": ("fp16", "cuda")}
# int4 weights in blocks of 128 (the builder's default is 32): 1.25x faster grounding on a 2-core CPU at 3B
# dimensions (bench_mllm_engine), 15 % less decoder data
BUILDER_OPTIONS = {"int4": ("block_size=128",)}
# the CPU package: int4 decoder (RTN, int8 compute), int8 vision encoder, fp16 embedding table
QUANTIZED_VISION = ("int4",)
PARITY_TOKENS = 24           # greedy tokens compared with transformers.generate per photo
PARITY_PHOTOS = 3
PARITY_INSTRUCTION = "the object nearest the camera"


def _vision_graph(visual):
    """`visual` (Qwen2_5_VisionTransformerPretrainedModel) as a module whose window layout follows the grid."""
    import torch
    from torch import nn
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    class VisionGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = visual
            self.m = visual.spatial_merge_size
            self.ws = visual.window_size // self.m // visual.patch_size  # window side in merge units
            self.full = set(visual.fullatt_block_indexes)

        def forward(self, pixel_values, image_grid_thw):
            v, m, ws = self.v, self.m, self.ws
            h, w = image_grid_thw[0, 1], image_grid_thw[0, 2]
            rows, cols = h // m, w // m
            # rotary positions in merge-block order: patch (bh*m+i, bw*m+j) of unit (bh, bw)
            bh = torch.arange(rows)[:, None, None, None].expand(rows, cols, m, m)
            bw = torch.arange(cols)[None, :, None, None].expand(rows, cols, m, m)
            i = torch.arange(m)[None, None, :, None].expand(rows, cols, m, m)
            j = torch.arange(m)[None, None, None, :].expand(rows, cols, m, m)
            pos = torch.stack([(bh * m + i).reshape(-1), (bw * m + j).reshape(-1)], dim=-1)
            x = v.patch_embed(pixel_values)
            cos, sin = v.rotary_pos_emb(x, pos)
            n = x.shape[0]
            # windows: ws x ws tiles of merge units over the unit grid padded to multiples of ws
            nh, nw = (rows + ws - 1) // ws, (cols + ws - 1) // ws
            r = torch.arange(nh * ws)[:, None].expand(nh * ws, nw * ws)
            c = torch.arange(nw * ws)[None, :].expand(nh * ws, nw * ws)
            ok = (r < rows) & (c < cols)
            unit = torch.where(ok, r * cols + c, rows * cols)  # padding -> one spare unit past the end
            unit = unit.reshape(nh, ws, nw, ws).permute(0, 2, 1, 3).reshape(nh * nw, ws * ws)
            valid = ok.reshape(nh, ws, nw, ws).permute(0, 2, 1, 3).reshape(nh * nw, ws * ws)
            tok = (unit[..., None] * (m * m) + torch.arange(m * m)).reshape(nh * nw, ws * ws * m * m)
            key_ok = valid[..., None].expand(nh * nw, ws * ws, m * m).reshape(nh * nw, 1, 1, -1)
            # where each real token sits in the flattened windows (the spare unit's rows scatter past n)
            back = torch.zeros(n + m * m, dtype=torch.long).scatter(
                0, tok.reshape(-1), torch.arange(tok.numel()))[:n]
            for k, blk in enumerate(v.blocks):
                a = blk.attn
                y = blk.norm1(x)
                q, kk, vv = a.qkv(y).reshape(n, 3, a.num_heads, -1).unbind(1)
                q, kk = apply_rotary_pos_emb_vision(q, kk, cos, sin)
                if k in self.full:
                    o = nn.functional.scaled_dot_product_attention(
                        q.transpose(0, 1)[None], kk.transpose(0, 1)[None], vv.transpose(0, 1)[None])[0]
                    o = o.transpose(0, 1).reshape(n, -1)
                else:
                    pad = torch.zeros(m * m, a.num_heads, q.shape[-1], dtype=q.dtype)
                    qw, kw, vw = (torch.cat([t, pad])[tok].transpose(1, 2) for t in (q, kk, vv))
                    o = nn.functional.scaled_dot_product_attention(qw, kw, vw, attn_mask=key_ok)
                    o = o.transpose(1, 2).reshape(-1, a.num_heads * q.shape[-1])[back]
                x = x + a.proj(o)
                x = x + blk.mlp(blk.norm2(x))
            return v.merger(x)

    return VisionGraph().eval()


def _embedding_graph(embed_tokens, image_token_id: int, dtype, table_dtype):
    """inputs_embeds in the decoder's dtype (fp16 for a CUDA package) from fp32 image features; the table is
    kept in `table_dtype` (fp16 for the int4 CPU package: half the memory, rows cast on the way out)."""
    import copy

    import torch
    from torch import nn

    class EmbeddingGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = copy.deepcopy(embed_tokens).to(table_dtype)

        def forward(self, input_ids, image_features):
            image_features = image_features.to(dtype)
            is_img = input_ids == image_token_id
            # one zero row past the features: text tokens index it; a decode step passes no features at all
            feats = torch.cat([image_features, torch.zeros(1, image_features.shape[1], dtype=image_features.dtype)])
            row = torch.where(is_img, torch.cumsum(is_img.long(), -1) - 1, image_features.shape[0])
            return torch.where(is_img[..., None], feats[row], self.embed(input_ids).to(dtype))

    return EmbeddingGraph().eval()


def check_exportable(checkpoint: str | Path) -> dict:
    """config.json of a Qwen2.5-VL checkpoint; any other family refused in one line before anything loads."""
    try:
        config = json.loads((Path(checkpoint) / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{checkpoint}: no readable config.json ({exc.__class__.__name__}); --checkpoint must be a "
                         "local Qwen2.5-VL checkpoint dir") from None
    pkg.check_model_type(config.get("model_type"))
    return config


def export_qwen_vl(checkpoint: str | Path, out_dir: Path, *, precisions: list[str], photos: list[np.ndarray],
                   system: str | None = None) -> list[Path]:
    """One package per precision under out_dir/<precision>/ (fp32 first: the int4 / fp16 parity reference).
    `system`: a system message baked into the prompt template (LENS's release prompt has one)."""
    check_exportable(checkpoint)
    order = ["fp32"] + [p for p in precisions if p != "fp32"]
    written, fp32_answers = [], None
    for precision in order:
        folder = Path(out_dir) / precision
        facts = build_package(Path(checkpoint), folder, precision, system=system)
        parity = _parity(Path(checkpoint), folder, precision, photos, fp32_answers, system)
        if precision == "fp32":
            fp32_answers = parity.pop("_answers")
        written.append(_finish(folder, precision, checkpoint, parity, facts))
    return written


def build_package(checkpoint: Path, folder: Path, precision: str, *, system: str | None = None) -> dict[str, Any]:
    """The package files of one precision, before parity and manifest (export_qwen_vl adds both)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    if folder.exists():
        shutil.rmtree(folder)  # never a mix of an old and a new package
    folder.mkdir(parents=True)
    # the checkpoint's own dtype (bf16 for real ones: half the memory), then only the exported parts in fp32 (a
    # bf16 -> fp32 cast is exact: the same weights transformers' fp32 load gives)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint, dtype="auto", local_files_only=True).eval()
    cfg = model.config
    vis_cfg = cfg.vision_config
    m, p, t = vis_cfg.spatial_merge_size, vis_cfg.patch_size, vis_cfg.temporal_patch_size
    grid = torch.tensor([[1, 4 * m, 6 * m]])  # trace size; every axis is dynamic
    px = torch.randn(int(grid.prod()), 3 * t * p * p)
    with tempfile.TemporaryDirectory(prefix="qwen-vl-export-") as tmp:
        export_module(_vision_graph(model.model.visual.float()), (px, grid), Path(tmp) / "v" / pkg.VISION,
                      inputs=["pixel_values", "image_grid_thw"], outputs=["image_features"],
                      dynamic_axes={"pixel_values": {0: "num_patches"}, "image_features": {0: "num_image_tokens"}})
        vision = Path(tmp) / "v" / pkg.VISION
        if precision in QUANTIZED_VISION:
            vision = _quantize_vision(vision, Path(tmp) / "vq" / pkg.VISION)
        _save_one_file(vision, folder / pkg.VISION)
        model.model.visual = None  # its memory back before the embedding table is copied
        ids = torch.tensor([[1, cfg.image_token_id, cfg.image_token_id, 2]])
        feats = torch.randn(2, cfg.text_config.hidden_size)
        embed_dtype = torch.float16 if precision == "fp16" else torch.float32  # the builder's decoder input type
        table_dtype = torch.float16 if precision in ("fp16", "int4") else torch.float32
        export_module(_embedding_graph(model.model.language_model.embed_tokens, cfg.image_token_id, embed_dtype,
                                       table_dtype),
                      (ids, feats), Path(tmp) / "e" / pkg.EMBEDDING, inputs=["input_ids", "image_features"],
                      outputs=["inputs_embeds"],
                      dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                    "image_features": {0: "num_image_tokens"},
                                    "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
        _save_one_file(Path(tmp) / "e" / pkg.EMBEDDING, folder / pkg.EMBEDDING)
    del model
    _run_builder(checkpoint, folder, precision)
    processor = AutoProcessor.from_pretrained(checkpoint, local_files_only=True)
    prefix, suffix = _prompt_template(processor, system)
    (folder / pkg.PROMPT).write_text(json.dumps({"prefix": prefix, "suffix": suffix}, indent=2) + "\n")
    (folder / pkg.PROCESSOR).write_text(json.dumps(_image_processor(processor).to_dict(), indent=2) + "\n")
    _add_sections(folder, cfg)
    return {"image_token_id": cfg.image_token_id}


def _beyond_protobuf(folder: Path) -> bool:
    """A graph whose files (torch writes big weights one file per tensor) pass protobuf's 2 GB needs external data."""
    return sum(f.stat().st_size for f in folder.iterdir()) > 1.8e9


def _quantize_vision(src: Path, dst: Path) -> Path:
    """The vision encoder's MatMul weights to int8 per output channel, activations quantized at run time (ORT's
    dynamic quantization; 4-5x faster than fp32 on a 2-core CPU with VNNI, a quarter of the memory)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    big = _beyond_protobuf(src.parent)
    logging.disable(logging.WARNING)  # its advice to pre-process the graph, on the root logger of a CLI
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], use_external_data_format=big)
    finally:
        logging.disable(logging.NOTSET)
    return dst


def _save_one_file(src: Path, dst: Path) -> None:
    """A graph over protobuf's 2 GB (a 3B model's vision encoder) keeps its weights in one `<name>.data` beside
    it, not one file per tensor as torch writes them."""
    import onnx

    big = _beyond_protobuf(src.parent)
    model = onnx.load(str(src), load_external_data=True)
    onnx.save_model(model, str(dst), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=dst.name + ".data", size_threshold=1024)


def _run_builder(checkpoint: Path, folder: Path, precision: str) -> None:
    """ORT GenAI's builder in a child process (it holds the whole model in memory; its output is long)."""
    p, ep = BUILDER_PRECISION[precision]
    with tempfile.TemporaryDirectory(prefix="genai-builder-") as cache:
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint), "-o", str(folder),
               "-p", p, "-e", ep, "-c", cache, "--extra_options", "exclude_embeds=true",
               *BUILDER_OPTIONS.get(precision, ())]
        run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if run.returncode != 0 or not (folder / "genai_config.json").is_file():
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ValueError(f"ORT GenAI model builder failed ({precision}): {tail[0][:300]}")


SENTINEL = "\x00INSTRUCTION\x00"


def _image_processor(processor) -> pkg.ImageProcessor:
    from reasonseg.grounding.vlm.qwen_vl import pixel_bounds

    ip = processor.image_processor
    lo, hi = pixel_bounds(ip)
    return pkg.ImageProcessor(tuple(ip.image_mean), tuple(ip.image_std), float(ip.rescale_factor), int(ip.patch_size),
                              int(ip.temporal_patch_size), int(ip.merge_size), lo, hi)


def chat_messages(text: str, system: str | None = None) -> list[dict]:
    """One image + one text turn (after a system message if given), as the processor's chat template takes it."""
    user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return ([{"role": "system", "content": system}] if system is not None else []) + user


def _prompt_template(processor, system: str | None) -> tuple[str, str]:
    """The chat template rendered for one image + one text turn, split around the text (one image pad token)."""
    text = processor.apply_chat_template(chat_messages(SENTINEL, system), add_generation_prompt=True)
    prefix, suffix = text.split(SENTINEL)
    return prefix, suffix


def _add_sections(folder: Path, cfg) -> None:
    """genai_config.json: the builder's decoder + our vision and embedding graphs (olive-recipes' layout)."""
    path = folder / "genai_config.json"
    config = json.loads(path.read_text())
    model = config["model"]
    model["type"] = pkg.GENAI_MODEL_TYPE
    model.update(image_token_id=cfg.image_token_id, video_token_id=cfg.video_token_id,
                 vision_start_token_id=cfg.vision_start_token_id)
    session = {"log_id": "onnxruntime-genai", "provider_options": []}
    model["embedding"] = {"filename": pkg.EMBEDDING, "inputs": {"input_ids": "input_ids",
                                                                "image_features": "image_features"},
                          "outputs": {"inputs_embeds": "inputs_embeds"}, "session_options": session}
    model["vision"] = {"filename": pkg.VISION, "spatial_merge_size": cfg.vision_config.spatial_merge_size,
                       "tokens_per_second": float(getattr(cfg.vision_config, "tokens_per_second", 2.0)),
                       "inputs": {"pixel_values": "pixel_values", "image_grid_thw": "image_grid_thw"},
                       "outputs": {"image_features": "image_features"}, "session_options": session}
    write_bytes(path, (json.dumps(config, indent=4) + "\n").encode())


def _parity(checkpoint: Path, folder: Path, precision: str, photos: list[np.ndarray],
            fp32_answers: tuple[list, list] | None, system: str | None) -> dict[str, Any]:
    """fp32: greedy tokens identical to transformers on the photos (raises otherwise). int4 / fp16: token agreement
    and grounding-box IoU against the fp32 package, run on the CPU provider (the fp16 package's CUDA target is only
    its default; ORT runs it on CPU too)."""
    from reasonseg.grounding.vlm.answer import MllmAnswerError, build_prompt, parse_answer
    from reasonseg.grounding.vlm.genai_vlm import GenAiPackage
    from reasonseg_export.parity import ParityError

    sample = photos[:PARITY_PHOTOS]
    prompt = build_prompt(PARITY_INSTRUCTION)
    package = GenAiPackage(folder, device="cpu", verify=False)
    got = [package.generate(photo, prompt, max_new_tokens=PARITY_TOKENS).tokens for photo in sample]
    texts = [package.decode(t) for t in got]
    del package  # one model in memory at a time (a 3B package and transformers' fp32 copy would not fit 24 GB)
    if precision == "fp32":
        ref = _transformers_tokens(checkpoint, sample, chat_messages(prompt, system))
        same = [a == b for a, b in zip(got, ref)]
        if not all(same):
            k = same.index(False)
            raise ParityError(f"qwen-vl fp32: greedy tokens differ from transformers on photo {k}: "
                              f"{got[k][:8]}... vs {ref[k][:8]}...")
        return {"greedy_tokens_identical": f"{len(sample)}/{len(sample)} photos x {PARITY_TOKENS} tokens",
                "against": "transformers.generate (fp32, greedy)", "_answers": (got, texts)}
    ref_tokens, ref_texts = fp32_answers or ([], [])
    agree = [float(np.mean([a == b for a, b in zip(x, y)])) if x else 0.0 for x, y in zip(got, ref_tokens)]
    ious = []
    for photo, ours, theirs in zip(sample, texts, ref_texts):
        h, w = photo.shape[:2]
        try:
            boxes = [parse_answer(t, sent_size=(w, h), frame_size=(w, h)).objects for t in (ours, theirs)]
        except MllmAnswerError:
            continue
        if boxes[0] and boxes[1]:
            ious.append(_box_iou(boxes[0][0].box, boxes[1][0].box))
    vision = {"vision_features_vs_fp32": vision_error(folder, folder.parent / "fp32", sample)} \
        if precision in QUANTIZED_VISION else {}
    return {**vision, "token_agreement_vs_fp32": [round(a, 3) for a in agree],
            "box_iou_vs_fp32": [round(i, 3) for i in ious] if ious else "no answer held a box on both sides "
                                                                           "(random-weight checkpoints answer none)"}


def vision_error(folder: Path, reference: Path, photos: list[np.ndarray]) -> dict[str, float]:
    """The quantized vision encoder's image features against the fp32 graph's, on the photos (worst photo)."""
    import onnxruntime as ort
    from PIL import Image

    from reasonseg_export.parity import errors

    processor = pkg.ImageProcessor.from_file(folder / pkg.PROCESSOR)
    ours, ref = (ort.InferenceSession(str(f / pkg.VISION), providers=["CPUExecutionProvider"])
                 for f in (folder, reference))
    worst = {"max_abs": 0.0, "max_rel": 0.0}
    for photo in photos:
        h, w = processor.sent_size(*photo.shape[:2], 0, 1 << 62)
        px, grid = processor.patches(np.asarray(Image.fromarray(photo).resize((w, h), Image.BICUBIC)))
        feeds = {"pixel_values": px, "image_grid_thw": grid}
        err = errors(ref.run(None, feeds)[0], ours.run(None, feeds)[0])
        worst = {k: max(worst[k], err[k]) for k in worst}
    return {k: float(f"{v:.3g}") for k, v in worst.items()}


def _transformers_tokens(checkpoint: Path, photos: list[np.ndarray], messages: list[dict]) -> list[list[int]]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from reasonseg.grounding.vlm.qwen_vl import generate, pixel_bounds

    processor = AutoProcessor.from_pretrained(checkpoint, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32, local_files_only=True).eval()
    lo, hi = pixel_bounds(processor.image_processor)
    out = []
    for photo in photos:
        g = generate(model, processor, photo, messages, min_pixels=lo, max_pixels=hi,
                     max_new_tokens=PARITY_TOKENS, timeout_s=600.0, device="cpu")
        out.append([int(t) for t in g.sequences[0, g.inputs["input_ids"].shape[1]:]])
    return out


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _finish(folder: Path, precision: str, checkpoint: str | Path, parity: dict, extra: dict) -> Path:
    from reasonseg.core.model_cache import sha256
    from reasonseg_export.manifest import write_manifest

    config = folder / pkg.CONFIG
    files = [f.name for f in sorted(folder.iterdir()) if f.is_file() and f.name != config.name
             and not f.name.endswith(".manifest.json")]
    write_manifest(config, format="qwen-vl", precision=precision, source=None, parity=parity,
                   checkpoint=str(checkpoint), files={name: sha256(folder / name) for name in files},
                   decoder=" ".join(["onnxruntime_genai.models.builder", *BUILDER_PRECISION[precision],
                                     *BUILDER_OPTIONS.get(precision, ())]), **extra)
    return config
