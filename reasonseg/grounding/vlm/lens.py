"""`lens`: a LENS checkpoint end to end (lens.txt §3, the release's inference in lens_official.md).

Qwen2.5-VL answers the release's prompt greedily; a second pass over prompt + answer + the M context queries
gives the connector's ONE SAM2 sparse prompt token. The mask comes from that token alone (dense prompt =
no_mask_embed, single mask): the answer's box is reported, never needed, so an answer with no box still gives
a mask and the grounding says so. The pipeline around it is `pipelines/prompt_token.TokenPipeline`.
"""
from __future__ import annotations

import numpy as np

from reasonseg.core.model_text import clean_model_text, reason_of
from reasonseg.core.settings import LensSettings
from reasonseg.core.timing import Timer
from reasonseg.grounding.vlm.answer import parse_answer
from reasonseg.grounding.vlm.token_answer import TokenAnswer, load_token_model

# The release's prompts (src/open_r1/constants.py): what its checkpoints were trained to answer.
SYSTEM_PROMPT = "You are a helpful assistant. "
QUESTION = "Output the bounding box of the {question} in the image."
COT_QUESTION = ('Locate "{question}", report the bbox coordinates in JSON format.'
                "Compare the difference between objects and find the most closely matched one."
                "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
                "Output the one bbox inside the interested object in JSON format."
                "i.e., <think>thinking process here</think><answer>answer here</answer>")


class LensGrounder:
    """A LensModel + its processor on one device: frame + instruction -> TokenAnswer."""

    name = "lens"

    def __init__(self, settings: LensSettings) -> None:
        from reasonseg.models.lens import LensModel

        self.settings = settings
        self.device, self.processor, self.model = load_token_model(LensModel, settings, "lens",
                                                                   num_queries=settings.num_queries)
        self.endpoint = f"{settings.model} on {self.device}"

    def ground(self, image_rgb: np.ndarray, instruction: str, timer: Timer) -> TokenAnswer:
        """Raises LlmError when generation passes the deadline."""
        import torch

        from reasonseg.grounding.vlm.qwen_vl import generate, pixel_bounds

        s = self.settings
        question = question_for(instruction, s.chain_of_thought)
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        lo, hi = pixel_bounds(self.processor.image_processor)
        with timer.stage("generate"):
            g = generate(self.model.mllm, self.processor, image_rgb, messages, min_pixels=lo,
                         max_pixels=hi, max_new_tokens=s.max_new_tokens, timeout_s=s.timeout_s,
                         device=self.device)
        pad = self.processor.tokenizer.pad_token_id
        mask = (g.sequences != pad).long() if pad is not None else torch.ones_like(g.sequences)
        with torch.inference_mode():
            with timer.stage("second_pass"):
                states = self.model.query_states(g.sequences, mask, g.inputs["pixel_values"],
                                                 g.inputs["image_grid_thw"])
            with timer.stage("connector"):
                token = self.model.head(states)
        return token_answer(g.text, token[0].float().cpu().numpy(), g.sent_size, image_rgb.shape[:2])


def token_answer(text: str, token: np.ndarray, sent_size: tuple[int, int], frame_hw: tuple[int, int]) -> TokenAnswer:
    """The answer text + the prompt token -> TokenAnswer: the box the answer names, if any (never needed)."""
    fh, fw = frame_hw
    box, reasoning, note = None, "", ""
    try:
        parsed = parse_answer(text, sent_size=sent_size, frame_size=(fw, fh), max_instances=64)
        reasoning = parsed.reasoning
        box = parsed.objects[0].box if parsed.objects else None
        if box is None:
            note = "the answer named no box; mask from the context queries alone"
    except Exception as exc:  # MllmAnswerError, or any fault in handling the answer: the token still masks
        note = f"the answer named no box ({reason_of(exc)}); mask from the context queries alone"
    return TokenAnswer(clean_model_text(text), token, box, reasoning, note)


def question_for(instruction: str, chain_of_thought: bool) -> str:
    return (COT_QUESTION if chain_of_thought else QUESTION).format(question=instruction)


__all__ = ["LensGrounder", "question_for", "token_answer"]
