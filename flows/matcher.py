"""Intent matching behind a small interface.

:class:`IntentMatcher` is what the engine needs: ``fit`` on the admin's
examples, then ``rank`` a message. The lexical matcher here is a TF-IDF
cosine over word stems, word bigrams and character trigrams; a learned
matcher can replace it without touching the engine.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter
from functools import lru_cache
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from bot.model import normalize_for_matching

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
STOPWORDS = frozenset(
    "a an the i me my we our you your it its is are am was were be been to of in on at for with and or "
    "do does did can could would will shall should please hi hello hey there this that these those so just "
    "im i'm i'd id want wanna like need some any about what's whats".split())


#: From this many examples a message's scores are added up by numpy (the same sums in the same
#: order): 10x faster at 5,000-9,000 examples (clinc150, banking77 dev halves); at the demo flows'
#: 196 the Python loop costs the same.
NUMPY_FROM = 300
#: Below NUMPY_FROM examples, the index is also kept as one dense array (a row per feature, a
#: column per example) while it has at most this many cells (8 bytes each): a message's scores
#: are then its rows, each times the message's weight of the feature, added row after row, in
#: three numpy calls (issue 20: the demo's 196 examples x 1,249 features, 2 MB, ~1.5x faster
#: than the Python loop, the same floats: tests/flows/test_flow_matcher.py)
DENSE_CELLS = 1_000_000
_SCORE = operator.itemgetter(1)


@runtime_checkable
class IntentMatcher(Protocol):
    """Ranks intents for a message. Scores are in [0, 1]; higher is surer."""

    def fit(self, examples: Mapping[str, Sequence[str]]) -> None: ...

    async def rank(self, text: str, *, top: int = 3) -> list[tuple[str, float]]: ...


def _stem(word: str) -> str:
    for suffix in ("ing", "edly", "ed", "ies", "es", "s", "ly"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


@lru_cache(maxsize=8192)
def _word(word: str) -> tuple[str, str, tuple[str, ...]]:
    """A word's stem, its stem feature and its character-trigram features (repeats kept, in order).

    Words recur from message to message even when messages don't, so each is taken apart once."""
    s = _stem(word)
    padded = f"<{s}>"
    return s, "w:" + s, tuple("c:" + padded[i:i + 3] for i in range(len(padded) - 2))


def _features(text: str) -> dict[str, float]:
    """:func:`features` as a plain dict, built from the per-word memo: the same keys, the same
    order and the same sums (the weights are added one by one in the same order)."""
    words = _WORD.findall(normalize_for_matching(text))
    content = [w for w in words if w not in STOPWORDS] or words
    parts = [_word(w) for w in content]
    feats: dict[str, float] = {}
    get = feats.get
    for _, k, _ in parts:
        feats[k] = get(k, 0.0) + 1.0
    for a, b in zip(parts, parts[1:]):
        k = "b:" + a[0] + "_" + b[0]
        feats[k] = get(k, 0.0) + 1.0
    for _, _, grams in parts:
        for k in grams:
            feats[k] = get(k, 0.0) + 0.15
    return feats


def features(text: str) -> Counter[str]:
    """Sparse features of a text: stems (weight 1), bigrams, char trigrams (lighter)."""
    return Counter(_features(text))


class LexicalMatcher:
    """TF-IDF cosine against every example; an intent scores its best example."""

    def __init__(self) -> None:
        self._idf: dict[str, float] = {}
        self._unseen_idf = 1.0
        self._intents: list[str] = []
        self._index: dict[str, list[tuple[int, float]]] = {}
        self._spans: list[tuple[str, int, int]] = []     # intent, its examples [start, end)
        # the index as arrays: feature -> (its examples, their weights, how many)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self._starts = np.zeros(0, dtype=np.intp)        # each span's first example
        self._by_name: list[int] = []                    # the spans in their intents' order
        self._rows: dict[str, int] = {}                  # with a dense index: feature -> its row
        self._dense: np.ndarray | None = None

    def fit(self, examples: Mapping[str, Sequence[str]]) -> None:
        docs = [(intent, _features(t)) for intent, texts in examples.items() for t in texts]
        df: Counter[str] = Counter()
        for _, f in docs:
            df.update(f.keys())
        n = max(len(docs), 1)
        self._idf = {k: math.log((1 + n) / (1 + v)) + 1.0 for k, v in df.items()}
        self._unseen_idf = math.log(1 + n) + 1.0
        self._intents = [intent for intent, _ in docs]
        # An inverted index (feature -> examples using it) makes ranking cost what the
        # message's own features cost, not what all the examples cost.
        self._index = {}
        for i, (_, f) in enumerate(docs):
            for k, w in self._vector(f).items():
                self._index.setdefault(k, []).append((i, w))
        # an intent's examples are consecutive in ``docs``: its score is the best of one slice
        self._spans = []
        for i, intent in enumerate(self._intents):
            if self._spans and self._spans[-1][0] == intent:
                self._spans[-1] = (intent, self._spans[-1][1], i + 1)
            else:
                self._spans.append((intent, i, i + 1))
        self._postings = {k: (np.fromiter((i for i, _ in p), np.intp, len(p)),
                              np.fromiter((v for _, v in p), np.float64, len(p)), len(p))
                          for k, p in self._index.items()}
        self._starts = np.array([a for _, a, _ in self._spans], dtype=np.intp)
        self._by_name = sorted(range(len(self._spans)), key=lambda n: self._spans[n][0])
        self._rows, self._dense = {}, None
        if len(self._intents) < NUMPY_FROM and len(self._index) * len(self._intents) <= DENSE_CELLS:
            self._rows = {k: r for r, k in enumerate(self._index)}
            self._dense = np.zeros((len(self._index), len(self._intents)))
            for k, p in self._index.items():
                self._dense[self._rows[k], [i for i, _ in p]] = [v for _, v in p]

    def _vector(self, feats: Mapping[str, float]) -> dict[str, float]:
        # Words no example uses still count (as the rarest kind): "the human at your
        # store was rude" must not look like the one-word example "human".
        vec = {k: v * self._idf.get(k, self._unseen_idf) for k, v in feats.items()}
        norm = math.sqrt(sum(x * x for x in vec.values())) or 1.0
        return {k: x / norm for k, x in vec.items()}

    async def rank(self, text: str, *, top: int = 3) -> list[tuple[str, float]]:
        return self.rank_sync(text, top=top)

    def rank_sync(self, text: str, *, top: int = 3) -> list[tuple[str, float]]:
        # best score first, intents of equal scores by name: _best gives them by name and the
        # sort by score keeps that order among equals (a stable sort, reverse=True too)
        ranked = sorted(self._best(text), key=_SCORE, reverse=True)[:top]
        return [(i, round(min(s, 1.0), 4)) for i, s in ranked]

    def _best(self, text: str) -> list[tuple[str, float]]:
        """Each intent whose best example scores above 0, with that score, by intent name."""
        feats = _features(text)
        if not feats:
            return []
        idf, unseen, postings, spans = self._idf, self._unseen_idf, self._postings, self._spans
        if self._dense is not None:
            # the message's rows of the dense index, each times (x / norm), added row after row:
            # numpy reduces axis 0 of a C-ordered array one row at a time (not pairwise, which it
            # does along the contiguous axis), so each example's sum is the loop's below, feature
            # after feature; the cells of features an example lacks add 0.0, which changes no sum
            rows_of = self._rows
            xs, rows, hit = [], [], []
            for k, v in feats.items():
                x = v * idf.get(k, unseen)
                xs.append(x)
                r = rows_of.get(k)
                if r is not None:
                    rows.append(r)
                    hit.append(x)
            if not rows:
                return []
            norm = math.sqrt(sum(map(operator.mul, xs, xs))) or 1.0
            sub = self._dense.take(rows, axis=0)
            sub *= (np.array(hit) / norm)[:, None]      # x / norm: the same division as below
            best_of = np.maximum.reduceat(np.add.reduce(sub, axis=0), self._starts).tolist()
            return [(spans[n][0], s) for n in self._by_name if (s := best_of[n]) > 0.0]
        vec = [(k, v * idf.get(k, unseen)) for k, v in feats.items()]
        norm = math.sqrt(sum(x * x for _, x in vec)) or 1.0
        # the same sums in the same order as a dict of scores per example (an example no
        # feature reaches stays at 0.0, and only a score above 0 counts)
        if len(self._intents) < NUMPY_FROM:
            # a small flow set: numpy's per-call overhead would cost what it saves
            index = self._index
            scores = [0.0] * len(self._intents)
            for k, x in vec:
                plist = index.get(k)
                if plist is not None:
                    w = x / norm
                    for i, v in plist:
                        scores[i] += w * v
            return [(intent, s) for intent, a, b in (spans[n] for n in self._by_name)
                    if (s := max(scores[a:b])) > 0.0]
        # each example's score is the sum, feature after feature in the message's order, of
        # (x / norm) * its weight: np.bincount adds its weights one by one in input order, so
        # with the postings concatenated in that order the sums are the same floats, in C
        hit = [(x / norm, p) for k, x in vec if (p := postings.get(k)) is not None]
        if not hit:
            return []
        idx = np.concatenate([p[0] for _, p in hit])
        prods = np.concatenate([p[1] for _, p in hit])
        prods *= np.repeat([w for w, _ in hit], [p[2] for _, p in hit])
        best_of = np.maximum.reduceat(np.bincount(idx, weights=prods, minlength=len(self._intents)),
                                      self._starts).tolist()
        return [(spans[n][0], s) for n in self._by_name if (s := best_of[n]) > 0.0]
