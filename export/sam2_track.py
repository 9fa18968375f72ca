"""SAM2 memory tracking as two ONNX graphs with explicit memory inputs and outputs (the memory bank lives in
the caller, as in NVIDIA Isaac ROS's SAM2 exporter), so a stream runs without PyTorch:

* `sam2_track_start.onnx` — the conditioning frame: encoder outputs + box corners / clicks (SAM's padding
  point is added inside, as `Sam2VideoModel._single_frame_forward` does) + multimask_output [1]
  -> low_res_masks [1,1,4h,4w], object_score_logits [1,1], object_pointer [1,C], maskmem_features [HW,Cm];
* `sam2_track_start_mask.onnx` — image_embeddings + the conditioning frame's binary mask [1,1,S,S] (SAM2's
  `_use_mask_as_output`: the mask is the output, the SAM head gives the object pointer) -> the same four
  outputs; a LENS / CORA prompt token is decoded to a mask first, as the PyTorch stream conditions on it;
* `sam2_track_step.onnx` — one tracked frame: encoder outputs + memory [T,HW,Cm] with memory_offsets [T]
  (0 = the conditioning frame, k = k frames back) + object_pointers [P,C] with pointer_offsets [P]
  -> the same four outputs. T and P are dynamic: the bank grows over the first frames, then stays full.

Both graphs are `Sam2VideoModel`'s own methods (`_prepare_memory_conditioned_features` minus the session
bookkeeping, `_single_frame_forward`, `_encode_new_memory`), so a stream run on them gives transformers'
streaming masks (tests/test_export.py checks whole streams). `maskmem_features` leaves rounded to
bfloat16 and returned as float32: transformers stores the memory bank in bf16, and the rounding is part
of the result. The memory and image positional encodings depend only on shapes, so they are constants.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from reasonseg.segmenters.sam2.graphs import (
    FEATURES,
    START,
    START_INPUTS,
    START_MASK,
    START_MASK_INPUTS,
    STEP,
    STEP_INPUTS,
    TRACK_OUTPUTS,
    sam2_image_size,
)
from reasonseg_export.manifest import write_manifest
from reasonseg_export.onnx_io import export_module
from reasonseg_export.parity import FP32_MAX_REL, require_close


def track_limits(model) -> dict[str, int]:
    """What the runtime needs to build the bank as transformers does: SAM2 reads the conditioning frame +
    `num_maskmem - 1` past masks and up to `max_object_pointers_in_encoder` object pointers; the
    conditioning frame decodes several masks when its click count is in [multimask_min, multimask_max]."""
    c = model.config
    return {"num_maskmem": int(model.num_maskmem), "max_pointers": int(c.max_object_pointers_in_encoder),
            "multimask_min": int(c.multimask_min_pt_num) if c.multimask_output_in_sam else 1,
            "multimask_max": int(c.multimask_max_pt_num) if c.multimask_output_in_sam else 0}


def _constants(model) -> tuple:
    """Image and memory positional encodings: functions of the feature-map shapes only."""
    import torch

    s = sam2_image_size(model.config)
    with torch.no_grad():
        out = model.get_image_features(torch.zeros(1, 3, s, s), return_dict=True)
        vision_pos = out.fpn_position_encoding[-1].detach().clone()  # [HW, 1, C]
        h, w = model.backbone_feature_sizes[-1]
        pix = torch.zeros(1, model.hidden_dim, h, w)
        mask = torch.zeros(1, 1, *(4 * v for v in model.prompt_encoder.mask_input_size))
        _, mem_pos = model.memory_encoder(pix, mask)
        mem_pos = mem_pos.detach().clone().flatten(2).permute(2, 0, 1)  # [HW, 1, Cm]
    return vision_pos, mem_pos


def _modules(model):
    import torch
    from transformers.models.sam2_video.modeling_sam2_video import get_1d_sine_pe

    vision_pos, mem_pos = _constants(model)
    h, w = model.backbone_feature_sizes[-1]
    c = model.hidden_dim

    def flat(emb):  # noqa: ANN001, ANN202 - [1, C, h, w] -> [HW, 1, C], transformers' sequence-first layout
        return emb.flatten(2).permute(2, 0, 1)

    s = sam2_image_size(model.config)
    low_h, low_w = model.prompt_encoder.mask_input_size

    def aa_matrix(n_out: int, n_in: int = s) -> torch.Tensor:
        """[n_out, n_in]: antialiased bilinear resizing of one axis as a matrix (ONNX has no antialiased Resize
        before opset 18; the axis maps are separable, so resizing X is A @ X @ B.T)."""
        eye = torch.eye(n_in)[None, None]
        return torch.nn.functional.interpolate(eye, size=(n_out, n_in), mode="bilinear", align_corners=False,
                                               antialias=True)[0, 0]

    # SAM 3: the memory encoder takes the mask at 4 x the mask-input side (1152 px for 1008), which transformers
    # reaches with an antialiased resize of the S-px mask; SAM2's sizes match and skip it. In the exported graph
    # that resize is the matrix product (the torch modules, the parity reference, keep transformers' own).
    mem_h, mem_w = 4 * low_h, 4 * low_w
    mem_rows, mem_cols = aa_matrix(mem_h), aa_matrix(mem_w)

    def outputs(sam, vision_seq, from_points: bool):  # noqa: ANN001, ANN202
        high = sam.high_res_masks
        if torch.onnx.is_in_onnx_export() and tuple(high.shape[-2:]) != (mem_h, mem_w):
            high = (mem_rows @ high.reshape(high.shape[-2:]) @ mem_cols.T)[None, None]
        mem, _ = model._encode_new_memory(vision_seq, high, sam.object_score_logits, from_points)
        return (sam.pred_masks, sam.object_score_logits.reshape(1, 1), sam.object_pointer.reshape(1, -1),
                mem.float().reshape(mem.shape[0], -1))

    class Start(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, feat0, feat1, emb, coords, labels, multimask):  # noqa: ANN001, ANN202
            # The conditioning frame has no memory: its features are the encoder's, no-memory token included.
            runs = [self.model._single_frame_forward(input_points=coords[:, None], input_labels=labels[:, None],
                                                     image_embeddings=[feat0, feat1, emb], multimask_output=m)
                    for m in (False, True)]
            single, multi = (outputs(r, flat(emb - self.model.no_memory_embedding.reshape(1, c, 1, 1)), True)
                             for r in runs)
            use = multimask.reshape(()) > 0
            return tuple(torch.where(use, b, a) for a, b in zip(single, multi))

    class StartMask(torch.nn.Module):
        """transformers' `_use_mask_as_output` (+ the memory encoder); `reference=True` calls it as is (the
        parity reference), otherwise its one antialiased resize is the matrix product above. The high-resolution
        features only shape SAM's mask, which this path replaces by the input mask: zeros stand in for them."""

        def __init__(self, reference: bool = False) -> None:
            from reasonseg_export.sam2_inputs import example_decoder_inputs

            super().__init__()
            self.model, self.reference = model, reference
            self.register_buffer("rows", aa_matrix(low_h))
            self.register_buffer("cols", aa_matrix(low_w))
            # SAM 3: the mask downsampler's output (S / 4: 252 px for 1008) is resized to the mask-input side
            # (288) inside `_single_frame_forward`, antialiased: the same matrix product; SAM2's sizes match
            with torch.no_grad():
                down_h, down_w = model.mask_downsample(torch.zeros(1, 1, s, s)).shape[-2:]
            self.register_buffer("down_rows", aa_matrix(low_h, down_h))
            self.register_buffer("down_cols", aa_matrix(low_w, down_w))
            shapes = example_decoder_inputs(model)
            self.register_buffer("feat0", torch.zeros(shapes[FEATURES[0]].shape))
            self.register_buffer("feat1", torch.zeros(shapes[FEATURES[1]].shape))

        def forward(self, emb, mask_input):  # noqa: ANN001, ANN202
            m, feat0, feat1 = self.model, self.feat0, self.feat1
            raw = emb - m.no_memory_embedding.reshape(1, c, 1, 1)  # the backbone's own last level
            if self.reference:
                return outputs(m._use_mask_as_output(raw, [feat0, feat1], mask_input), flat(raw), False)
            high = mask_input * 20.0 - 10.0  # the mask as logits: sigmoid(-10) ~ 0, sigmoid(10) ~ 1
            low = (self.rows @ high[0, 0] @ self.cols.T)[None, None]
            down = m.mask_downsample(mask_input)
            if tuple(down.shape[-2:]) != (low_h, low_w):
                down = (self.down_rows @ down.reshape(down.shape[-2:]) @ self.down_cols.T)[None, None]
            pointer = m._single_frame_forward(input_masks=down,
                                              image_embeddings=[feat0, feat1, raw]).object_pointer
            appearing = (mask_input.flatten(1) > 0).any(dim=1)[:, None].float()
            pointer = appearing * pointer + (1 - appearing) * m.no_object_pointer
            sam = SimpleNamespace(pred_masks=low, high_res_masks=high, object_pointer=pointer,
                                  object_score_logits=(20.0 * appearing - 10.0)[..., None])
            return outputs(sam, flat(raw), False)

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("vision_pos", vision_pos)
            self.register_buffer("mem_pos", mem_pos)

        def forward(self, feat0, feat1, emb, memory, memory_offsets, pointers, pointer_offsets):  # noqa: ANN001, ANN202
            m = self.model
            vision = flat(emb - m.no_memory_embedding.reshape(1, c, 1, 1))  # the raw last level
            # Spatial memories: each slot's positional encoding + its temporal one; offset 0 (the
            # conditioning frame) takes the last table row, as transformers' index `0 - 1` does.
            tpe = m.memory_temporal_positional_encoding.reshape(m.num_maskmem, -1)
            slot_pos = self.mem_pos[None] + tpe[torch.remainder(memory_offsets - 1, m.num_maskmem)][:, None, None]
            mem_seq = memory.reshape(-1, 1, memory.shape[-1])
            pos_seq = slot_pos.reshape(-1, 1, slot_pos.shape[-1])
            # Object pointers: temporal sine PE of offset / (max - 1), projected; split into mem_dim tokens.
            ptrs = pointers[:, None]
            if m.config.enable_temporal_pos_encoding_for_object_pointers:
                max_diff = float(m.config.max_object_pointers_in_encoder - 1)
                ptr_pos = m.temporal_positional_encoding_projection_layer(
                    get_1d_sine_pe(pointer_offsets / max_diff, dim=c))[:, None]
            else:
                ptr_pos = torch.zeros(pointers.shape[0], 1, m.mem_dim)
            if m.mem_dim < c:
                splits = c // m.mem_dim
                ptrs = ptrs.reshape(-1, 1, splits, m.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                ptr_pos = ptr_pos.repeat_interleave(splits, dim=0)
            conditioned = m.memory_attention(current_vision_features=vision,
                                             current_vision_position_embeddings=self.vision_pos,
                                             memory=torch.cat([mem_seq, ptrs], 0),
                                             memory_posision_embeddings=torch.cat([pos_seq, ptr_pos], 0),
                                             num_object_pointer_tokens=ptrs.shape[0])
            pix = conditioned.squeeze(1).transpose(1, 2).reshape(1, c, h, w)
            sam = m._single_frame_forward(image_embeddings=[feat0, feat1, pix],
                                          multimask_output=m._use_multimask(False, None))
            return outputs(sam, vision, False)

    return Start().eval(), StartMask().eval(), Step().eval(), StartMask(reference=True).eval()


def example_start_inputs(model, n_points: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    from reasonseg_export.sam2_inputs import example_decoder_inputs

    feeds = example_decoder_inputs(model, n_points=n_points, n_raw=0, seed=seed)
    feeds["point_labels"] = np.random.default_rng(seed).choice(np.array([0, 1]), (1, n_points)).astype(np.int64)
    return {k: feeds[k] for k in START_INPUTS[:5]} | {"multimask_output": np.array([0.0], np.float32)}


def example_start_mask_inputs(model, seed: int = 0) -> dict[str, np.ndarray]:
    from reasonseg_export.sam2_inputs import example_decoder_inputs

    feeds = example_decoder_inputs(model, seed=seed)
    s = sam2_image_size(model.config)
    yy, xx = np.mgrid[:s, :s]
    r = np.random.default_rng(seed).uniform(0.15, 0.35) * s  # a disc somewhere off-centre
    mask = ((yy - 0.4 * s) ** 2 + (xx - 0.55 * s) ** 2 < r * r).astype(np.float32)
    return {FEATURES[-1]: feeds[FEATURES[-1]], "mask_input": mask[None, None]}


def example_step_inputs(model, n_memory: int, n_pointers: int, seed: int = 0) -> dict[str, np.ndarray]:
    from reasonseg_export.sam2_inputs import example_decoder_inputs

    rng = np.random.default_rng(seed)
    feeds = example_decoder_inputs(model, seed=seed)
    h, w = model.backbone_feature_sizes[-1]
    limits = track_limits(model)
    offsets = np.array([0, *range(min(n_memory - 1, limits["num_maskmem"] - 1), 0, -1)], np.int64)[:n_memory]
    return {k: feeds[k] for k in FEATURES} | {
        "memory": rng.standard_normal((n_memory, h * w, model.mem_dim)).astype(np.float32),
        "memory_offsets": offsets,
        "object_pointers": rng.standard_normal((n_pointers, model.hidden_dim)).astype(np.float32),
        "pointer_offsets": np.array([n_pointers + 3, *range(1, n_pointers)], np.float32)[:n_pointers]}


def export_sam2_track(model, out_dir: Path, source: Path | None, checkpoint: str, *,
                      names: tuple[str, str, str] = (START, STEP, START_MASK), format: str = "sam2",  # noqa: A002
                      label: str = "SAM2") -> list[Path]:
    """The tracking graphs of a loaded `Sam2VideoModel` (or SAM 3's `Sam3TrackerVideoModel`: `names` =
    its start, step and mask-start files, `format` = "sam3", `label` for errors), each checked against PyTorch on
    fresh inputs."""
    import torch

    START, STEP, START_MASK = names  # noqa: N806 - this format's files
    start, start_mask, step, mask_reference = _modules(model)
    out_dir = Path(out_dir)
    trace = {k: torch.from_numpy(v) for k, v in example_start_inputs(model).items()}
    start_path = export_module(start, tuple(trace.values()), out_dir / START, inputs=START_INPUTS,
                               outputs=TRACK_OUTPUTS, dynamic_axes={"point_coords": {1: "num_points"},
                                                                    "point_labels": {1: "num_points"}})
    trace = {k: torch.from_numpy(v) for k, v in example_start_mask_inputs(model).items()}
    mask_path = export_module(start_mask, tuple(trace.values()), out_dir / START_MASK, inputs=START_MASK_INPUTS,
                              outputs=TRACK_OUTPUTS)
    trace = {k: torch.from_numpy(v) for k, v in example_step_inputs(model, 3, 3).items()}
    step_path = export_module(step, tuple(trace.values()), out_dir / STEP, inputs=STEP_INPUTS, outputs=TRACK_OUTPUTS,
                              dynamic_axes={"memory": {0: "num_memories"}, "memory_offsets": {0: "num_memories"},
                                            "object_pointers": {0: "num_pointers"},
                                            "pointer_offsets": {0: "num_pointers"}})
    parity = check_sam2_track((start, mask_reference, step), (start_path, mask_path, step_path), model, label=label)
    for path in (start_path, mask_path, step_path):
        write_manifest(path, format=format, precision="fp32", source=source, parity=parity, checkpoint=checkpoint,
                       **track_limits(model))
    return [start_path, step_path, mask_path]


def check_sam2_track(modules: tuple, paths: tuple[Path, Path, Path], model, seed: int = 2,
                     label: str = "SAM2") -> dict:
    """PyTorch vs onnxruntime: the start graph for a box and for one click (multimask); the mask start graph
    (against transformers' own `_use_mask_as_output`);
    the step graph with the smallest bank (conditioning frame only), a growing one and a full one."""
    import torch

    from reasonseg.backends.onnxruntime_graph import open_session

    out: dict = {}
    limits = track_limits(model)
    (start, start_mask, step), (start_path, mask_path, step_path) = modules, paths
    cases = {"start/box": (start, start_path, example_start_inputs(model, 2, seed)),
             "start/one_click_multimask": (start, start_path, example_start_inputs(model, 1, seed + 1)
                                           | {"multimask_output": np.array([1.0], np.float32)}),
             "start_mask/disc": (start_mask, mask_path, example_start_mask_inputs(model, seed + 5)),
             "step/first": (step, step_path, example_step_inputs(model, 1, 1, seed + 2)),
             "step/growing": (step, step_path, example_step_inputs(model, 3, 3, seed + 3)),
             "step/full": (step, step_path, example_step_inputs(model, limits["num_maskmem"],
                                                               limits["max_pointers"], seed + 4))}
    sessions = {p: open_session(p, f"{label} tracking graph") for p in paths}
    for case, (module, path, feeds) in cases.items():
        with torch.inference_mode():
            ref = [t.numpy() for t in module(*(torch.from_numpy(v) for v in feeds.values()))]
        got = sessions[path].run(None, feeds)
        for name, r, g in zip(TRACK_OUTPUTS, ref, got):
            # bf16 memory: one rounding step apart at most where fp32 noise straddles a bf16 boundary
            tol = 1e-2 if name == "maskmem_features" else FP32_MAX_REL
            out[f"{case}/{name}"] = require_close(f"{label} {case} {name}", r, g, tol)
    out["max_rel_tolerance"] = FP32_MAX_REL
    return out
