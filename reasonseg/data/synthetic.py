"""Procedural street scenes with referring expressions and exact masks: a dataset the project makes itself
(seeded, any size), for training runs that must finish on a CPU and for benchmarks whose answer is known.

A scene: sky, road, lane marks, and 2-4 objects — cars (body + cabin + wheels), pedestrians (head + body)
and cones — in five colours, drawn back to front with smaller sizes higher up (perspective). Each scene
refers to one object; the expression names as much as it takes to single it out among the others: kind,
then colour, then left / right / middle by position ("the red car on the left"). The mask is exactly the
drawn pixels of that object that stay visible after the ones drawn later.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 160, 60), "yellow": (230, 200, 40),
           "white": (235, 235, 235)}
KINDS = ("car", "person", "cone")


@dataclass(frozen=True)
class SceneObject:
    kind: str
    colour: str
    cx: float        # centre x, pixels
    base_y: float    # ground contact y, pixels
    scale: float     # pixels per unit size


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray       # HxWx3 uint8 RGB
    expression: str
    mask: np.ndarray        # HxW uint8 {0, 1}
    objects: tuple[SceneObject, ...]
    target: int             # index into objects


def draw_object(canvas: np.ndarray, obj: SceneObject, value) -> None:  # noqa: ANN001 - colour tuple or int
    s, x, y = obj.scale, obj.cx, obj.base_y
    if obj.kind == "car":
        w, h = 2.4 * s, 0.9 * s
        cv2.rectangle(canvas, (int(x - w / 2), int(y - h)), (int(x + w / 2), int(y - 0.2 * s)), value, -1)
        cv2.rectangle(canvas, (int(x - w / 4), int(y - 1.4 * s)), (int(x + w / 4), int(y - h)), value, -1)
        for wx in (x - w / 3, x + w / 3):
            cv2.circle(canvas, (int(wx), int(y - 0.2 * s)), max(1, int(0.25 * s)), value, -1)
    elif obj.kind == "person":
        cv2.ellipse(canvas, (int(x), int(y - 0.9 * s)), (max(1, int(0.3 * s)), max(1, int(0.9 * s))), 0, 0, 360,
                    value, -1)
        cv2.circle(canvas, (int(x), int(y - 2.0 * s)), max(1, int(0.28 * s)), value, -1)
    else:  # cone
        pts = np.array([[x - 0.45 * s, y], [x + 0.45 * s, y], [x, y - 1.3 * s]], np.int32)
        cv2.fillConvexPoly(canvas, pts, value)


def _expression(objects: list[SceneObject], target: int) -> str:
    t = objects[target]
    same_kind = [o for o in objects if o.kind == t.kind]
    if len(same_kind) == 1:
        return f"the {t.kind}"
    same = [o for o in same_kind if o.colour == t.colour]
    if len(same) == 1:
        return f"the {t.colour} {t.kind}"
    order = sorted(same, key=lambda o: o.cx)
    where = "on the left" if order[0] is t else "on the right" if order[-1] is t else "in the middle"
    return f"the {t.colour} {t.kind} {where}"


def make_scene(seed: int, size: int = 64) -> SyntheticSample:
    rng = np.random.default_rng(seed)
    horizon = int(size * rng.uniform(0.35, 0.5))
    image = np.zeros((size, size, 3), np.uint8)
    image[:horizon] = (np.array([120, 170, 230]) * rng.uniform(0.8, 1.1)).clip(0, 255)
    image[horizon:] = (np.array([90, 90, 95]) * rng.uniform(0.8, 1.2)).clip(0, 255)
    for x in range(0, size, max(4, size // 8)):
        cv2.line(image, (x, int(size * 0.8)), (x + size // 16, int(size * 0.8)), (230, 230, 230), 1)
    objects = []
    kinds = rng.choice(KINDS, size=2)  # two kinds per scene: repeats make the expression matter
    for _ in range(int(rng.integers(2, 5))):
        base_y = rng.uniform(horizon + 0.15 * size, size * 0.98)
        depth = (base_y - horizon) / (size - horizon)          # 0 at the horizon, 1 at the bottom
        objects.append(SceneObject(str(rng.choice(kinds)), str(rng.choice(list(COLOURS))),
                                   float(rng.uniform(0.1, 0.9) * size), float(base_y),
                                   float(size * (0.08 + 0.12 * depth))))  # targets ~3-15 % of the frame, as in RefCOCO
    objects.sort(key=lambda o: o.base_y)                       # far first: near objects occlude far ones
    owner = np.full((size, size), -1, np.int16)
    for i, obj in enumerate(objects):
        draw_object(image, obj, COLOURS[obj.colour])
        draw_object(owner, obj, i)
    visible = [int((owner == i).sum()) for i in range(len(objects))]
    target = int(rng.choice([i for i, v in enumerate(visible) if v == max(visible)] if max(visible) < 12
                            else [i for i, v in enumerate(visible) if v >= 12]))
    noise = rng.normal(0, 6, image.shape)
    image = (image.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)
    return SyntheticSample(image, _expression(objects, target), (owner == target).astype(np.uint8),
                           tuple(objects), target)


def make_scenes(n: int, seed: int = 0, size: int = 64) -> list[SyntheticSample]:
    return [make_scene(seed * 1_000_003 + i, size) for i in range(n)]


__all__ = ["SyntheticSample", "SceneObject", "draw_object", "make_scene", "make_scenes", "COLOURS", "KINDS"]
