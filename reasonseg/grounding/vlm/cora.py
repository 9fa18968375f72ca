"""`cora`: a CORA checkpoint (our training/ writes them): Qwen2.5-VL answers "Can you segment ...?" with a
`<SEG>` token; its last hidden state, projected (eq. 3), is the SAM2 prompt. An answer without `<SEG>` gets
one appended after it (teacher-forced, as LISA's training target) and the grounding says so; SAM2's object
score still decides whether anything is there. The pipeline around it is `pipelines/prompt_token.TokenPipeline`.
"""
from __future__ import annotations

import numpy as np

from reasonseg.core.model_text import clean_model_text
from reasonseg.core.settings import CoraSettings
from reasonseg.core.timing import Timer
from reasonseg.grounding.vlm.token_answer import TokenAnswer, load_token_model


class CoraGrounder:
    """A CoraModel + its processor on one device: frame + instruction -> TokenAnswer."""

    name = "cora"

    def __init__(self, settings: CoraSettings) -> None:
        from reasonseg.models.cora import CoraModel

        self.settings = settings
        self.device, self.processor, self.model = load_token_model(CoraModel, settings, "cora")
        self.endpoint = f"{settings.model} on {self.device}"

    def ground(self, image_rgb: np.ndarray, instruction: str, timer: Timer) -> TokenAnswer:
        """Raises LlmError when generation passes the deadline."""
        import torch

        from reasonseg.grounding.vlm.qwen_vl import generate, pixel_bounds
        from reasonseg.models.cora import SEG_TOKEN, seg_prompt

        s = self.settings
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": seg_prompt(instruction)}]}]
        lo, hi = pixel_bounds(self.processor.image_processor)
        with timer.stage("generate"):
            g = generate(self.model.mllm, self.processor, image_rgb, messages, min_pixels=lo, max_pixels=hi,
                         max_new_tokens=s.max_new_tokens, timeout_s=s.timeout_s, device=self.device)
        seg_id = self.model.config.seg_token_id
        sequences, note = g.sequences, ""
        if not bool((sequences[0, g.inputs["input_ids"].shape[1]:] == seg_id).any()):
            sequences = torch.cat([sequences, sequences.new_full((1, 1), seg_id)], dim=1)
            note = f"the answer had no {SEG_TOKEN}; one was appended after it"
        with torch.inference_mode(), timer.stage("seg_pass"):
            out = self.model(sequences, torch.ones_like(sequences), g.inputs["pixel_values"],
                             g.inputs["image_grid_thw"], lm_logits=False)
        return TokenAnswer(clean_model_text(g.text), out.seg_tokens.float().cpu().numpy(), None, "", note)


__all__ = ["CoraGrounder"]
