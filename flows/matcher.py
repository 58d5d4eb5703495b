"""Intent matching behind a small interface.

:class:`IntentMatcher` is what the engine needs: ``fit`` on the admin's
examples, then ``rank`` a message. The lexical matcher here is a TF-IDF
cosine over word stems, word bigrams and character trigrams; a learned
matcher can replace it without touching the engine.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Mapping, Protocol, Sequence, runtime_checkable

from bot.model import normalize_for_matching

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
STOPWORDS = frozenset(
    "a an the i me my we our you your it its is are am was were be been to of in on at for with and or "
    "do does did can could would will shall should please hi hello hey there this that these those so just "
    "im i'm i'd id want wanna like need some any about what's whats".split())


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


def features(text: str) -> Counter[str]:
    """Sparse features of a text: stems (weight 1), bigrams, char trigrams (lighter)."""
    words = _WORD.findall(normalize_for_matching(text))
    content = [w for w in words if w not in STOPWORDS] or words
    stems = [_stem(w) for w in content]
    feats: Counter[str] = Counter()
    for s in stems:
        feats["w:" + s] += 1.0
    for a, b in zip(stems, stems[1:]):
        feats["b:" + a + "_" + b] += 1.0
    for s in stems:
        padded = f"<{s}>"
        for i in range(len(padded) - 2):
            feats["c:" + padded[i:i + 3]] += 0.15
    return feats


class LexicalMatcher:
    """TF-IDF cosine against every example; an intent scores its best example."""

    def __init__(self) -> None:
        self._idf: dict[str, float] = {}
        self._unseen_idf = 1.0
        self._intents: list[str] = []
        self._index: dict[str, list[tuple[int, float]]] = {}

    def fit(self, examples: Mapping[str, Sequence[str]]) -> None:
        docs = [(intent, features(t)) for intent, texts in examples.items() for t in texts]
        df: Counter[str] = Counter()
        for _, f in docs:
            df.update(f.keys())
        n = max(len(docs), 1)
        self._idf = {k: math.log((1 + n) / (1 + v)) + 1.0 for k, v in df.items()}
        self._unseen_idf = math.log(1 + n) + 1.0
        self._intents = [intent for intent, _ in docs]
        # An inverted index (feature -> examples using it) makes ranking cost what the
        # message's own features cost, not what all the examples cost.
        self._index: dict[str, list[tuple[int, float]]] = {}
        for i, (_, f) in enumerate(docs):
            for k, w in self._vector(f).items():
                self._index.setdefault(k, []).append((i, w))

    def _vector(self, feats: Mapping[str, float]) -> dict[str, float]:
        # Words no example uses still count (as the rarest kind): "the human at your
        # store was rude" must not look like the one-word example "human".
        vec = {k: v * self._idf.get(k, self._unseen_idf) for k, v in feats.items()}
        norm = math.sqrt(sum(x * x for x in vec.values())) or 1.0
        return {k: x / norm for k, x in vec.items()}

    async def rank(self, text: str, *, top: int = 3) -> list[tuple[str, float]]:
        return self.rank_sync(text, top=top)

    def rank_sync(self, text: str, *, top: int = 3) -> list[tuple[str, float]]:
        q = self._vector(features(text))
        if not q:
            return []
        scores: dict[int, float] = {}
        for k, w in q.items():
            for i, v in self._index.get(k, ()):
                scores[i] = scores.get(i, 0.0) + w * v
        best: dict[str, float] = {}
        for i, score in scores.items():
            intent = self._intents[i]
            if score > best.get(intent, 0.0):
                best[intent] = score
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(i, round(min(s, 1.0), 4)) for i, s in ranked[:top]]
