"""`lens.backend: onnx`: LENS end to end from the folder `reasonseg export lens` writes, no PyTorch on the frame path.

The answer comes from the checkpoint's Qwen2.5-VL as an ORT GenAI package (`mllm/fp32/`, the release's prompt);
the second pass (prompt + answer + the M context queries -> the SAM2 prompt token) is `lens_second_pass.onnx` fed
the prompt's embeddings as the package's decoder got them (image rows filled: the vision encoder runs once) and
the answer's, from the package's embedding graph; the token is decoded, and tracked, by the checkpoint's SAM2
graphs (`sam2/`, onnxruntime). Same prompt, same attention mask (the pad token masked), same answer handling as
the PyTorch grounder (`lens.py`), so the masks agree (tests/test_lens_onnx.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonseg.core.errors import CheckpointError, ModelCacheError
from reasonseg.core.graph_manifest import read_manifest
from reasonseg.core.settings import LensSettings
from reasonseg.core.timing import Timer
from reasonseg.grounding.vlm import genai_package as pkg
from reasonseg.grounding.vlm.lens import question_for, token_answer
from reasonseg.grounding.vlm.token_answer import TokenAnswer

MLLM = "mllm"                            # ORT GenAI packages, one folder per precision
PACKAGE_PRECISION = "fp32"               # the one whose tokens are checked identical to transformers at export
SECOND_PASS = "lens_second_pass.onnx"    # inputs_embeds [1, L, D] + attention_mask [1, L] -> prompt_token [1, 1, C]
SAM2 = "sam2"                            # `reasonseg export sam2` of the checkpoint's SAM2
GRAPH_FILES = (f"{MLLM}/{PACKAGE_PRECISION}/{pkg.CONFIG}", SECOND_PASS, f"{SAM2}/sam2_encoder.onnx",
               f"{SAM2}/sam2_decoder.onnx", f"{SAM2}/sam2_track_start.onnx", f"{SAM2}/sam2_track_step.onnx")
EXPORT_HINT = "reasonseg export lens --checkpoint LENS_CKPT --out DIR"


class LensOnnxGrounder:
    """frame + instruction -> TokenAnswer, from ONNX graphs only."""

    name = "lens"

    def __init__(self, settings: LensSettings) -> None:
        from reasonseg.backends.onnxruntime_graph import open_session
        from reasonseg.grounding.vlm.genai_vlm import GenAiPackage

        self.settings = settings
        folder = Path(settings.model).expanduser()
        second = folder / SECOND_PASS
        if not second.is_file():
            raise ModelCacheError(f"{folder}: no {SECOND_PASS}; lens.backend=onnx takes the folder `{EXPORT_HINT}` "
                                  "writes")
        record = read_manifest(second)
        if record is None:
            raise CheckpointError(f"{second} has no manifest or changed after export (stale); {EXPORT_HINT}")
        self.num_queries = int(record["num_queries"])
        package = folder / MLLM / PACKAGE_PRECISION
        self.package = GenAiPackage(package, device=settings.device)
        provider = self.package.device
        self.embedding = open_session(package / pkg.EMBEDDING, "LENS embedding graph", device=provider)
        self.second_pass = open_session(second, "LENS second pass", device=provider)
        pad = self.package.genai.get("pad_token_id")
        self.pad = int(pad) if isinstance(pad, int) else None
        self.device, self.sam2_folder = provider, folder / SAM2
        self.endpoint = f"{folder} on {provider} (ONNX)"

    def ground(self, image_rgb: np.ndarray, instruction: str, timer: Timer) -> TokenAnswer:
        """Raises LlmError when generation passes the deadline."""
        s = self.settings
        with timer.stage("generate"):
            g = self.package.generate(image_rgb, question_for(instruction, s.chain_of_thought),
                                      max_new_tokens=s.max_new_tokens, timeout_s=s.timeout_s, keep_prompt_embeds=True)
        with timer.stage("second_pass"):
            sequence = np.concatenate([g.input_ids[0], np.asarray(g.tokens, np.int32)])[None].astype(np.int64)
            mask = (sequence != self.pad) if self.pad is not None else np.ones_like(sequence, bool)
            answer = sequence[:, g.input_ids.shape[1]:]  # text only: no image features
            no_image = np.zeros((0, g.prompt_embeds.shape[-1]), np.float32)
            (answer_embeds,) = self.embedding.run(None, {"input_ids": answer, "image_features": no_image})
            embeds = np.concatenate([g.prompt_embeds, answer_embeds], axis=1)
            (token,) = self.second_pass.run(None, {"inputs_embeds": embeds.astype(np.float32),
                                                   "attention_mask": mask.astype(np.int64)})
        return token_answer(self.package.decode(g.tokens), token[0], g.sent_size, image_rgb.shape[:2])
