"""What a prompt-token grounder (`lens`, `cora`) answers: ONE SAM2 sparse prompt token for the frame, plus the
text it generated. `pipelines/prompt_token.TokenPipeline` decodes the token with the checkpoint's own SAM2."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from reasonseg.core.prompt import Box
from reasonseg.core.settings import CoraSettings, LensSettings
from reasonseg.core.timing import Timer
from reasonseg.core.torch_device import resolve_device, resolve_dtype


@dataclass(frozen=True)
class TokenAnswer:
    text: str                                         # the generated answer (special tokens dropped)
    token: np.ndarray                                 # [1, C] SAM2 sparse prompt embedding
    box: Box | None                                   # a box the answer named (frame pixels), if any
    reasoning: str
    note: str                                         # how the token was obtained when not the normal way


class TokenGrounder(Protocol):
    name: str
    model: object      # an MllmSamModel: its `sam` decodes the token
    device: object
    endpoint: str

    def ground(self, image_rgb: np.ndarray, instruction: str, timer: Timer) -> TokenAnswer: ...


def load_token_model(model_class: Any, settings: LensSettings | CoraSettings, section: str,
                     **kwargs: Any) -> tuple[Any, Any, Any]:
    """(device, processor, model) of a checkpoint dir / cached HF id, on `settings.device` in `settings.dtype`;
    `section` names the settings in errors ("lens.device")."""
    from transformers import AutoProcessor
    from transformers.utils import logging as hf_logging

    from reasonseg.models.weights import resolve_checkpoint

    hf_logging.disable_progress_bar()
    device = resolve_device(settings.device, f"{section}.device")
    root = resolve_checkpoint(settings.model)
    processor = AutoProcessor.from_pretrained(root, local_files_only=True)
    model = model_class.from_pretrained(root, dtype=resolve_dtype(settings.dtype, device), **kwargs).to(device)
    return device, processor, model


__all__ = ["TokenAnswer", "TokenGrounder", "load_token_model"]
