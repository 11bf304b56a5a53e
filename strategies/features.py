"""Query-text features for the learned strategies: numpy only, no model weights, no network.

A query becomes one dense vector: tf-idf weighted hashed word uni/bi-grams (+ optional character
n-grams), L2-normalised, followed by a few standardised hand-made features (question word,
length, digits, ...). Hashing uses crc32 because Python's `hash` is salted per process and the
vector must be the same in training, in an artifact and in the gateway.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
QUESTION_WORDS = ("who", "when", "what", "where", "which", "why", "how")
_AUX = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "will", "has", "have"})
SUPERLATIVES = frozenset({"first", "last", "most", "largest", "biggest", "highest", "longest", "oldest", "new", "newest", "latest"})
HAND_FEATURES = (
    *(f"q_{w}" for w in QUESTION_WORDS),
    "q_how_many",
    "q_yes_no",
    "q_other",
    "log_chars",
    "n_words",
    "has_digit",
    "has_year",
    "superlative",
    "capitalised",
    "punctuation",
)


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def hand_features(text: str) -> list[float]:
    """Cheap cues that say what kind of answer is wanted (a date, a person, a count)."""
    toks = tokens(text)
    first = toks[0] if toks else ""
    second = toks[1] if len(toks) > 1 else ""
    how_many = first == "how" and second in ("many", "much")
    qw = [1.0 if first == w and not (w == "how" and how_many) else 0.0 for w in QUESTION_WORDS]
    yes_no = 1.0 if first in _AUX else 0.0
    other = 1.0 if not any(qw) and not how_many and not yes_no else 0.0
    words = text.split()
    return [
        *qw,
        1.0 if how_many else 0.0,
        yes_no,
        other,
        math.log1p(len(text)),
        float(len(toks)),
        1.0 if any(c.isdigit() for c in text) else 0.0,
        1.0 if _YEAR.search(text) else 0.0,
        1.0 if SUPERLATIVES.intersection(toks) else 0.0,
        float(sum(1 for w in words[1:] if w[:1].isupper())),
        float(sum(1 for c in text if c in "()\"':,;")),
    ]


@dataclass
class TextFeaturizer:
    """Fitted on training queries (idf, hand-feature scaling); `transform` is pure afterwards."""

    dim: int = 2048  # hashed buckets
    char_ngrams: tuple[int, ...] = ()  # e.g. (3, 4, 5); empty = words only
    word_bigrams: bool = True
    hand_weight: float = 0.1  # scale of the standardised hand features relative to the text part
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hand_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hand_std: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def size(self) -> int:
        return self.dim + len(HAND_FEATURES)

    def _grams(self, text: str) -> Iterable[str]:
        toks = tokens(text)
        yield from toks
        if self.word_bigrams:
            for a, b in zip(toks, toks[1:]):
                yield f"{a} {b}"
        for n in self.char_ngrams:
            for tok in toks:
                padded = f"<{tok}>"
                for i in range(len(padded) - n + 1):
                    yield "#" + padded[i : i + n]

    def _counts(self, text: str) -> dict[int, float]:
        counts: dict[int, float] = {}
        for gram in self._grams(text):
            h = zlib.crc32(gram.encode()) % self.dim
            counts[h] = counts.get(h, 0.0) + 1.0
        return counts

    def fit(self, queries: Sequence[str]) -> "TextFeaturizer":
        df = np.zeros(self.dim)
        for q in queries:
            for h in self._counts(q):
                df[h] += 1.0
        self.idf = np.log((1.0 + len(queries)) / (1.0 + df)) + 1.0
        hand = np.array([hand_features(q) for q in queries], dtype=float).reshape(len(queries), -1)
        self.hand_mean = hand.mean(axis=0) if len(queries) else np.zeros(len(HAND_FEATURES))
        std = hand.std(axis=0) if len(queries) else np.ones(len(HAND_FEATURES))
        self.hand_std = np.where(std < 1e-6, 1.0, std)  # a feature constant in training must not blow up
        return self

    def cold(self) -> "TextFeaturizer":
        """Usable without training data (online learners): unit idf, hand features unscaled."""
        self.idf = np.ones(self.dim)
        self.hand_mean = np.zeros(len(HAND_FEATURES))
        self.hand_std = np.ones(len(HAND_FEATURES))
        return self

    def transform(self, query: str) -> np.ndarray:
        if self.idf.size == 0:
            raise RuntimeError("TextFeaturizer.transform called before fit/from_state")
        vec = np.zeros(self.size)
        counts = self._counts(query)
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            vals = np.fromiter(counts.values(), dtype=float, count=len(counts)) * self.idf[idx]
            vec[idx] = vals / (np.linalg.norm(vals) or 1.0)
        vec[self.dim :] = (np.asarray(hand_features(query)) - self.hand_mean) / self.hand_std * self.hand_weight
        return vec

    def transform_many(self, queries: Sequence[str]) -> np.ndarray:
        return np.array([self.transform(q) for q in queries]).reshape(len(queries), self.size)

    def state(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "char_ngrams": list(self.char_ngrams),
            "word_bigrams": self.word_bigrams,
            "hand_weight": self.hand_weight,
            "idf": self.idf.tolist(),
            "hand_mean": self.hand_mean.tolist(),
            "hand_std": self.hand_std.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "TextFeaturizer":
        return cls(
            dim=int(state["dim"]),
            char_ngrams=tuple(int(n) for n in state["char_ngrams"]),
            word_bigrams=bool(state["word_bigrams"]),
            hand_weight=float(state["hand_weight"]),
            idf=np.asarray(state["idf"], dtype=float),
            hand_mean=np.asarray(state["hand_mean"], dtype=float),
            hand_std=np.asarray(state["hand_std"], dtype=float),
        )
