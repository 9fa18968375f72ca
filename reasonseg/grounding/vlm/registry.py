"""The VLM grounders `pipeline: mllm` can ask, one row per `mllm.backend`: in-process transformers (Qwen2.5-VL),
an ONNX Runtime GenAI package (`reasonseg export qwen-vl`) or an OpenAI-compatible server. Add one: a module
beside these and a row in `BACKENDS`; the choice list of `mllm.backend` is derived from it."""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_loading import load_hf_model
from reasonseg.core.settings import MllmSettings
from reasonseg.grounding.vlm.answer import MllmAnswer


class VlmGrounder(Protocol):
    name: str
    endpoint: str

    def ground(self, image_rgb: np.ndarray, instruction: str) -> MllmAnswer: ...


def _transformers(m: MllmSettings) -> VlmGrounder:
    from reasonseg.grounding.vlm.qwen_vl import QwenVl

    return load_hf_model(f"MLLM {m.model}", m.model, lambda: QwenVl(m))


def _onnxruntime_genai(m: MllmSettings) -> VlmGrounder:
    from reasonseg.grounding.vlm.genai_vlm import GenAiVlm

    return load_hf_model(f"MLLM package {m.model}", m.model, lambda: GenAiVlm(m))


def _openai(m: MllmSettings) -> VlmGrounder:
    from reasonseg.grounding.vlm.openai_vlm import OpenAiVlm

    try:
        return OpenAiVlm(m)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


BACKENDS: dict[str, Callable[[MllmSettings], VlmGrounder]] = {
    "transformers": _transformers, "onnxruntime-genai": _onnxruntime_genai, "openai": _openai}


def build_vlm(m: MllmSettings) -> VlmGrounder:
    return BACKENDS[m.backend](m)
