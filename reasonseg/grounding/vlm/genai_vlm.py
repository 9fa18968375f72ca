"""`mllm.backend: onnxruntime-genai`: Qwen2.5-VL from an ORT GenAI package (`reasonseg export qwen-vl`), CPU or
CUDA execution provider, no PyTorch on the frame path.

The prompt and the answer parser are the other backends'; the frame is resized by the same smart_resize (any size:
the vision graph is dynamic) and the answer's pixels map back exactly. `mllm.timeout_s` is checked between tokens.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reasonseg.core.errors import ConfigError
from reasonseg.core.settings import MllmSettings
from reasonseg.grounding.llm.client import LlmError
from reasonseg.grounding.vlm import genai_package as pkg
from reasonseg.grounding.vlm.answer import MllmAnswer, build_prompt, parse_answer


@dataclass(frozen=True)
class GenAiGeneration:
    tokens: list[int]            # generated ids, end-of-sequence included when the model stopped itself
    sent_size: tuple[int, int]   # (width, height) of the image the model saw
    seconds: float
    first_token_s: float         # time to the first token (vision + prefill)
    input_ids: np.ndarray        # [1, L] int32 prompt ids, the image pad repeated once per image feature
    prompt_embeds: np.ndarray | None  # [1, L, D] the prompt's embeddings, image rows filled (keep_prompt_embeds)


def execution_device(device: str) -> tuple[str, int]:
    """`mllm.device` -> (provider, device id) for the installed onnxruntime-genai (`-cuda` wheel for CUDA)."""
    import onnxruntime_genai as og

    if device == "auto":
        return ("cuda", 0) if og.is_cuda_available() else ("cpu", 0)
    if device.startswith("cuda"):
        if not og.is_cuda_available():
            raise ConfigError(f"mllm.device={device} but this onnxruntime-genai has no CUDA (pip install "
                              "onnxruntime-genai-cuda on an NVIDIA machine)")
        return "cuda", int(device.partition(":")[2] or 0)
    return "cpu", 0


class GenAiPackage:
    """One loaded package: tokenizer, prompt template, image processor and the og.Model."""

    def __init__(self, folder: str | Path, *, device: str = "auto", verify: bool = True) -> None:
        import onnxruntime_genai as og

        self.folder = Path(folder).expanduser()
        if verify:
            pkg.verify_package(self.folder)
        provider, index = execution_device(device)
        config = og.Config(str(self.folder))
        config.clear_providers()
        if provider == "cuda":
            config.append_provider("cuda")
            config.set_provider_option("cuda", "device_id", str(index))
        else:  # ORT GenAI's sessions would run one thread each: half the speed of this 2-core machine
            threads = {"intra_op_num_threads": len(os.sched_getaffinity(0)), "inter_op_num_threads": 1}
            config.overlay(json.dumps({"model": {part: {"session_options": threads}
                                                 for part in ("decoder", "vision", "embedding")}}))
        self.device = provider if provider == "cpu" else f"cuda:{index}"
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self.genai = genai = json.loads((self.folder / pkg.CONFIG).read_text())["model"]
        self.image_token_id = int(genai["image_token_id"])
        self.context_length = int(genai["context_length"])
        eos = genai.get("eos_token_id", [])
        self.eos = set(eos if isinstance(eos, list) else [eos])
        prompt = json.loads((self.folder / pkg.PROMPT).read_text())
        self.prefix, self.suffix = prompt["prefix"], prompt["suffix"]
        self.processor = pkg.ImageProcessor.from_file(self.folder / pkg.PROCESSOR)

    def input_ids(self, text: str, num_image_tokens: int) -> np.ndarray:
        """prefix + text + suffix as ids, the one image pad token repeated once per image feature. The text is
        tokenized alone and may not name a special token ("<|image_pad|>" in an instruction is text, not an image)."""
        text = text.replace("<|", "< |")
        ids = [int(t) for part in (self.prefix, text, self.suffix) for t in self.tokenizer.encode(part)]
        k = ids.index(self.image_token_id)
        ids[k:k + 1] = [self.image_token_id] * num_image_tokens
        return np.array([ids], dtype=np.int32)

    def generate(self, image_rgb: np.ndarray, text: str, *, max_new_tokens: int, timeout_s: float = 600.0,
                 min_pixels: int = 0, max_pixels: int = 1 << 62, keep_prompt_embeds: bool = False) -> GenAiGeneration:
        """Greedy answer to one frame + text; LlmError when `timeout_s` passes between tokens. `keep_prompt_embeds`:
        also the prompt's embeddings as the first step fed them to the decoder (LENS's second pass reuses them
        instead of running the vision encoder again)."""
        import onnxruntime_genai as og
        from PIL import Image

        t0 = time.monotonic()
        fh, fw = image_rgb.shape[:2]
        h, w = self.processor.sent_size(fh, fw, min_pixels, max_pixels)
        sent = np.asarray(Image.fromarray(np.ascontiguousarray(image_rgb)).resize((w, h), Image.BICUBIC))
        pixel_values, grid = self.processor.patches(sent)
        n_img = int(grid.prod()) // (self.processor.merge ** 2)
        ids = self.input_ids(text, n_img)
        if ids.shape[1] >= self.context_length:
            raise LlmError(f"prompt of {ids.shape[1]} tokens (image {w}x{h}) does not fit the model's context of "
                           f"{self.context_length}; lower mllm.max_pixels")
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=min(ids.shape[1] + max_new_tokens, self.context_length), do_sample=False)
        gen = og.Generator(self.model, params)
        inputs = og.NamedTensors()
        inputs["input_ids"] = ids
        inputs["pixel_values"] = pixel_values
        inputs["image_grid_thw"] = grid
        inputs["num_image_tokens"] = np.array([n_img], dtype=np.int64)  # without it the vision graph is skipped
        gen.set_inputs(inputs)
        first, prompt_embeds = None, None
        while not gen.is_done():
            gen.generate_next_token()
            if first is None:
                first = time.monotonic() - t0
                if keep_prompt_embeds:  # later steps overwrite it with one token's
                    prompt_embeds = np.array(gen.get_output("inputs_embeds"), copy=True)
            if time.monotonic() - t0 > timeout_s:
                done = len(gen.get_sequence(0)) - ids.shape[1]
                raise LlmError(f"MLLM timed out ({timeout_s}s, {done} tokens)")
        tokens = [int(t) for t in gen.get_sequence(0)[ids.shape[1]:]]
        return GenAiGeneration(tokens, (w, h), time.monotonic() - t0, first or 0.0, ids, prompt_embeds)

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(np.array([t for t in tokens if t not in self.eos], dtype=np.int32))


class GenAiVlm:
    name = "onnxruntime-genai"

    def __init__(self, settings: MllmSettings) -> None:
        self.settings = settings
        self.package = GenAiPackage(settings.model, device=settings.device)
        self.endpoint = f"{settings.model} on {self.package.device} (ORT GenAI)"
        self.stats = {"tokens": 0, "seconds": 0.0, "first_token_s": 0.0}

    def ground(self, image_rgb: np.ndarray, instruction: str) -> MllmAnswer:
        """Raises LlmError (deadline) or MllmAnswerError (answer)."""
        s = self.settings
        g = self.package.generate(image_rgb, build_prompt(instruction, chain_of_thought=s.chain_of_thought),
                                  max_new_tokens=s.max_new_tokens, timeout_s=s.timeout_s,
                                  min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        self.stats = {"tokens": len(g.tokens), "seconds": g.seconds, "first_token_s": g.first_token_s}
        fh, fw = image_rgb.shape[:2]
        return parse_answer(self.package.decode(g.tokens), sent_size=g.sent_size, frame_size=(fw, fh),
                            max_instances=s.max_instances)
