"""Build a pipeline by name from settings; `auto` picks the best that loads."""
from __future__ import annotations

import logging
from typing import Callable

from reasonseg.core.errors import ConfigError, ReasonSegError
from reasonseg.core.model_cache import require
from reasonseg.core.model_loading import load_hf_model
from reasonseg.core.model_loading import load_model as _load
from reasonseg.core.settings import Settings
from reasonseg.pipelines.base import Pipeline
from reasonseg.pipelines.chain import FallbackChain
from reasonseg.segmenters.registry import build_segmenter

log = logging.getLogger(__name__)


def _describe(settings: Settings) -> str:
    seg = settings.segmenter
    return f"{seg.kind}{':' + seg.model if seg.model else ''}/{seg.backend}"


class _Parts:
    """Models shared by the pipelines of one build (`auto` holds several): each is loaded once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._segmenter = None
        self._vlm = None
        self._concepts = None

    @property
    def segmenter(self):
        if self._segmenter is None:
            self._segmenter = build_segmenter(self.settings.segmenter, self.settings.cache_path)
        return self._segmenter

    @property
    def vlm(self):
        if self._vlm is None:
            from reasonseg.grounding.vlm.registry import build_vlm

            m = self.settings.mllm
            if not m.model:
                raise ConfigError("this pipeline needs mllm.model (HF id or local dir; the served name for backend "
                                  "openai)")
            self._vlm = build_vlm(m)
        return self._vlm

    @property
    def concepts(self):
        """SAM 3's concept model (refine with detector.kind sam3, agent), loaded once."""
        if self._concepts is None:
            from reasonseg.segmenters.sam3.concepts import Sam3Concepts

            sam3 = self.settings.sam3
            if not sam3.model:
                raise ConfigError("SAM 3 concepts need sam3.model (facebook/sam3 from the local cache, or a dir)")
            self._concepts = load_hf_model(f"SAM 3 {sam3.model}", sam3.model, lambda: Sam3Concepts(sam3))
        return self._concepts


def _build_refine(settings: Settings, parts: _Parts) -> Pipeline:
    if settings.detector.kind == "sam3":
        from reasonseg.pipelines.concepts import ConceptRefinePipeline

        concepts = parts.concepts
        log.info("refine pipeline: detector=SAM 3 concepts (%s), segmenter=%s", concepts.endpoint, _describe(settings))
        return ConceptRefinePipeline(concepts, parts.segmenter, settings)
    from reasonseg.grounding.detector import COCO_LABELS, GRAPH_FILES, CenterNetDetector
    from reasonseg.grounding.label_resolver import LabelResolver
    from reasonseg.grounding.llm.client import ChatLlm, resolve_endpoint
    from reasonseg.grounding.text_embedding import TextEmbedder
    from reasonseg.grounding.wordnet import WordNet
    from reasonseg.pipelines.refine import RefinePipeline

    cache = settings.cache_path
    onnx = require(cache, GRAPH_FILES[0])
    detector = _load("CenterNet detector", lambda: CenterNetDetector(onnx))  # input size is fixed by the model
    minilm = require(cache, "minilm")
    wordnet_dir = require(cache, "wordnet/index.noun").parent
    for name in ("wordnet/data.noun", "wordnet/noun.exc"):
        require(cache, name)
    resolver = LabelResolver(COCO_LABELS, _load("MiniLM text encoder", lambda: TextEmbedder(minilm)),
                             min_similarity=settings.resolver.min_similarity,
                             wordnet=_load("WordNet nouns", lambda: WordNet(wordnet_dir)),
                             accept_near_classes=settings.resolver.accept_near_classes)
    person = None
    if settings.segmenter.person_model:
        from reasonseg.segmenters.person import GRAPH_FILES as PERSON_FILES
        from reasonseg.segmenters.person import PersonSegmenter

        onnx_person = require(cache, PERSON_FILES[0])
        person = _load("selfie person segmenter",
                       lambda: PersonSegmenter(onnx_person, num_threads=settings.segmenter.threads or None))
    endpoint = resolve_endpoint(settings.llm.base_url, _key_home(settings))
    llm = ChatLlm.for_endpoint(settings.llm.model, endpoint, timeout_s=settings.llm.timeout_s,
                               max_tokens=settings.llm.max_tokens)
    log.info("refine pipeline: detector=CenterNet, segmenter=%s%s, LLM=%s", _describe(settings),
             " (people: selfie model)" if person else "",
             f"{settings.llm.model} @ {endpoint}" if llm else "none (local resolver: no llm.base_url, no "
                                                             "$OPENAI_BASE_URL)")
    return RefinePipeline(detector, parts.segmenter, resolver, settings, llm, person=person)


def _key_home(settings: Settings) -> tuple[str, ...]:
    """The base URLs the config names, in the order that decides where $OPENAI_API_KEY belongs when
    $OPENAI_BASE_URL is unset (llm.client.resolve_endpoint): a served VLM's first, then the text LLM's."""
    return (settings.mllm.base_url if settings.mllm.backend == "openai" else "", settings.llm.base_url)


def _build_mllm(settings: Settings, parts: _Parts) -> Pipeline:
    from reasonseg.pipelines.mllm import MllmPipeline

    m = settings.mllm
    vlm = parts.vlm
    log.info("mllm pipeline: %s (%s) @ %s, segmenter=%s", m.model, m.backend, vlm.endpoint, _describe(settings))
    return MllmPipeline(vlm, parts.segmenter, settings)


def _build_agent(settings: Settings, parts: _Parts) -> Pipeline:
    from reasonseg.grounding.agent import Agent
    from reasonseg.pipelines.agent import AgentPipeline

    m = settings.mllm
    vlm = parts.vlm
    if not hasattr(vlm, "ask"):
        raise ConfigError(f"pipeline agent needs an MLLM that answers free-form questions: mllm.backend {m.backend} "
                          "does not (use transformers or openai)")
    concepts = parts.concepts
    log.info("agent pipeline: %s (%s) @ %s proposes, SAM 3 %s segments concepts, segmenter=%s, %d round(s) max",
             m.model, m.backend, vlm.endpoint, concepts.endpoint, _describe(settings), settings.agent.max_rounds)
    return AgentPipeline(Agent(vlm, concepts, settings.agent), parts.segmenter, settings)


def _build_lens(settings: Settings, parts: _Parts) -> Pipeline:
    from reasonseg.pipelines.prompt_token import TokenPipeline

    if not settings.lens.model:
        raise ConfigError("pipeline lens needs lens.model (a LENS checkpoint dir, or an HF id in the local cache)")
    if settings.lens.backend == "onnx":
        from reasonseg.grounding.vlm.lens_onnx import LensOnnxGrounder
        from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter

        grounder = load_hf_model(f"LENS graphs {settings.lens.model}", settings.lens.model,
                                 lambda: LensOnnxGrounder(settings.lens))
        segmenter = _load(f"LENS SAM2 graphs {grounder.sam2_folder}", lambda: OnnxSam2Segmenter(
            grounder.sam2_folder, device=grounder.device, antialias=True))  # resized as LENS's release resizes
        log.info("lens pipeline (onnx): %s (%d queries), SAM2 graphs from the export", grounder.endpoint,
                 grounder.num_queries)
        return TokenPipeline(grounder, settings, segmenter)
    from reasonseg.grounding.vlm.lens import LensGrounder

    grounder = load_hf_model(f"LENS {settings.lens.model}", settings.lens.model, lambda: LensGrounder(settings.lens))
    log.info("lens pipeline: %s (%d queries), SAM2 from the checkpoint", grounder.endpoint,
             grounder.model.num_queries)
    return TokenPipeline(grounder, settings)


def _build_cora(settings: Settings, parts: _Parts) -> Pipeline:
    from reasonseg.grounding.vlm.cora import CoraGrounder
    from reasonseg.pipelines.prompt_token import TokenPipeline

    if not settings.cora.model:
        raise ConfigError("pipeline cora needs cora.model (a CORA checkpoint dir written by training/, or an HF id "
                          "in the local cache)")
    grounder = load_hf_model(f"CORA {settings.cora.model}", settings.cora.model, lambda: CoraGrounder(settings.cora))
    log.info("cora pipeline: %s, SAM2 from the checkpoint", grounder.endpoint)
    return TokenPipeline(grounder, settings)


def _build_l2l(settings: Settings, parts: _Parts) -> Pipeline:
    from reasonseg.pipelines.l2l import L2LPipeline

    if not settings.l2l.model:
        raise ConfigError("pipeline l2l needs l2l.model (an L2L segmentor dir written by training/)")
    pipeline = _load(f"L2L segmentor {settings.l2l.model}", lambda: L2LPipeline(settings.l2l),
                     "train one with training/ (configs/l2l_*.yaml) or point l2l.model at its output dir")
    log.info("l2l pipeline: %s, %d pass(es), no MLLM", pipeline.endpoint, settings.l2l.passes)
    return pipeline


BUILDERS: dict[str, Callable[[Settings, _Parts], Pipeline]] = {"refine": _build_refine, "mllm": _build_mllm,
                                                               "agent": _build_agent, "lens": _build_lens,
                                                               "cora": _build_cora, "l2l": _build_l2l}
PIPELINES: tuple[str, ...] = ("auto", *BUILDERS)  # `pipeline` choices (settings, CLI, schema)
# `auto`: the first configured pipeline that loads, with the ones after it as fallbacks (cora, l2l: by name).
AUTO_ORDER = ("lens", "agent", "mllm", "refine")
CONFIGURED: dict[str, Callable[[Settings], bool]] = {"lens": lambda s: bool(s.lens.model),
                                                     "agent": lambda s: bool(s.mllm.model and s.sam3.model),
                                                     "mllm": lambda s: bool(s.mllm.model), "refine": lambda s: True}


def build_pipeline(settings: Settings) -> Pipeline:
    parts = _Parts(settings)
    if settings.pipeline != "auto":
        return BUILDERS[settings.pipeline](settings, parts)
    chain: list[Pipeline] = []
    for name in AUTO_ORDER:
        if not CONFIGURED[name](settings):
            continue
        try:
            chain.append(BUILDERS[name](settings, parts))
        except ReasonSegError as exc:
            if name == AUTO_ORDER[-1]:
                raise  # the embedded default must load
            log.warning("pipeline auto: %s does not load, skipped: %s", name, exc)
    log.info("pipeline auto -> %s", " > ".join(p.name for p in chain))
    return chain[0] if len(chain) == 1 else FallbackChain(chain)
