"""Pick the referred instance(s) among detections: class, colour, space, relation, count."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from reasonseg.core.prompt import Box
from reasonseg.grounding.colour_names import colour_share, frame_white
from reasonseg.grounding.query import Attribute, Query

CONFIDENT_SHARE = 0.5  # of the best candidate's score: instances that cue-based choices consider
PLURAL_SHARE = 0.3     # "all horses" keeps less certain instances too
TRUNCATED_SHARE = 0.25  # border-cut instances smaller than this share of the largest are not referents
# ... unless the instruction points at the border that cuts them ("the car on the right": a car half out of the
# frame on the right is what a person means) and the detector is about as sure of it as of the best candidate;
# only a sliver stays a fragment then. Tune photos: the cut car (0.21 of the largest car's area) scored 0.96 of the
# best, a book fragment (0.20 of the largest book) 0.53: the confidence, not the area, tells them apart.
SIDE_TRUNCATED_SHARE = 0.05
SIDE_TRUNCATED_CONFIDENT = 0.75
OTHER_CLASS_MARGIN = 2.0  # a target box on an object scored this many times higher as another class is that class
MIN_ATTRIBUTE_HEIGHT_PX = 40  # a person shorter than this shows too few pixels of a jacket or hair to judge
SAME_OBJECT_IOU = 0.7  # boxes overlapping this much are one object scored under two classes
_DEPTH_CUE = {"behind": "far_by_ground", "in_front_of": "near_by_ground"}  # relation to an undetected reference


class DetectionLike(Protocol):
    box: Box
    score: float
    label: str


@dataclass(frozen=True)
class Selection:
    indices: tuple[int, ...]        # into the detection list, best first
    reasoning: str


def box_intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_iou(a: Box, b: Box) -> float:
    inter = box_intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def box_area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _touches_border(b: Box, width: int, height: int, margin: float = 2.0) -> bool:
    return b[0] <= margin or b[1] <= margin or b[2] >= width - margin or b[3] >= height - margin


def _cut_on_named_side(b: Box, width: int, cues: Sequence[str], margin: float = 2.0) -> bool:
    """The box touches the left or right frame edge and the instruction names that side."""
    return ("left" in cues and b[0] <= margin) or ("right" in cues and b[2] >= width - margin)


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _band(image_rgb: np.ndarray, box: Box, rows: tuple[float, float]) -> np.ndarray:
    """The central half of `box` across, `rows` of its height (shares, top down), clipped to the image."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx0, cy0 = int(max(0, x0 + w / 4)), int(max(0, y0 + h * rows[0]))
    cx1, cy1 = int(min(image_rgb.shape[1], x1 - w / 4)), int(min(image_rgb.shape[0], y0 + h * rows[1]))
    return image_rgb[cy0:max(cy0, cy1), cx0:max(cx0, cx1)]


def region_pixels(image_rgb: np.ndarray, box: Box, rows: tuple[float, float],
                  mask: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) pixels of `rows` (shares of the box height, top down) of what stands in `box`: with the object's
    `mask` (H, W bool), its pixels in those rows across the whole box (no background); without, the central half
    of the box across, which keeps most background out."""
    if mask is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        h = y1 - y0
        r0, r1 = y0 + int(h * rows[0]), y0 + int(np.ceil(h * rows[1]))
        return image_rgb[r0:r1, x0:max(x0, x1)][mask[r0:r1, x0:max(x0, x1)]]
    return _band(image_rgb, box, rows).reshape(-1, 3)


def colour_fraction(image_rgb: np.ndarray, box: Box, colour: str, rows: tuple[float, float] = (0.25, 0.75),
                    shade: str | None = None, mask: np.ndarray | None = None, white_l: float | None = None) -> float:
    """Share of the pixels of `box` (see `region_pixels`) a person would call `colour` (`shade`: light | dark | None),
    named in CIELAB (`colour_names`); white relative to the frame (`white_l`: its `frame_white`, computed here when
    not given)."""
    if white_l is None:
        white_l = frame_white(image_rgb)
    return colour_share(region_pixels(image_rgb, box, rows, mask), colour, shade, white_l)


# Where each part of a standing person sits, as shares of its height from the top (adult body proportions: the
# head about 1/8 of the height, the hips a little above the middle).
PART_ROWS = {"head": (0.0, 0.15), "upper body": (0.18, 0.5), "lower body": (0.55, 0.9), "body": (0.15, 0.9)}
PERSON_LABELS = ("person",)
MIN_MASK_COVER = 0.25  # a person mask covering less of its box than this failed: judge the box's central half


def texture_energy(image_rgb: np.ndarray, box: Box, rows: tuple[float, float], mask: np.ndarray | None = None) -> float:
    """Mean gradient magnitude (0..1) over the same region as `colour_fraction`, inside the mask's eroded interior
    when there is one (its outline is an edge too): stripes and prints high, plain cloth low."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = max(0, x0), max(0, y0)
    h = y1 - y0
    band = (slice(y0 + int(h * rows[0]), y0 + int(h * rows[1])), slice(x0, max(x0, x1)))
    region = image_rgb[band]
    if min(region.shape[:2]) < 3:
        return 0.0
    gray = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    mag = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    if mask is not None:
        inner = cv2.erode(mask[band].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if inner.sum() >= 9:
            return float(mag[inner].mean())
    w = region.shape[1]
    return float(mag[:, w // 4:w - w // 4].mean())


PersonMasker = Callable[[Box, Sequence[Box]], np.ndarray]  # (person's box, other people's boxes) -> (H, W) bool


def _person_masks(detections: Sequence[DetectionLike], cand: list[int],
                  person_mask: PersonMasker | None) -> dict[int, np.ndarray | None]:
    """Each candidate's person mask where the masker gives a usable one (None: judge the box's central half)."""
    out: dict[int, np.ndarray | None] = {i: None for i in cand}
    if person_mask is None:
        return out
    people = [d.box for d in detections if d.label in PERSON_LABELS]
    for i in cand:
        box = detections[i].box
        # another person's box, not a part of this one (a head scored as a person of its own)
        others = [b for b in people if b != box and not (box_intersection(b, box) >= 0.7 * box_area(b)
                                                         and box_area(b) < 0.25 * box_area(box))]
        m = person_mask(box, others)
        x0, y0, x1, y1 = (max(0, int(round(v))) for v in box)
        inside = m[y0:y1, x0:x1]
        if inside.size and inside.mean() >= MIN_MASK_COVER:
            out[i] = m
    return out


def _by_attributes(image_rgb: np.ndarray, detections: Sequence[DetectionLike], cand: list[int],
                   attributes: Sequence[Attribute],
                   person_mask: PersonMasker | None = None) -> tuple[list[int], list[str]]:
    """Candidates whose part of the body matches what the instruction says they wear ("in the green coat"): colours
    filter, compared across the candidates (as the colour of a class noun does); a pattern ranks by texture. Judged
    over each person's mask (`person_mask`) when it gives one, else over the central half of the box."""
    reasons = []
    seen = [i for i in cand if detections[i].box[3] - detections[i].box[1] >= MIN_ATTRIBUTE_HEIGHT_PX]
    if not seen:
        return cand, [f"every person under {MIN_ATTRIBUTE_HEIGHT_PX} px tall: what they wear not judged"]
    cand = seen
    masks = _person_masks(detections, cand, person_mask)
    white_l = frame_white(image_rgb)
    for att in attributes:
        rows = PART_ROWS[att.part]
        if att.colour:
            frac = {i: colour_fraction(image_rgb, detections[i].box, att.colour, rows, att.shade, masks[i], white_l)
                    for i in cand}
            best = max(frac.values())
            said = f"{att.shade} {att.colour}" if att.shade else att.colour
            if best > 0.05:
                cand = sorted((i for i in cand if frac[i] >= 0.5 * best), key=lambda i: -frac[i])
                reasons.append(f"{att.part} {said} {frac[cand[0]]:.0%}")
            else:
                reasons.append(f"no {att.part} looks {said}")
        if att.pattern and len(cand) > 1:
            energy = {i: texture_energy(image_rgb, detections[i].box, rows, masks[i]) for i in cand}
            plain = att.pattern == "plain"
            cand = sorted(cand, key=lambda i: energy[i] if plain else -energy[i])
            cand = cand[:1]
            reasons.append(f"{att.part} {att.pattern} (texture {energy[cand[0]]:.2f}, "
                           f"{'least' if plain else 'most'} of {len(energy)})")
    return cand, reasons


def select_instances(
    image_rgb: np.ndarray,
    detections: Sequence[DetectionLike],
    target_labels: Sequence[str],
    query: Query,
    *,
    label_similarity: Callable[[str, str], float],
    sibling_similarity: float,
    reference_labels: Sequence[str] = (),
    excluded_labels: Sequence[str] = (),
    person_mask: PersonMasker | None = None,
    presence_floor: Callable[[str], float] | None = None,
) -> Selection:
    """Choose the detection(s) the instruction refers to, with a reason a person can read. A detection of an
    excluded label ("everything except the dog") is never chosen, not even as a sibling class. `person_mask`
    masks a person (what they wear is judged over it); `presence_floor(label)`: the score a box of that class needs
    to count at all (grounding/presence.py)."""
    if not target_labels:
        return Selection((), "no allowed label matches the instruction")
    # Class-similarity-aware candidates: a sibling class (sheep for horse, car for a pickup truck) may carry the
    # right box, where the detector hesitated between the two: it also scored the target class on that object, at
    # least at the class's presence floor. A sibling box alone is what the detector saw (a cat is no dog): taking
    # it made absent classes "found" on the unseen photos. A category ("animal") already lists its members, and the
    # reference object is never the target.
    def floor(label: str) -> float:
        return presence_floor(label) if presence_floor is not None else 0.0

    def hesitated(det: DetectionLike) -> bool:
        return any(d.label in target_labels and box_iou(d.box, det.box) >= SAME_OBJECT_IOU and d.score >= floor(d.label)
                   for d in detections)

    siblings_ok = len(target_labels) == 1
    weight = {}
    for i, det in enumerate(detections):
        if det.label in excluded_labels:
            continue
        if det.label in target_labels:
            weight[i] = 1.0
        elif siblings_ok and det.label not in reference_labels:
            w = label_similarity(det.label, target_labels[0])
            if w >= sibling_similarity and hesitated(det):
                weight[i] = w
    # One object scored under two classes is the one it scores higher as: the dog also scored as a cat is the
    # excluded dog in "everything except the dog", and still the wanted dog in "the dog but not the cat".
    left_out = [d for d in detections if d.label in excluded_labels]
    cand = [i for i in weight if not any(box_iou(detections[i].box, d.box) >= SAME_OBJECT_IOU
                                         and d.score >= detections[i].score for d in left_out)]
    under_floor = [i for i in cand if detections[i].score < floor(detections[i].label)]
    cand = [i for i in cand if i not in under_floor]
    # Absence, class-aware: a weak box of the target class on an object the detector scores clearly higher as an
    # unrelated class is that object (a van at truck 0.39 is no bus at 0.18); siblings (car for truck) stay.
    candidate_labels = {detections[j].label for j in weight}
    explained = {i: d for i in cand for d in detections if d.label not in candidate_labels
                 and box_iou(detections[i].box, d.box) >= SAME_OBJECT_IOU
                 and d.score >= OTHER_CLASS_MARGIN * detections[i].score}
    cand = _dedupe([i for i in cand if i not in explained], detections, weight)
    named = "/".join(target_labels) if len(target_labels) <= 6 else f"any of {len(target_labels)} classes"
    if not cand:
        if under_floor:
            i = max(under_floor, key=lambda i: detections[i].score)
            label = detections[i].label
            return Selection((), f"no {named}: the best {label} box scores {detections[i].score:.3f}, under the "
                                 f"{label} presence floor {floor(label):.3f}")
        if explained:
            i, d = max(explained.items(), key=lambda kv: detections[kv[0]].score)
            return Selection((), f"no {named}: the only {detections[i].label} box ({detections[i].score:.2f}) is "
                                 f"a {d.label} ({d.score:.2f})")
        return Selection((), f"no {named} detected")
    eff = {i: detections[i].score * weight[i] for i in cand}
    reasons = [f"{len(cand)} candidate(s) for {named}"]
    # Choose among confident instances only: a weak fragment box (a dog's head, a fruit cut by the frame edge)
    # may score a little higher, or be closer, browner or further left, but it is not what a person refers to.
    share = PLURAL_SHARE if query.plural and not (query.spatial or query.colours) else CONFIDENT_SHARE
    top = max(eff.values())
    cand = [i for i in cand if eff[i] >= share * top]
    h, w = image_rgb.shape[:2]
    big = max(box_area(detections[i].box) for i in cand)

    def fragment(i: int) -> bool:
        named = (_cut_on_named_side(detections[i].box, w, query.spatial)
                 and eff[i] >= SIDE_TRUNCATED_CONFIDENT * top)
        return _touches_border(detections[i].box, w, h) and box_area(detections[i].box) < big * (
            SIDE_TRUNCATED_SHARE if named else TRUNCATED_SHARE)

    whole = [i for i in cand if not fragment(i)]
    cand = whole or cand

    kept_by_relation = False  # a relation (or what a person wears) has ordered the candidates: no score ranking
    refs = [j for j, d in enumerate(detections) if d.label in reference_labels and j not in cand]
    if query.relation is not None and refs:
        ref = max(refs, key=lambda j: detections[j].score)
        kept = _relate(cand, detections, detections[ref].box, query.relation.kind)
        if kept:
            cand, kept_by_relation = kept, True
            reasons.append(f"{query.relation.kind.replace('_', ' ')} the {detections[ref].label}")
    elif query.relation is not None and query.relation.kind in _DEPTH_CUE and not query.spatial:
        # "behind the fence": the reference is no class we detect, but the relation still says farther from
        # (or nearer to) the camera, which the ground contact (box bottom) orders on a ground plane.
        query = dataclasses.replace(query, spatial=(_DEPTH_CUE[query.relation.kind],))
        reasons.append(f"{query.relation.kind.replace('_', ' ')} the {query.relation.reference} (not detected)")
    if query.colours:  # a filter, not a ranking: a white bin must not beat a white truck's score
        white_l = frame_white(image_rgb)
        frac = {i: min(colour_fraction(image_rgb, detections[i].box, c, white_l=white_l) for c in query.colours)
                for i in cand}
        best = max(frac.values())
        if best > 0.05:
            cand = [i for i in cand if frac[i] >= 0.5 * best]
            reasons.append(f"{'/'.join(query.colours)}")
    if query.attributes and cand and all(detections[i].label in PERSON_LABELS for i in cand):
        cand, why = _by_attributes(image_rgb, detections, cand, query.attributes, person_mask)
        reasons += why
        kept_by_relation = kept_by_relation or any(a.colour or a.pattern for a in query.attributes)  # best match first
    if query.spatial:
        cue = query.spatial[0]
        cand = sorted(cand, key=_spatial_key(cue, detections, image_rgb.shape[1]))
        n = (query.ordinal or 1) - 1
        if query.count:  # "the two people on the right": the two rightmost
            reasons.append(f"the {query.count} {cue.replace('_', ' ')}most of {len(cand)}")
            return Selection(tuple(cand[:query.count]), "; ".join(reasons))
        chosen = cand[n:n + 1] if n < len(cand) else cand[-1:]
        reasons.append(f"{_ordinal_word(query.ordinal)}{cue.replace('_', ' ')} of {len(cand)}")
        return Selection(tuple(chosen), "; ".join(reasons))
    if query.plural:
        ordered = sorted(cand, key=lambda i: -eff[i])
        if query.count is not None and len(ordered) >= query.count:
            reasons.append(f"the {query.count} most confident of {len(ordered)}")
            return Selection(tuple(ordered[:query.count]), "; ".join(reasons))
        reasons.append(f"all {len(ordered)} instance(s)"
                       + (f" (asked for {query.count})" if query.count is not None else ""))
        return Selection(tuple(ordered), "; ".join(reasons))
    if not kept_by_relation:
        cand = sorted(cand, key=lambda i: -eff[i])
        reasons.append(f"highest score {eff[cand[0]]:.2f}")
    return Selection((cand[0],), "; ".join(reasons))


def _dedupe(idx: list[int], dets: Sequence[DetectionLike], weight: dict[int, float]) -> list[int]:
    """One candidate per object: boxes of sibling classes on the same object collapse to the best."""
    keep: list[int] = []
    for i in sorted(idx, key=lambda i: -dets[i].score * weight[i]):
        if all(box_iou(dets[i].box, dets[k].box) < SAME_OBJECT_IOU for k in keep):
            keep.append(i)
    return keep


def _relate(cand: list[int], dets: Sequence[DetectionLike], ref: Box, kind: str) -> list[int]:
    rx, ry = _centre(ref)
    dist = {i: float(np.hypot(*np.subtract(_centre(dets[i].box), (rx, ry)))) for i in cand}
    if kind == "left_of":
        kept = [i for i in cand if _centre(dets[i].box)[0] < rx]
    elif kind == "right_of":
        kept = [i for i in cand if _centre(dets[i].box)[0] > rx]
    elif kind == "on":
        kept = [i for i in cand if _centre(dets[i].box)[1] < ry and ref[0] <= _centre(dets[i].box)[0] <= ref[2]]
    elif kind == "under":
        kept = [i for i in cand if _centre(dets[i].box)[1] > ry]
    elif kind == "behind":
        kept = [i for i in cand if dets[i].box[3] < ref[3]]
    elif kind == "in_front_of":
        kept = [i for i in cand if dets[i].box[3] > ref[3]]
    else:
        kept = list(cand)
    return sorted(kept, key=lambda i: dist[i])


def _spatial_key(cue: str, dets: Sequence[DetectionLike], width: int) -> Callable[[int], float]:
    def key(i: int) -> float:
        b = dets[i].box
        cx, cy = _centre(b)
        return {
            "left": cx, "right": -cx, "top": cy, "bottom": -cy,
            "biggest": -box_area(b), "smallest": box_area(b), "farthest": box_area(b),
            "far_by_ground": b[3], "near_by_ground": -b[3],  # ground contact: lower in the frame = nearer
            "nearest": -box_area(b) - b[3],  # larger and lower in the frame = closer to the camera
            "middle": abs(cx - width / 2),
        }[cue]
    return key


def _ordinal_word(n: int | None) -> str:
    return "" if not n or n == 1 else {2: "2nd ", 3: "3rd "}.get(n, f"{n}th ")
