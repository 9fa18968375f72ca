"""Local resolver: noun phrase -> allowed class label(s), no LLM needed.

Order of evidence: a synonym table for words detectors never use as labels
("pedestrian" -> person), an exact label match, a category, then WordNet (when
the set-up put it in the cache): a noun that is a kind of a label maps to it
("eagle" -> bird), a noun WordNet knows that no label covers is outside the label
set ("lemon": not found, nearest orange). Only for words WordNet does not know,
MiniLM similarity of the noun phrase (not the whole sentence: spatial words drown
the noun) to each label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from reasonseg.grounding.text_embedding import TextEmbedder
from reasonseg.grounding.wordnet import WordNet

# Words for which embedding similarity is unreliable or the label is non-obvious.
SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("pedestrian", "pedestrians", "people", "man", "men", "woman", "women", "child", "children",
                     "kid", "kids", "boy", "girl", "guy", "lady", "human", "humans", "cyclist", "rider", "driver",
                     "biker", "jogger", "runner", "worker", "officer", "policeman", "player", "someone", "somebody",
                     "adult", "baby", "toddler", "passenger", "walker", "persons", "individual", "crowd"), "person"),
    **dict.fromkeys(("bike", "bikes", "cycle"), "bicycle"),
    **dict.fromkeys(("motorbike", "motorbikes", "scooter", "moped"), "motorcycle"),
    **dict.fromkeys(("lorry", "pickup", "van", "semi", "trailer"), "truck"),
    **dict.fromkeys(("automobile", "sedan", "suv", "taxi", "cab", "jeep", "hatchback"), "car"),
    **dict.fromkeys(("coach", "minibus"), "bus"),
    **dict.fromkeys(("tram", "locomotive", "subway"), "train"),
    **dict.fromkeys(("puppy", "puppies", "hound", "doggy", "pup"), "dog"),
    **dict.fromkeys(("kitten", "kitty", "kittens"), "cat"),
    **dict.fromkeys(("pony", "foal", "stallion", "mare", "ponies"), "horse"),
    **dict.fromkeys(("lamb", "lambs", "ram"), "sheep"),
    **dict.fromkeys(("calf", "bull", "cattle", "ox"), "cow"),
    **dict.fromkeys(("plane", "airplane", "aircraft", "jet"), "airplane"),
    **dict.fromkeys(("ship", "yacht", "canoe", "kayak"), "boat"),
    **dict.fromkeys(("stoplight", "signal", "traffic signal"), "traffic light"),
    **dict.fromkeys(("hydrant",), "fire hydrant"),
    **dict.fromkeys(("phone", "smartphone", "mobile", "cellphone", "mobile phone"), "cell phone"),
    **dict.fromkeys(("table", "desk"), "dining table"),
    **dict.fromkeys(("sofa",), "couch"),
    **dict.fromkeys(("plant", "flower", "flowers"), "potted plant"),
    **dict.fromkeys(("ball", "football", "soccer ball", "basketball", "volleyball", "tennis ball", "beach ball",
                     "rugby ball"), "sports ball"),
    **dict.fromkeys(("bag", "purse"), "handbag"),
    **dict.fromkeys(("tv", "television", "monitor", "screen"), "tv"),
    **dict.fromkeys(("mug", "mugs", "teacup", "coffee cup", "beaker"), "cup"),
}

# Category words name a set of labels; the instance rules then choose among them.
CATEGORIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("animal", "animals", "creature", "pet", "pets"),
                    ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")),
    **dict.fromkeys(("vehicle", "vehicles", "traffic"), ("bicycle", "car", "motorcycle", "bus", "train", "truck")),
    **dict.fromkeys(("motor vehicle", "motor vehicles"), ("car", "motorcycle", "bus", "truck")),
    **dict.fromkeys(("livestock", "farm animal", "farm animals"), ("horse", "sheep", "cow")),
    # a drinking glass is COCO's wine glass or its cup ("glasses" alone is more often spectacles: left out)
    **dict.fromkeys(("glass", "drinking glass", "tumbler"), ("wine glass", "cup")),
}


MAX_NOUN_PHRASE_WORDS = 3  # longer "phrases" are sentences (or injected text): WordNet reads nouns, not those


@dataclass(frozen=True)
class LabelMatch:
    label: str
    similarity: float
    how: str  # synonym, exact, category, wordnet, embedding; "outside": the nearest label of a noun it is not


class LabelResolver:
    def __init__(self, labels: Sequence[str], embedder: TextEmbedder, *, min_similarity: float = 0.4,
                 wordnet: WordNet | None = None, accept_near_classes: bool = False) -> None:
        self.labels = tuple(labels)
        self._embedder = embedder
        self.min_similarity = min_similarity
        self.wordnet = wordnet
        self.accept_near_classes = accept_near_classes
        self._label_vecs = embedder.embed(list(self.labels))
        self._label_sim = self._label_vecs @ self._label_vecs.T

    def resolve(self, phrase: str, *, top_k: int = 3) -> list[LabelMatch]:
        """Ranked labels for a noun phrase; empty when nothing is similar enough."""
        phrase = phrase.strip().lower()
        if not phrase:
            return []
        words = phrase.split()
        for n in range(len(words), 0, -1):          # longest trailing span first: "traffic light", "light"
            span = " ".join(words[-n:])
            for cand in (span, _singular(span)):
                if cand in self.labels:
                    return [LabelMatch(cand, 1.0, "exact")]
                if cand in SYNONYMS and SYNONYMS[cand] in self.labels:
                    return [LabelMatch(SYNONYMS[cand], 1.0, "synonym")]
                if span in CATEGORIES:
                    return [LabelMatch(label, 1.0, "category") for label in CATEGORIES[span] if label in self.labels]
        known = None
        if self.wordnet is not None and len(words) <= MAX_NOUN_PHRASE_WORDS:  # a noun phrase, not a sentence
            known = next((c for c in (phrase, words[-1], _singular(words[-1])) if self.wordnet.senses(c)), None)
            if known is not None:
                label = self.wordnet.kind_of(known, self.labels)
                if label is not None:
                    return [LabelMatch(label, 1.0, "wordnet")]
        # Embedding: score both the whole phrase and its head noun, keep the better.
        vecs = self._embedder.embed([phrase, words[-1]])
        sims = np.max(vecs @ self._label_vecs.T, axis=0)
        order = np.argsort(-sims)[:top_k]
        if known is not None and not self.accept_near_classes:  # named only to say what is nearest
            return [LabelMatch(self.labels[i], float(sims[i]), "outside") for i in order]
        return [LabelMatch(self.labels[i], float(sims[i]), "embedding") for i in order if sims[i] >= self.min_similarity]

    def label_similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two allowed labels (1.0 for the same label)."""
        if a == b:
            return 1.0
        try:
            return float(self._label_sim[self.labels.index(a), self.labels.index(b)])
        except ValueError:
            return 0.0

    def nearest_label(self, phrase: str) -> LabelMatch | None:
        """Post-refinement fallback: map a free-form detector phrase to one allowed label."""
        matches = self.resolve(phrase, top_k=1)
        return matches[0] if matches else None


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "buses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word
