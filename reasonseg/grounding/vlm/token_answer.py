"""What a prompt-token grounder (`lens`, `cora`) answers: ONE SAM2 sparse prompt token for the frame, plus the
text it generated. `pipelines/prompt_token.TokenPipeline` decodes the token with the checkpoint's own SAM2."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from reasonseg.core.prompt import Box
from reasonseg.core.timing import Timer


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


__all__ = ["TokenAnswer", "TokenGrounder"]
