"""TF.js graph models the product runs (the CenterNet detector, the selfie person segmenter) -> ONNX, checked.

The check runs the TF.js graph itself (`reference`, TensorFlow's semantics in float64) and the ONNX file
on the same inputs: photos resized to the graph's input, fed in the range the runtime feeds, plus one of
uniform noise. Every output must agree within `FP32_MAX_REL` of its largest magnitude (at least 1: probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from reasonseg_export.manifest import write_manifest
from reasonseg_export.parity import FP32_MAX_REL, require_close


@dataclass(frozen=True)
class TfjsFormat:
    name: str
    outputs: tuple[str, ...] | None  # None: the model signature's outputs
    input_scale: float               # what the runtime feeds for a white pixel (0..255 or 0..1)
    parity_photos: int               # plus one noise input
    output_floor: float = 1.0        # errors relative to max(|output|, this): both graphs output probabilities


# CenterNet: boxes are decoded in numpy from these two; its reference takes ~3 s a pass on 2 cores.
CENTERNET = TfjsFormat("centernet", ("tower_0/keypoints", "tower_0/wh"), 255.0, parity_photos=2)
PERSON_SELFIE = TfjsFormat("person-selfie", None, 1.0, parity_photos=6)  # 0.1 s a pass: the sample people too


def parity_feeds(shape: Sequence[int], scale: float, photos: Sequence[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """NHWC float32 inputs of `shape`: each photo stretched to it, then uniform noise."""
    import cv2

    n, h, w, c = (int(d) if isinstance(d, int) and d > 0 else default for d, default in zip(shape, (1, 256, 256, 3)))
    feeds = [cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)[None] * (scale / 255.0)
             for p in photos if p.ndim == 3 and p.shape[2] == c]
    rng = np.random.default_rng(seed)
    return feeds + [(rng.random((n, h, w, c)) * scale).astype(np.float32)]


def check_tfjs(model_json: Path, onnx_path: Path, fmt: TfjsFormat, photos: Sequence[np.ndarray]) -> dict:
    """The worst error per output over every parity feed; ParityError beyond `FP32_MAX_REL`."""
    from reasonseg.backends.onnxruntime_graph import open_session
    from reasonseg_export.tfjs.convert import default_outputs, public_name
    from reasonseg_export.tfjs.graph import load_tfjs_graph
    from reasonseg_export.tfjs.reference import run_tfjs_graph

    graph = load_tfjs_graph(model_json)
    outputs = list(fmt.outputs or default_outputs(graph))
    session = open_session(onnx_path, f"{fmt.name} ONNX")
    (inp,) = session.get_inputs()
    names = [public_name(o) for o in outputs]
    worst: dict[str, dict[str, float]] = {}
    feeds = parity_feeds(inp.shape, fmt.input_scale, photos)
    from tqdm import tqdm

    for x in tqdm(feeds, desc=f"[export] {fmt.name} vs the TF.js graph", unit="input", leave=False):
        ref = run_tfjs_graph(graph, {inp.name: x}, outputs)
        got = session.run(names, {inp.name: x})
        for name, a, b in zip(names, ref, got):
            err = require_close(f"{fmt.name} output {name}", a, b, FP32_MAX_REL, floor=fmt.output_floor,
                                against="the TF.js graph")
            prev = worst.setdefault(name, err)
            worst[name] = {k: max(prev[k], err[k]) for k in err}
    return {"reference": "the TF.js graph run in TF semantics (reasonseg_export.tfjs.reference, float64)",
            "inputs": len(feeds), "photos": len(feeds) - 1, "outputs": worst, "max_rel_tolerance": FP32_MAX_REL,
            "relative_to": f"max(|output|, {fmt.output_floor})"}


def export_tfjs(model_json: Path, out: Path, fmt: TfjsFormat, photos: Sequence[np.ndarray]) -> Path:
    """Convert, check, and only then put the file at `out` (a graph that fails its check is not left there)."""
    from reasonseg_export.tfjs.convert import convert_tfjs_graph

    out = Path(out)
    unchecked = out.with_name(out.name + ".unchecked")
    try:
        convert_tfjs_graph(Path(model_json), unchecked, list(fmt.outputs) if fmt.outputs else None)
        parity = check_tfjs(Path(model_json), unchecked, fmt, photos[:fmt.parity_photos])
        unchecked.replace(out)
    finally:
        unchecked.unlink(missing_ok=True)
    write_manifest(out, format=fmt.name, precision="fp32", source=model_json, parity=parity)
    return out
