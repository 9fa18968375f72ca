"""SAM2 on onnxruntime: the graphs `reasonseg export sam2` writes, with the PyTorch path's prompt handling.

Same preprocessing (`sam2_pixels`), the same prompt encoding (`sam2_points`, SAM's padding point appended
as `Sam2PromptEncoder` does for points without a box tensor) and the same mask choice, so masks agree
with `Sam2Segmenter` within the export's tolerance (tests/test_export.py). A `sam2_video` export also
has the two tracking graphs (`reasonseg_export.sam2_track`); `Sam2OnnxStream` keeps their memory bank and
gives transformers' streaming masks without PyTorch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from reasonseg.backends.onnxruntime_graph import BoundSession, DeviceStack, open_session, run_graph
from reasonseg.core.errors import CheckpointError
from reasonseg.core.graph_manifest import read_manifest
from reasonseg.core.prompt import MaskPrediction, Prompt, check_prompt_kinds
from reasonseg.segmenters.sam2.graphs import (
    DECODER,
    DECODER_INPUTS,
    ENCODER,
    ENCODER_INPUTS,
    START,
    START_INPUTS,
    START_MASK,
    START_MASK_INPUTS,
    STEP,
    STEP_INPUTS,
    TRACK_OUTPUTS,
)
from reasonseg.segmenters.sam2.torch_runner import (
    NO_OBJECT,
    Sam2Embedding,
    _logits_to_mask,
    _sigmoid,
    check_stream_frame,
    sam2_pixels,
    sam2_points,
)


class OnnxSam2Segmenter:
    name, label = "sam2", "SAM2"
    # the graph contract's file names: a SAM with SAM2's graphs under other names (SAM 3) sets its own; "" = none
    FILES = {"encoder": ENCODER, "decoder": DECODER, "start": START, "step": STEP, "start_mask": START_MASK}
    PROMPT_KINDS = frozenset({"box", "points", "mask", "sparse_embeddings"})
    TRACK_PROMPT_KINDS = frozenset({"box", "points"})

    def __init__(self, folder: Path | str, *, device: str = "cpu", num_threads: int | None = None,
                 antialias: bool = False, io_binding: bool | None = None) -> None:
        folder = Path(folder)
        ENCODER, DECODER, START, STEP, START_MASK = self.FILES.values()  # noqa: N806 - this class's files
        manifests = {}
        for name in filter(None, self.FILES.values()):
            if (folder / name).is_file() and (manifests.setdefault(name, read_manifest(folder / name))) is None:
                raise CheckpointError(f"{folder / name} has no manifest or changed after export (stale); export it "
                                      f"again: reasonseg export {self.name} --checkpoint CKPT --out {folder}")
        graphs = {ENCODER: ENCODER_INPUTS, DECODER: DECODER_INPUTS}
        self.can_track = bool(START and STEP) and (folder / START).is_file() and (folder / STEP).is_file()
        if self.can_track:
            graphs |= {START: START_INPUTS, STEP: STEP_INPUTS}
            if START_MASK and (folder / START_MASK).is_file():  # exports before it track box / points prompts only
                graphs |= {START_MASK: START_MASK_INPUTS}
                self.TRACK_PROMPT_KINDS = self.PROMPT_KINDS
            self.track_limits = {k: int(manifests[STEP][k])
                                 for k in ("num_maskmem", "max_pointers", "multimask_min", "multimask_max")}
        sessions = {}
        for name, names in graphs.items():
            sessions[name] = open_session(folder / name, f"{self.label} {name}", threads=num_threads or 0, device=device,
                                          io_binding=io_binding)
            if [i.name for i in sessions[name].get_inputs()] != names:
                raise CheckpointError(f"{folder / name}: not a graph from `reasonseg export {self.name}`")
        self.encoder, self.decoder = sessions[ENCODER], sessions[DECODER]
        self.track_start, self.track_step = sessions.get(START), sessions.get(STEP)
        self.track_start_mask = sessions.get(START_MASK)
        # IO-bound (GPU): each frame's memory stays on the device, and the bank is stacked there
        bound = isinstance(self.track_step, BoundSession)
        self.stack_memory = DeviceStack(self.track_step, self.track_limits["num_maskmem"]) if bound else np.stack
        self.keep = ("maskmem_features",) if bound else ()
        self.source, self.antialias = str(folder), antialias
        self.input_size = int(self.encoder.get_inputs()[0].shape[-1])
        specs = {i.name: i.shape for i in self.decoder.get_inputs()}
        self.prompt_dim = int(specs["sparse_embeddings"][-1])
        self.mask_input_size = tuple(int(v) for v in specs["mask_input"][-2:])

    def pixels(self, image_rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (3, S, S) float32, the encoder's input (SAM2's resize and normalisation)."""
        return sam2_pixels(image_rgb, self.input_size, self.antialias)

    def encode(self, image_rgb: np.ndarray) -> Sam2Embedding:
        pixels = self.pixels(image_rgb)[None]
        names = [o.name for o in self.encoder.get_outputs()]  # IO-bound (GPU): the features stay on the device
        return Sam2Embedding(run_graph(self.encoder, names, {"pixel_values": pixels}, keep=names),
                             (int(image_rgb.shape[0]), int(image_rgb.shape[1])))

    def predict(self, embedding: Sam2Embedding, prompt: Prompt) -> MaskPrediction:
        check_prompt_kinds(self.name, self.PROMPT_KINDS, prompt)
        coords, labels = sam2_points(prompt, embedding.original_size, self.input_size)
        multimask = coords is not None and prompt.box is None and len(coords) == 1
        if coords is None and prompt.sparse_embeddings is None:  # mask only: SAM's "not a point" token
            coords, labels = np.zeros((1, 2), np.float32), np.array([-1], np.int32)
        if coords is not None:  # SAM's padding point, as the PyTorch prompt encoder appends it
            coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
            labels = np.concatenate([labels, [-1]])
        else:
            coords, labels = np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
        raw = np.zeros((0, self.prompt_dim), np.float32)
        if prompt.sparse_embeddings is not None:
            raw = np.ascontiguousarray(prompt.sparse_embeddings, np.float32)
            if raw.ndim != 2 or raw.shape[1] != self.prompt_dim:
                raise ValueError(f"sparse_embeddings have shape {raw.shape}; this {self.label} takes (K, {self.prompt_dim})")
        mask = np.zeros((1, 1, *self.mask_input_size), np.float32)
        if prompt.mask_logits is not None:
            mask[0, 0] = cv2.resize(np.ascontiguousarray(prompt.mask_logits, np.float32), self.mask_input_size[::-1],
                                    interpolation=cv2.INTER_LINEAR)
        feats = embedding.features
        low, iou, obj = run_graph(self.decoder, None, dict(zip(DECODER_INPUTS, (
            feats[0], feats[1], feats[-1], coords[None].astype(np.float32), labels[None].astype(np.int64), raw[None],
            mask, np.array([float(prompt.mask_logits is not None)], np.float32),
            np.array([float(multimask)], np.float32)))))
        logits = low.reshape(low.shape[-2:])
        if float(obj.reshape(-1)[0]) <= 0:  # SAM2's object-score head says the prompted thing is not there
            return MaskPrediction(np.zeros(embedding.original_size, bool), 0.0, np.full_like(logits, NO_OBJECT))
        return MaskPrediction(_logits_to_mask(logits, embedding.original_size), float(iou.reshape(-1)[0]), logits)

    # -- video path --------------------------------------------------------------------------------
    def start_stream(self, image_rgb: np.ndarray, prompts: Sequence[Prompt], memory_frames: int) -> Sam2OnnxStream:
        if not self.can_track:
            raise ValueError(f"{self.source} has no tracking graphs (an image-only sam2 export): export a "
                             "sam2_video checkpoint to track")
        return Sam2OnnxStream(self, image_rgb, prompts, memory_frames)


class Sam2OnnxStream:
    """`reasonseg.segmenters.sam2.torch_runner.Sam2Stream` on the tracking graphs: the memory bank is held here (numpy, or OrtValues on
    the device when the graphs are IO-bound).

    Per object: the conditioning frame's memory and object pointer (kept for the whole stream), and the
    last frames' (at most `memory_frames`, and never more than SAM2 reads: `num_maskmem - 1` memories,
    `max_pointers - 1` pointers). Same order and offsets as transformers builds them, so the masks agree.
    Conditioning takes box / points prompts; a mask or raw-embedding prompt (LENS, CORA) is decoded to a mask
    first, which conditions the object through the mask start graph, as the PyTorch stream does.
    """

    def __init__(self, segmenter: OnnxSam2Segmenter, image_rgb: np.ndarray, prompts: Sequence[Prompt],
                 memory_frames: int) -> None:
        if not prompts:
            raise ValueError("a stream needs at least one prompt")
        for prompt in prompts:
            other = [k for k in prompt.kinds_used if k not in segmenter.TRACK_PROMPT_KINDS]
            if other or not prompt.kinds_used:
                raise ValueError(f"the onnxruntime SAM2 tracker takes box, points prompts, not {', '.join(other)}: "
                                 f"this export of {segmenter.source} has no {segmenter.FILES['start_mask']} (export it again to track "
                                 "mask / embedding prompts)")
        self.seg = segmenter
        self.size = (int(image_rgb.shape[0]), int(image_rgb.shape[1]))
        self.memory_frames = max(1, int(memory_frames))
        self.frame_idx = 0
        embedding = segmenter.encode(image_rgb)
        feats = embedding.features
        self.objects: list[dict] = []
        self.last = []
        for prompt in prompts:
            if prompt.mask_logits is not None or prompt.sparse_embeddings is not None:
                # decoded to a mask first, which conditions the tracker (as the PyTorch stream does)
                s = segmenter.input_size
                logits = segmenter.predict(embedding, prompt).logits
                mask = (cv2.resize(logits, (s, s), interpolation=cv2.INTER_LINEAR) > 0).astype(np.float32)
                out = dict(zip(TRACK_OUTPUTS, run_graph(segmenter.track_start_mask, None, dict(zip(
                    START_MASK_INPUTS, (feats[-1], mask[None, None]))), keep=segmenter.keep)))
                self.objects.append({"cond": out, "past": {}})
                self.last.append(self._prediction(out))
                continue
            coords, labels = sam2_points(prompt, self.size, segmenter.input_size)
            lim = segmenter.track_limits  # transformers' `_use_multimask` for a conditioning frame
            multimask = lim["multimask_min"] <= len(coords) <= lim["multimask_max"]
            out = dict(zip(TRACK_OUTPUTS, run_graph(segmenter.track_start, None, dict(zip(START_INPUTS, (
                *feats, coords[None].astype(np.float32), labels[None].astype(np.int64),
                np.array([float(multimask)], np.float32)))), keep=segmenter.keep)))
            self.objects.append({"cond": out, "past": {}})
            self.last.append(self._prediction(out))

    def step(self, image_rgb: np.ndarray) -> list[MaskPrediction]:
        """Masks of every object in this frame; score = SAM2's object-presence probability."""
        check_stream_frame(self.size, image_rgb)
        self.frame_idx += 1
        t = self.frame_idx
        feats = self.seg.encode(image_rgb).features
        limits = self.seg.track_limits
        self.last = []
        for obj in self.objects:
            past = obj["past"]
            mem_offsets = [0] + [k for k in range(limits["num_maskmem"] - 1, 0, -1) if t - k in past]
            ptr_offsets = [t] + [k for k in range(1, limits["max_pointers"]) if t - k in past]
            memory = [obj["cond"]["maskmem_features"]] + [past[t - k]["maskmem_features"] for k in mem_offsets[1:]]
            pointers = [obj["cond"]["object_pointer"]] + [past[t - k]["object_pointer"] for k in ptr_offsets[1:]]
            out = dict(zip(TRACK_OUTPUTS, run_graph(self.seg.track_step, None, dict(zip(STEP_INPUTS, (
                *feats, self.seg.stack_memory(memory), np.array(mem_offsets, np.int64), np.concatenate(pointers),
                np.array(ptr_offsets, np.float32)))), keep=self.seg.keep)))
            past[t] = out
            for k in [k for k in past if k < t - self.memory_frames]:
                del past[k]
            self.last.append(self._prediction(out))
        return self.last

    def _prediction(self, out: dict[str, np.ndarray]) -> MaskPrediction:
        low = out["low_res_masks"].reshape(out["low_res_masks"].shape[-2:])
        return MaskPrediction(_logits_to_mask(low, self.size), _sigmoid(float(out["object_score_logits"].reshape(-1)[0])),
                              low)

    def stored_frames(self) -> int:
        """Per-object memories held (bounded: tests and benchmarks read it)."""
        return sum(1 + len(o["past"]) for o in self.objects)

    def close(self) -> None:
        self.objects = []
