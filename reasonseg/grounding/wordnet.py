"""WordNet 3.0 nouns (Debian `wordnet-base`, put in the model cache at set-up): is a noun a kind of a label?

"eagle" is a kind of bird and "photographer" a kind of person: the label answers. "lemon", "butterfly",
"tripod" are nouns WordNet knows that no label is a hypernym of: the label set cannot name them, and an
honest answer is "not found" rather than the most similar label. Only the noun index and data files are
read (wndb(5WN) format: `offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptr... | gloss`, with `@`
/ `@i` pointers to (instance) hypernyms); the byte offsets index `data.noun` directly.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable

FILES = ("index.noun", "data.noun", "noun.exc")
NOUN_SENSES = 1   # the noun's most frequent sense: rarer ones make a monkey a child and a mug a face
LABEL_SENSES = 2  # a label's two most frequent senses: "book" is both the work and the bound pages


class WordNet:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._index: dict[str, tuple[int, ...]] = {}
        self._exc: dict[str, str] = {}
        for line in (self.dir / "index.noun").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue  # licence header
            f = line.split()
            n_ptr = int(f[3])
            offsets = f[6 + n_ptr:]  # lemma pos synset_cnt p_cnt [ptrs] sense_cnt tagsense_cnt offsets...
            self._index[f[0]] = tuple(int(o) for o in offsets)
        for line in (self.dir / "noun.exc").read_text(encoding="latin-1").splitlines():
            f = line.split()
            if len(f) >= 2:
                self._exc[f[0]] = f[1]
        self._data = (self.dir / "data.noun").open("rb")
        self._lock = threading.Lock()
        self._hyper: dict[int, tuple[int, ...]] = {}

    def senses(self, noun: str) -> tuple[int, ...]:
        """Synset offsets of a noun, most frequent first. A plural is read as its singular first:
        "instructions" is the plural of an instruction before it is a manual."""
        key = "_".join(noun.lower().split())
        for cand in (self._exc.get(key, ""), key[:-1] if key.endswith("s") else "",
                     key[:-2] if key.endswith("es") else "", key):
            if cand and cand in self._index:
                return self._index[cand]
        return ()

    def _hypernyms(self, offset: int) -> tuple[int, ...]:
        if offset not in self._hyper:
            with self._lock:
                self._data.seek(offset)
                line = self._data.readline().decode("latin-1")
            f = line.split(" | ")[0].split()
            w_cnt = int(f[3], 16)
            i = 4 + 2 * w_cnt
            n_ptr = int(f[i])
            ptrs = f[i + 1: i + 1 + 4 * n_ptr]
            self._hyper[offset] = tuple(int(ptrs[k + 1]) for k in range(0, len(ptrs), 4) if ptrs[k] in ("@", "@i"))
        return self._hyper[offset]

    def synonyms(self, noun: str) -> tuple[str, ...]:
        """Other words of the noun's most frequent sense ("car" -> automobile, auto, machine, motorcar)."""
        out: list[str] = []
        for offset in self.senses(noun)[:NOUN_SENSES]:
            with self._lock:
                self._data.seek(offset)
                f = self._data.readline().decode("latin-1").split(" | ")[0].split()
            words = [f[4 + 2 * k].replace("_", " ").lower() for k in range(int(f[3], 16))]
            out += [w for w in words if w != noun.lower() and "(" not in w]
        return tuple(dict.fromkeys(out))

    def ancestors(self, offset: int) -> set[int]:
        """The synset and everything above it."""
        seen, stack = {offset}, [offset]
        while stack:
            for h in self._hypernyms(stack.pop()):
                if h not in seen:
                    seen.add(h)
                    stack.append(h)
        return seen

    def kind_of(self, noun: str, labels: Iterable[str]) -> str | None:
        """The label the noun is a kind of (in its most frequent senses), or None."""
        label_senses = {label: set(self.senses(label)[:LABEL_SENSES]) for label in labels}
        for sense in self.senses(noun)[:NOUN_SENSES]:
            up = self.ancestors(sense)
            hits = [label for label, s in label_senses.items() if s & up]
            if hits:  # the most specific label: the one with most ancestors of its own
                return max(hits, key=lambda label: max(len(self.ancestors(o)) for o in label_senses[label]))
        return None

    def close(self) -> None:
        self._data.close()
