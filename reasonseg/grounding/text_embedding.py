"""Sentence embeddings (all-MiniLM-L6-v2) for mapping noun phrases to class labels."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from reasonseg.core.errors import ModelCacheError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time


class TextEmbedder:
    """Mean-pooled, L2-normalised MiniLM embeddings (the sentence-transformers recipe)."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in node logs

        if not (model_dir / "config.json").is_file():
            raise ModelCacheError(f"text model missing at {model_dir}: run the set-up step (scripts/setup.sh)")
        try:
            self._tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ModelCacheError(f"text model at {model_dir} cannot be loaded: {str(exc).splitlines()[0]}") from None
        self._torch = torch
        self.embed_one = lru_cache(maxsize=4096)(self._embed_one)

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def _embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def similarity(self, a: str, b: str) -> float:
        return float(self.embed_one(a) @ self.embed_one(b))
