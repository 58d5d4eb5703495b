"""Training cost (issue 18, "Training fits a small server"): the models of one ``LearnedNLU.fit``
are trained side by side with their fits sharing one pool, and each is exactly the model it would
be trained alone; the multinomial solver's capped conjugate-gradient steps still meet its
stopping rule.

Training data: the CLINC150 sample in tests/fixtures/nlu (12 intents x 10 examples, licence there).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flows.nlu import classifier as classifier_mod
from flows.nlu import service as service_mod
from flows.nlu.classifier import Recipe, Rows, TextClassifier, _multinomial_newton_cg
from flows.nlu.encoder import Encoder, shared_encoder
from flows.nlu.service import LearnedNLU, read_labelled_csv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nlu"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder(2)


@pytest.fixture(scope="module")
def train() -> tuple[dict[str, list[str]], list[str]]:
    texts, labels = read_labelled_csv(FIXTURES / "clinc_train.csv")
    by: dict[str, list[str]] = defaultdict(list)
    oos = []
    for t, lab in zip(texts, labels):
        (oos if lab == "oos" else by[lab]).append(t)
    return dict(by), oos


def _same(a: TextClassifier, b: TextClassifier) -> None:
    assert a.classes_ == b.classes_
    for name in ("_w_emb", "_w_text", "_bias", "_memory"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.threshold_score, a.threshold, a.cos_threshold, a._scale) == \
        (b.threshold_score, b.threshold, b.cos_threshold, b._scale)


def test_models_trained_side_by_side_are_the_models_trained_alone(encoder: Encoder, train, monkeypatch) -> None:
    """fit() trains the complaint model, the English view and the multilingual view at once (each
    in its own thread, their fits in one shared pool): never more fits at a time than
    ``recipe.workers``, and every model equal, weight for weight, to one trained by itself."""
    examples, oos = train
    running, most, threads = [0], [0], defaultdict(set)
    lock = threading.Lock()
    plain, train_one = TextClassifier._fit_plain, LearnedNLU._train

    def counted(self, rows):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return plain(self, rows)
        finally:
            with lock:
                running[0] -= 1

    def where(self, kind, *a, **kw):
        threads[kind].add(threading.current_thread().name)
        return train_one(self, kind, *a, **kw)

    monkeypatch.setattr(TextClassifier, "_fit_plain", counted)
    monkeypatch.setattr(LearnedNLU, "_train", where)
    monkeypatch.setattr(service_mod, "_memory", {})      # train here, not from this process's memory
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    nlu.fit(examples, out_of_scope=oos[:5])
    assert 1 < most[0] <= nlu.recipe.workers
    assert threads["complaints"] and threads["complaints"].isdisjoint(threads["intents"])  # beside the intents
    views = [nlu.intents, nlu.complaints] + ([nlu.intents_ml] if nlu.ml_encoder is not None else [])

    # the same models, trained one after the other, each with its own pool
    monkeypatch.setattr(service_mod, "_memory", {})
    texts = [t for _, ts in sorted(examples.items()) for t in ts]
    labels = [lab for lab, ts in sorted(examples.items()) for _ in ts]
    alone = LearnedNLU(encoder=encoder, progress=lambda m: None, multilingual=nlu.ml_encoder or False)
    english = alone._looks_english(texts)
    assert all(english)
    refs = [alone._train("intents", texts, labels, anchors=True, out_of_scope=oos[:5], labels_all=sorted(set(labels))
                         ) if nlu.ml_encoder is not None else
            alone._train("intents", texts, labels, anchors=True, out_of_scope=oos[:5])]
    alone.fit_complaints()
    refs.append(alone.complaints)
    if nlu.ml_encoder is not None:
        refs.append(alone._train("intents", texts, labels, anchors=True, out_of_scope=oos[:5],
                                 always=service_mod.social_examples(texts, labels), encoder=nlu.ml_encoder,
                                 recipe=replace(alone.recipe, emb_weight=service_mod.MULTILINGUAL_EMB_WEIGHT,
                                                reject_rule=service_mod.FOREIGN_REJECT_RULE)))
    assert alone.trained_now == len(refs)       # trained here, not taken from the first instance
    alone.intents, alone.intents_ml = refs[0], (refs[2] if nlu.ml_encoder is not None else None)
    for got, ref in zip(views, refs):
        _same(got, ref)
    queries = ["how do i set an alarm", "zzz qqq", "what is the weather in paris", "I hate waiting this long!!"]
    for a, b in zip(nlu.classify(queries), alone.classify(queries)):
        assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]


def test_large_training_sets_train_one_model_at_a_time(encoder: Encoder, train, monkeypatch) -> None:
    """Above ``SIDE_BY_SIDE_MAX_ROWS`` examples (peak memory: 10,000 rows went over 1 GB side by
    side) the complaint model, the multilingual view and the English view train one after the
    other: no two of them are ever being trained at the same time."""
    examples, oos = train
    busy, overlap = set(), []
    lock = threading.Lock()
    train_one, fit_complaints = LearnedNLU._train, LearnedNLU.fit_complaints

    def tracked(name, fn):
        def run(self, *a, **kw):
            who = name if name else ("ml" if kw.get("encoder") is not None else a[0])
            with lock:
                if busy and who != "complaint-inner":
                    overlap.append((who, set(busy)))
                busy.add(who)
            try:
                return fn(self, *a, **kw)
            finally:
                with lock:
                    busy.discard(who)
        return run

    monkeypatch.setattr(LearnedNLU, "_train", tracked(None, train_one))
    monkeypatch.setattr(LearnedNLU, "fit_complaints", tracked("complaints-all", fit_complaints))
    monkeypatch.setattr(service_mod, "_memory", {})
    monkeypatch.setattr(service_mod, "SIDE_BY_SIDE_MAX_ROWS", 10)
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    nlu.fit(examples, out_of_scope=oos[:5])
    assert nlu.intents is not None and nlu.complaints is not None
    # fit_complaints calls _train("complaints", ...) itself: that nesting is one model, not two
    assert [o for o in overlap if not (o[0] == "complaints" and o[1] == {"complaints-all"})] == []


def test_capped_solver_meets_the_stopping_rule_and_finds_the_same_model(encoder: Encoder, train) -> None:
    """30 conjugate-gradient steps per Newton step (Recipe.cg_max_inner): the returned model has
    every gradient component under tol, and predicts as the uncapped one (sklearn's 200)."""
    assert Recipe().cg_max_inner == 30
    examples, _ = train
    texts = [t for _, ts in sorted(examples.items()) for t in ts]
    labels = [lab for lab, ts in sorted(examples.items()) for _ in ts]
    clf = TextClassifier(Recipe())
    rows = Rows(texts, labels, encoder.encode(texts))
    clf._fit_text(rows.texts)
    y = np.searchsorted(np.array(sorted(set(labels)), dtype=object), np.array(labels, dtype=object))
    emb = rows.emb * np.float32(clf.recipe.emb_weight)
    text = clf._text_block(texts)
    C, k, n = clf.recipe.C, len(set(labels)), len(texts)
    got = {}
    for inner in (1, 30, 200):
        coef, b = _multinomial_newton_cg(emb, text, y, k, C, tol=1e-4, max_iter=3000, max_inner=inner)
        z = emb @ coef[:, :emb.shape[1]].T + text @ coef[:, emb.shape[1]:].T + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        r = p.copy()
        r[np.arange(n), y] -= 1
        grad = np.vstack([emb.T @ r / n, np.asarray(text.T @ r) / n]) + coef.T / (C * n)
        assert np.abs(grad).max() <= 1e-4 and np.abs(r.sum(axis=0) / n).max() <= 1e-4
        got[inner] = p
    for inner in (1, 30):
        assert (got[inner].argmax(axis=1) == got[200].argmax(axis=1)).all()
        assert np.abs(got[inner] - got[200]).max() < 0.05
    assert classifier_mod.DEFAULT_RECIPE.key()["cg_max_inner"] == 30   # a changed cap retrains cached models
