"""L2L's weak / strong views (App. A.2, Tables 8-9; FixMatch / RESMatch): images and expressions together.

* weak: resize + random horizontal flip; a flip swaps the directional words of the expression
  (left <-> right) so the text still describes the flipped image. Masks and priors flip with the image.
* strong image: on top of the weak view, `n_ops` operators drawn from Table 8's intensity-only pool
  (identity, autocontrast, equalize, Gaussian blur, contrast, sharpness, colour, brightness, posterize):
  appearance changes, geometry never, so the weak view's pseudo-label stays aligned.
* strong text: EDA (Wei & Zou 2019): synonym replacement, synonym insertion (WordNet nouns), random swap,
  random deletion, α of the words each, 9 candidates per expression; then semantic filtering keeps the
  candidates whose sentence embedding is close enough to the original's — a threshold, not the top-k,
  so the kept set stays diverse (App. A.2).
ASSUMPTIONS (Tables 8-9's ranges were lost): factors in [0.5, 1.5], blur σ in [0.1, 2.0], posterize 4-8
bits, n_ops = 2 (RandAugment's usual), α = 0.1 (EDA's default), similarity ≥ 0.8.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

_DIRECTIONS = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
_DIRECTION_RE = re.compile(r"\b(" + "|".join(_DIRECTIONS) + r")\b", re.IGNORECASE)
STOP_WORDS = frozenset("the a an of on in at to is and or with from by for that which who".split())


def swap_directions(text: str) -> str:
    """left <-> right (and leftmost <-> rightmost), keeping capitalisation of the first letter."""
    def swap(m: re.Match) -> str:
        word = _DIRECTIONS[m.group(0).lower()]
        return word.capitalize() if m.group(0)[0].isupper() else word
    return _DIRECTION_RE.sub(swap, text)


def weak_view(image: np.ndarray, expression: str, size: int, rng: np.random.Generator,
              *maps: np.ndarray) -> tuple[np.ndarray, str, bool, list[np.ndarray]]:
    """(image, expression, flipped, maps): resize to size x size, flip with p = 0.5. `maps` (masks, priors)
    follow the image (nearest for integer maps, linear for float ones)."""
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    out = [cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST if m.dtype.kind in "iub"
                      else cv2.INTER_LINEAR) for m in maps]
    flipped = bool(rng.random() < 0.5)
    if flipped:
        image, out = image[:, ::-1], [m[:, ::-1] for m in out]
        expression = swap_directions(expression)
    return np.ascontiguousarray(image), expression, flipped, [np.ascontiguousarray(m) for m in out]


def _factor(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.5, 1.5))


STRONG_OPS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "identity": lambda im, rng: im,
    "autocontrast": lambda im, rng: ImageOps.autocontrast(im),
    "equalize": lambda im, rng: ImageOps.equalize(im),
    "blur": lambda im, rng: im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.1, 2.0)))),
    "contrast": lambda im, rng: ImageEnhance.Contrast(im).enhance(_factor(rng)),
    "sharpness": lambda im, rng: ImageEnhance.Sharpness(im).enhance(_factor(rng)),
    "color": lambda im, rng: ImageEnhance.Color(im).enhance(_factor(rng)),
    "brightness": lambda im, rng: ImageEnhance.Brightness(im).enhance(_factor(rng)),
    "posterize": lambda im, rng: ImageOps.posterize(im, int(rng.integers(4, 9))),
}


def strong_image(image: np.ndarray, rng: np.random.Generator, n_ops: int = 2) -> np.ndarray:
    """Table 8: `n_ops` intensity operators from the pool, applied in order; same shape, same geometry."""
    im = Image.fromarray(np.ascontiguousarray(image))
    for name in rng.choice(list(STRONG_OPS), size=n_ops, replace=False):
        im = STRONG_OPS[str(name)](im, rng)
    return np.asarray(im, np.uint8)


def eda(expression: str, rng: np.random.Generator, synonyms: Callable[[str], Sequence[str]], alpha: float = 0.1,
        n_aug: int = 9) -> list[str]:
    """Table 9: `n_aug` variants, each by one EDA operation on max(1, α·n) words. Directional words are
    never replaced or deleted: they carry the referent."""
    words = expression.split()
    n = max(1, int(alpha * len(words)))
    content = [i for i, w in enumerate(words) if w.lower() not in STOP_WORDS and w.lower() not in _DIRECTIONS]
    out = []
    for k in range(n_aug):
        w = list(words)
        op = ("replace", "insert", "swap", "delete")[k % 4]
        if op in ("replace", "insert"):
            for i in rng.permutation(content)[:n] if content else []:
                syn = synonyms(words[i])
                if syn:
                    choice = str(syn[int(rng.integers(len(syn)))])
                    if op == "replace":
                        w[i] = choice
                    else:
                        w.insert(int(rng.integers(len(w) + 1)), choice)
        elif op == "swap" and len(w) > 1:
            for _ in range(n):
                i, j = rng.choice(len(w), 2, replace=False)
                w[i], w[j] = w[j], w[i]
        elif op == "delete" and len(w) > 1:
            keep = [i for i in range(len(w)) if i not in content or rng.random() >= alpha]
            w = [w[i] for i in keep] or [w[int(rng.integers(len(w)))]]
        out.append(" ".join(w))
    return out


def filter_by_similarity(expression: str, candidates: Sequence[str], embed: Callable[[list[str]], np.ndarray],
                         min_similarity: float = 0.8) -> list[str]:
    """Candidates whose embedding's cosine similarity to the original's is ≥ `min_similarity` (order kept)."""
    if not candidates:
        return []
    e = np.asarray(embed([expression, *candidates]), np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)
    sims = e[1:] @ e[0]
    return [c for c, s in zip(candidates, sims) if s >= min_similarity]


__all__ = ["swap_directions", "weak_view", "strong_image", "eda", "filter_by_similarity", "STRONG_OPS"]
