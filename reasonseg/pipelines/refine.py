"""`refine`: training-free grounding with LLM refinement (Huang et al., training_free_llm_refinement.txt).

recognition (detector classes present = tags; no captioner on the embedded default)
 -> pre-refinement (§3.3.1: instruction + tags -> target labels from L, LLM or local resolver)
 -> detection (COCO CenterNet) -> post-refinement (§3.3.2: detector phrase -> label in L)
 -> instance choice (colour / space / relation / count rules)
 -> SAM-family mask from the box + top-n point prompts (§3.4: n_p = 20; `segmenter.num_points`).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Sequence

import numpy as np

from reasonseg.core.model_text import reason_of
from reasonseg.core.prompt import Box, Prompt
from reasonseg.core.results import FrameResult, Grounding, Instance, Target
from reasonseg.core.settings import Settings
from reasonseg.core.timing import Timer
from reasonseg.grounding.affordances import parse_affordance
from reasonseg.grounding.label_resolver import LabelResolver
from reasonseg.grounding.llm.client import ChatLlm
from reasonseg.grounding.presence import PresenceFloors
from reasonseg.grounding.query import Query, Relation, parse_query
from reasonseg.grounding.selection import SAME_OBJECT_IOU, box_area, box_intersection, box_iou, select_instances
from reasonseg.grounding.zoom import merge_zoomed, needs_zoom, zoom_region
from reasonseg.pipelines.base import Pipeline

log = logging.getLogger(__name__)
OCCLUDER_MIN_SCORE = 0.3  # detector score for an object to be cut out of the target's mask
MAX_OCCLUDERS = 3         # bounds the extra decoder runs per target
MIN_PERSON_COVER = 0.15   # a person mask covering less of its box is compared with the box-prompted one


@dataclasses.dataclass(frozen=True)
class RefineDetail:
    """What refine needs to re-acquire its target between groundings (`Grounding.detail`)."""

    query: Query
    reference_labels: tuple[str, ...]  # labels of objects named as reference ("left of the bus")
    targets: tuple[tuple[Query, tuple[str, ...]], ...] = ()  # each target ("the dog and the bicycle"), its labels
    excluded_labels: tuple[str, ...] = ()  # classes the instruction leaves out ("everything except the dog")
    excluded_instances: tuple[tuple[Query, tuple[str, ...]], ...] = ()  # instances it leaves out ("the red one")


class RefinePipeline(Pipeline):
    name = "refine"

    def __init__(self, detector, segmenter, resolver: LabelResolver, settings: Settings,
                 llm: ChatLlm | None = None, person=None) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.person = person  # PersonSegmenter for "person" instances, or None
        self.resolver = resolver
        self.settings = settings
        self.llm = llm
        self.labels: tuple[str, ...] = resolver.labels
        self.presence = PresenceFloors.load(settings.detector.presence_floors)
        self._post_cache: dict[str, str | None] = {}
        self._post_lock = threading.Lock()
        # (analysis, labels, result) of the last closer look: a key frame's grounding and its mask share one
        # analysis (the engine and `run` pass it to both), so the extra detector pass runs once for them
        self._zoomed: tuple[list, tuple[str, ...], tuple[list, str]] | None = None

    # -- per-frame perception -------------------------------------------------------------------
    def analyse(self, image_rgb: np.ndarray, timer: Timer) -> list:
        d = self.settings.detector
        with timer.stage("detector"):
            dets = self.detector.detect(image_rgb, score_floor=d.score_floor, max_detections=d.max_detections,
                                        num_points=self.settings.segmenter.num_points, zoom_out=d.zoom_out)
        with timer.stage("post_refine"):
            return self._post_refine(dets)

    def _post_refine(self, dets: list) -> list:
        """§3.3.2: map detector phrases onto the allowed list L (identity for a closed-set COCO detector)."""
        out = []
        for det in dets:
            if det.label in self.labels:
                out.append(det)
                continue
            label = self._canonical(det.label)
            if label is not None:
                out.append(dataclasses.replace(det, label=label))
        return out

    def _canonical(self, phrase: str) -> str | None:
        with self._post_lock:
            if phrase in self._post_cache:
                return self._post_cache[phrase]
        label = None
        if self.llm is not None:
            try:
                label = self.llm.post_refine(phrase, self.labels)
            except Exception as exc:  # LlmError or any fault in handling the answer: the local resolver answers
                log.warning("post-refinement of %r fell back to the local resolver: %s", phrase, reason_of(exc))
        if label is None:
            match = self.resolver.nearest_label(phrase)
            label = match.label if match else None
        with self._post_lock:
            self._post_cache[phrase] = label
        return label

    # -- grounding (slow) ------------------------------------------------------------------------
    def ground(self, image_rgb: np.ndarray, instruction: str, analysis=None) -> Grounding:
        timer = Timer()
        dets = analysis if analysis is not None else self.analyse(image_rgb, timer)
        query = parse_query(instruction)
        tags = sorted({d.label for d in dets})
        with timer.stage("pre_refine"):
            labels, source, detail, fallback = self._pre_refine(instruction, query, tags)
        dets, zoom_note = self._zoom(image_rgb, dets, labels, timer)
        with timer.stage("select"):
            indices, reasoning = self._select(image_rgb, dets, detail)
        if zoom_note:
            reasoning = f"{zoom_note}; {reasoning}"
        n = self.settings.segmenter.num_points  # paper §3.4: box + top-n points of the detection
        targets = tuple(Target(self._as_target(d, labels) if labels else d.label, float(d.score),
                               Prompt(box=d.box, points=tuple(map(tuple, d.points[:n]))))
                        for d in (dets[i] for i in indices))
        return Grounding(instruction=instruction, labels=labels, targets=targets, reasoning=reasoning,
                         source=source, pipeline=self.name, timings_ms=timer.ms, detail=detail, fallback=fallback)

    def candidates(self, image_rgb: np.ndarray, labels: Sequence[str]) -> list:
        """The detections grounding chooses among for these target labels (the closer look included), before any
        presence floor: what `bench/eval_unseen.py --fit-presence` fits the floors on."""
        timer = Timer()
        return self._zoom(image_rgb, self.analyse(image_rgb, timer), labels, timer)[0]

    def _zoom(self, image_rgb: np.ndarray, dets: list, labels: Sequence[str], timer: Timer) -> tuple[list, str]:
        """A closer look where the target class was found only small or weak (grounding/zoom.py)."""
        d = self.settings.detector
        h, w = image_rgb.shape[:2]
        small = d.small_side * max(h, w)
        if d.zoom_in <= 1.0 or not needs_zoom(dets, labels, small):
            return dets, ""
        region = zoom_region([x.box for x in dets if x.label in labels], w, h, d.zoom_in)
        if region is None:
            return dets, ""
        last = self._zoomed
        if last is not None and last[0] is dets and last[1] == tuple(labels):
            return last[2]
        with timer.stage("detector_zoom"):
            zoomed = self._post_refine(self.detector.detect_region(
                image_rgb, region, score_floor=d.score_floor, max_detections=d.max_detections,
                num_points=self.settings.segmenter.num_points))
        result = merge_zoomed(dets, zoomed, region, labels, small)
        self._zoomed = (dets, tuple(labels), result)
        return result

    def _pre_refine(self, instruction: str, query: Query, tags: Sequence[str]
                    ) -> tuple[tuple[str, ...], str, RefineDetail, str]:
        """§3.3.1: instruction + tags -> target labels (and reference labels), by the LLM when configured,
        else locally: a purpose or action is read from its verb, a thing from its noun phrase; several targets
        ("the dog and the bicycle") each from their own; what the instruction excludes is left out."""
        excluded: list[str] = []
        instances: list[tuple[Query, tuple[str, ...]]] = []
        for ex in query.excluded:
            ex_labels = self._known_labels(ex.phrase)
            if ex.colours or ex.spatial or ex.ordinal:  # one instance: "except the red one", "the dog on the left"
                instances.append((dataclasses.replace(ex, plural=False, count=None), ex_labels))
            else:  # a class; a phrase no label surely is ("not moving") excludes nothing
                excluded += ex_labels
        if query.excluded and not excluded and not instances:  # "the do not enter sign": no exclusion after all
            query = parse_query(instruction, exclusions=False)
        fallback_reason = ""
        if self.llm is not None:
            try:
                answer = self.llm.pre_refine(instruction, tags, self.labels)
                labels = tuple(label for label in answer.labels if label not in excluded)  # validated, not trusted
                return labels, "llm", RefineDetail(query, answer.reference_labels, ((query, labels),) if labels else (),
                                                   tuple(dict.fromkeys(excluded))), ""
            except Exception as exc:  # LlmError or any fault in handling the answer: the local resolver answers
                fallback_reason = reason_of(exc)
                log.warning("LLM pre-refinement failed, using the local resolver: %s", fallback_reason)
        source = f"local_fallback: {fallback_reason}" if fallback_reason else "local"
        aff = parse_affordance(instruction, self.labels)
        if aff is not None:  # "what the player is kicking": the ball, near the player
            refs = self._reference_labels(aff.subject) if aff.subject else ()
            relation = Relation("near", aff.subject) if refs else None
            query = dataclasses.replace(query, phrase=aff.verb, relation=relation)
            return aff.labels, source, RefineDetail(query, refs, ((query, aff.labels),)), fallback_reason
        targets, outside = [], []
        for q in (dataclasses.replace(query, also=(), excluded=()), *query.also):
            if query.any_class:
                labels = self.labels
            else:
                matches = self.resolver.resolve(q.phrase, top_k=1)
                if matches and matches[0].how == "outside":  # WordNet: no label is it or a kind of it
                    outside.append(f"'{q.phrase}' is not in the label set (nearest: {matches[0].label})")
                    continue
                labels = tuple(m.label for m in matches if m.how == "category") or tuple(m.label for m in matches[:1])
            labels = tuple(label for label in labels if label not in excluded)
            if labels:
                targets.append((q, labels))
        if not targets:
            why = outside[0] if outside else f"the instruction leaves out every class it names ({', '.join(excluded)})"
            return (), f"{source}: {why}", RefineDetail(query, ()), fallback_reason
        if outside:  # "the bicycle and the tree": the bicycle, and why not the tree
            source = f"{source}: {'; '.join(outside)}"
        union = tuple(dict.fromkeys(label for _, labels in targets for label in labels))
        refs = self._reference_labels(query.relation.reference) if query.relation is not None else ()
        return union, source, RefineDetail(query, refs, tuple(targets), tuple(dict.fromkeys(excluded)),
                                           tuple((q, labels or union) for q, labels in instances)), fallback_reason

    def _known_labels(self, phrase: str) -> tuple[str, ...]:
        """Labels a phrase surely names (the label, a synonym, a category, a kind of it): what may be excluded."""
        return tuple(m.label for m in self.resolver.resolve(phrase, top_k=1)
                     if m.how in ("exact", "synonym", "category", "wordnet")) if phrase else ()

    def _select(self, image_rgb: np.ndarray, dets: list, detail: RefineDetail) -> tuple[tuple[int, ...], str]:
        """Every target's instances, minus the instances the instruction leaves out."""
        sim, sib = self.resolver.label_similarity, self.settings.resolver.sibling_similarity
        person = self.person
        masker = None if person is None else lambda box, others: person.mask(image_rgb, box, others)
        chosen: list[int] = []
        reasons = []
        for q, labels in detail.targets:
            sel = select_instances(image_rgb, dets, labels, q, label_similarity=sim, sibling_similarity=sib,
                                   reference_labels=detail.reference_labels, excluded_labels=detail.excluded_labels,
                                   person_mask=masker, presence_floor=self.presence.floor)
            chosen += [i for i in sel.indices if i not in chosen]
            reasons.append(sel.reasoning)
        if detail.excluded_labels:
            reasons.append(f"leaving out {'/'.join(detail.excluded_labels)}")
        for q, labels in detail.excluded_instances:  # "all cars except the red one": the red one of those chosen
            pool = [dets[i] for i in chosen]
            left_out = select_instances(image_rgb, pool, labels, q, label_similarity=sim, sibling_similarity=sib)
            chosen = [i for k, i in enumerate(chosen) if k not in left_out.indices]
            reasons.append(f"leaving out {left_out.reasoning}" if left_out.indices else "nothing to leave out")
        if not detail.targets:
            reasons.append("no allowed label matches the instruction")
        return tuple(chosen), "; ".join(reasons)

    def _reference_labels(self, phrase: str) -> tuple[str, ...]:
        """The label of a reference object ("the fence" names none: WordNet puts it outside the label set)."""
        return tuple(m.label for m in self.resolver.resolve(phrase, top_k=1) if m.how != "outside")

    # -- per-frame segmentation (fast) -----------------------------------------------------------
    def segment(self, image_rgb: np.ndarray, grounding: Grounding, track: tuple[Box, ...] = (),
                analysis=None) -> FrameResult:
        timer = Timer()
        dets = analysis if analysis is not None else self.analyse(image_rgb, timer)
        dets, _ = self._zoom(image_rgb, dets, grounding.labels, timer)
        chosen, note = self._follow(image_rgb, dets, grounding, track)
        h, w = image_rgb.shape[:2]
        mask = np.zeros((h, w), bool)
        if not chosen:
            return FrameResult.not_found(mask, grounding, timer.ms, note)
        emb = None

        def sam(det) -> np.ndarray:  # the SAM encoder runs only if some mask needs it
            nonlocal emb
            if emb is None:
                with timer.stage("sam_encoder"):
                    emb = self.segmenter.encode(image_rgb)
            with timer.stage("sam_decoder"):
                return self._decode(emb, det)

        def decode(det) -> np.ndarray:
            if self.person is None or det.label != "person":
                return sam(det)
            with timer.stage("person_mask"):
                others = [d.box for d in dets if d.label == "person" and d is not det and d.score >= OCCLUDER_MIN_SCORE]
                m = self.person.mask(image_rgb, det.box, others)
            cover = _box_cover(m, det.box)
            if cover >= MIN_PERSON_COVER:
                return m
            alt = sam(det)  # a person cut by the frame edge or seen from behind can defeat the selfie model
            return alt if _box_cover(alt, det.box) > cover else m

        occluder_masks: dict[int, np.ndarray] = {}  # "all horses": one occluder may sit in several boxes
        for det in chosen:
            m = decode(det)
            for other in self._occluders(dets, det, grounding.labels, grounding.detail):
                if id(other) not in occluder_masks:
                    occluder_masks[id(other)] = decode(other)
                m &= ~occluder_masks[id(other)]
            mask |= m
        instances = tuple(Instance(self._as_target(d, grounding.labels), float(d.score), d.box) for d in chosen)
        return FrameResult.found(mask, instances, grounding, timer.ms, note)

    def _decode(self, emb, det) -> np.ndarray:
        n = self.settings.segmenter.num_points  # paper §3.4: box + top-n points of the detection
        return self.segmenter.predict(emb, Prompt(box=det.box, points=tuple(map(tuple, det.points[:n])))).mask

    def _occluders(self, dets: list, target, target_labels: tuple[str, ...], detail: RefineDetail | None) -> list:
        """Confident other-class objects lying mostly inside the target's box (the dog in front of the bicycle).

        A box prompt segments everything salient in the box; cutting these out keeps the target alone. What the
        instruction excludes ("everything except the dog") is cut out whatever the setting and the classes' kinship.
        """
        excluded = detail.excluded_labels if isinstance(detail, RefineDetail) else ()
        if not self.settings.segmenter.subtract_occluders and not excluded:
            return []
        sim, sib = self.resolver.label_similarity, self.settings.resolver.sibling_similarity
        t_area = box_area(target.box)
        out: list = []
        for d in sorted(dets, key=lambda d: -d.score):
            if d.label not in excluded and (not self.settings.segmenter.subtract_occluders
                                            or max(sim(d.label, t) for t in target_labels) >= sib):
                continue
            if d.score < OCCLUDER_MIN_SCORE:
                continue
            area = box_area(d.box)
            if (area <= 0 or box_intersection(d.box, target.box) / area < 0.6 or area > 0.8 * t_area
                    or box_iou(d.box, target.box) > SAME_OBJECT_IOU):
                continue
            if all(box_iou(d.box, o.box) < SAME_OBJECT_IOU for o in out):
                out.append(d)
            if len(out) == MAX_OCCLUDERS:
                break
        return out

    def _as_target(self, det, targets: tuple[str, ...]) -> str:
        """The target label a sibling-class box stood for (a truck scored as car is still the truck)."""
        sim = self.resolver.label_similarity
        return det.label if det.label in targets else max(targets, key=lambda t: sim(det.label, t))

    def _follow(self, image_rgb: np.ndarray, dets: list, grounding: Grounding, track: tuple[Box, ...]):
        """Keep the grounded instance(s) between groundings: IoU association, else the same rules again."""
        if not grounding.labels:
            return [], "instruction names no known class"
        sim = self.resolver.label_similarity
        sib = self.settings.resolver.sibling_similarity
        detail: RefineDetail = grounding.detail
        pool = [d for d in dets if max(sim(d.label, t) for t in grounding.labels) >= sib
                and d.label not in detail.excluded_labels]
        chosen = []
        for box in track:
            best = max(pool, key=lambda d: box_iou(d.box, box), default=None)
            if best is not None and box_iou(best.box, box) >= self.settings.runtime.track_min_iou and best not in chosen:
                chosen.append(best)
        if chosen and len(chosen) == len(track):
            return chosen, "tracked"
        indices, _ = self._select(image_rgb, dets, detail)
        if indices:
            return [dets[i] for i in indices], "re-acquired by rules"
        return [], "target lost"


def _box_cover(mask: np.ndarray, box: Box) -> float:
    """Share of the box's pixels the mask covers."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    area = max(1, (x1 - x0) * (y1 - y0))
    return float(mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)].sum()) / area
