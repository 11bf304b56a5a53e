"""Query-text features for the learned strategies: numpy only, no model weights, no network.

A query becomes one dense vector: tf-idf weighted hashed word uni/bi-grams (+ optional character
n-grams), L2-normalised, followed by a few standardised hand-made features (question word,
length, digits, ...) and, with `task_cues`, markers of the task family (code, maths, multiple
choice, logic puzzles, reading passages). Hashing uses crc32 because Python's `hash` is salted per process and the
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


# Task-family markers: which kind of model answers well depends far more on these than on
# the topic words (mixed-domain traffic: puzzles, maths, code, knowledge, reading).
_CODE = re.compile(r"```|\bdef |\breturn\b|\bimport |\bclass |#include|\bfunction\b|=>|\bprint\(|[{};]\s*$|\bpython\b|\bcode\b|\bprogram\b", re.M | re.I)
_MATH = re.compile(r"[=+*/^<>]|\\frac|\\sqrt|\$|\b(?:solve|calculate|compute|sum|product|probability|equation|percent|integer|remainder|total)\b", re.I)
_CHOICE = re.compile(r"(?:^|\s)\(?[A-E][\.\)]\s|\boptions?\s*:|\banswer choices\b|\bchoose\b", re.M | re.I)
_PUZZLE = re.compile(r"\b(?:clue|clues|house|houses|true or false|statements?|deduce|puzzle|lies|tells the truth)\b", re.I)
_PASSAGE = re.compile(r"\b(?:passage|context|article|paragraph|according to)\b", re.I)
TASK_FEATURES = (
    "code_marks",
    "math_marks",
    "choice_marks",
    "puzzle_marks",
    "passage_marks",
    "digit_share",
    "log_lines",
    "log_words",
    "qa_prefix",
    "question_mark",
)


def task_features(text: str) -> list[float]:
    """Cues of the task family: counts are log-scaled so one long prompt does not dominate."""
    n = max(len(text), 1)
    return [
        math.log1p(len(_CODE.findall(text))),
        math.log1p(len(_MATH.findall(text))),
        math.log1p(len(_CHOICE.findall(text))),
        math.log1p(len(_PUZZLE.findall(text))),
        math.log1p(len(_PASSAGE.findall(text))),
        sum(1 for c in text if c.isdigit()) / n,
        math.log1p(text.count("\n")),
        math.log1p(len(text.split())),
        1.0 if text.lstrip().startswith(("Q:", "Question:")) else 0.0,
        1.0 if "?" in text else 0.0,
    ]


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
    task_cues: bool = False  # append TASK_FEATURES to the hand features
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hand_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hand_std: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_hand(self) -> int:
        return len(HAND_FEATURES) + (len(TASK_FEATURES) if self.task_cues else 0)

    @property
    def size(self) -> int:
        return self.dim + self.n_hand

    def hand(self, text: str) -> list[float]:
        return hand_features(text) + (task_features(text) if self.task_cues else [])

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
        hand = np.array([self.hand(q) for q in queries], dtype=float).reshape(len(queries), -1)
        return self._fit_hand(hand)

    def _fit_hand(self, hand: np.ndarray) -> "TextFeaturizer":
        self.hand_mean = hand.mean(axis=0) if len(hand) else np.zeros(self.n_hand)
        std = hand.std(axis=0) if len(hand) else np.ones(self.n_hand)
        self.hand_std = np.where(std < 1e-6, 1.0, std)  # a feature constant in training must not blow up
        return self

    # -- sparse path, for training on thousands of rows -------------------------------------
    def raw(self, queries: Sequence[str]) -> "RawFeatures":
        """What does not depend on training data (hashed counts, hand features): computed once
        per data set, then `fit_raw` / `transform_raw` per fold, so folds stay honest cheaply."""
        from scipy import sparse

        indptr, indices, data = [0], [], []
        for q in queries:
            counts = self._counts(q)
            indices.extend(counts.keys())
            data.extend(counts.values())
            indptr.append(len(indices))
        counts_m = sparse.csr_matrix((np.asarray(data, dtype=float), np.asarray(indices, dtype=np.int64), np.asarray(indptr)), shape=(len(queries), self.dim))
        hand = np.array([self.hand(q) for q in queries], dtype=float).reshape(len(queries), self.n_hand)
        return RawFeatures(counts_m, hand)

    def fit_raw(self, raw: "RawFeatures") -> "TextFeaturizer":
        n = raw.counts.shape[0]
        df = np.asarray((raw.counts > 0).sum(axis=0)).ravel().astype(float)
        self.idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        return self._fit_hand(raw.hand)

    def transform_raw(self, raw: "RawFeatures") -> Any:
        """Sparse (rows x size) matrix, equal row by row to `transform`."""
        from scipy import sparse
        from sklearn.preprocessing import normalize

        text = normalize(raw.counts.multiply(self.idf[None, :]).tocsr(), norm="l2")
        hand = (raw.hand - self.hand_mean) / self.hand_std * self.hand_weight
        return sparse.hstack([text, sparse.csr_matrix(hand)], format="csr")

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
        vec[self.dim :] = (np.asarray(self.hand(query)) - self.hand_mean) / self.hand_std * self.hand_weight
        return vec

    def transform_many(self, queries: Sequence[str]) -> np.ndarray:
        return np.array([self.transform(q) for q in queries]).reshape(len(queries), self.size)

    def state(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "char_ngrams": list(self.char_ngrams),
            "word_bigrams": self.word_bigrams,
            "hand_weight": self.hand_weight,
            "task_cues": self.task_cues,
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
            task_cues=bool(state.get("task_cues", False)),  # artifacts from before task cues
            idf=np.asarray(state["idf"], dtype=float),
            hand_mean=np.asarray(state["hand_mean"], dtype=float),
            hand_std=np.asarray(state["hand_std"], dtype=float),
        )


@dataclass(frozen=True)
class RawFeatures:
    """Hashed gram counts (sparse) and raw hand features of a list of queries."""

    counts: Any  # scipy.sparse.csr_matrix (rows x dim)
    hand: np.ndarray  # rows x n_hand

    def rows(self, index: np.ndarray) -> "RawFeatures":
        return RawFeatures(self.counts[index], self.hand[index])
