"""The learned NLU with the real sentence model: encoder, classifier, threshold, cache, batching.

Training data are the CLINC150 sample in tests/fixtures/nlu (12 intents x 10 examples, licence
there) and the demo flows; nothing here reads the full data sets.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from flows.loader import load_flows
from flows.nlu import service as service_mod
from flows.nlu.batcher import MicroBatcher
from flows.nlu.classifier import BEFORE_ISSUE_18, QUANTILE_GRID, Recipe, Rows, TextClassifier, label_text
from flows.nlu.encoder import Encoder, shared_encoder
from flows.nlu.service import LearnedNLU, read_labelled_csv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nlu"
DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS


def _split(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    texts, labels = read_labelled_csv(path)
    by: dict[str, list[str]] = defaultdict(list)
    oos = []
    for t, lab in zip(texts, labels):
        (oos if lab == "oos" else by[lab]).append(t)
    return dict(by), oos


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder(2)


@pytest.fixture(scope="module")
def train() -> tuple[dict[str, list[str]], list[str]]:
    return _split(FIXTURES / "clinc_train.csv")


@pytest.fixture(scope="module")
def test_rows() -> tuple[dict[str, list[str]], list[str]]:
    return _split(FIXTURES / "clinc_test.csv")


@pytest.fixture(scope="module")
def trained(encoder: Encoder, train) -> LearnedNLU:
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    nlu.fit(train[0])
    return nlu


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- encoder ------------------------------------------------------------------------------------


def test_encoder_gives_two_unit_halves_in_input_order(encoder: Encoder) -> None:
    texts = ["where is my parcel", "hi", "I would like to close my account and get my money back today"]
    emb = encoder.encode(texts)
    assert emb.shape == (3, 768) and emb.dtype == np.float32
    for half in (emb[:, :384], emb[:, 384:]):
        assert np.allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-4)
    # each message is its own model call: its embedding never depends on the others in the call
    for i, t in enumerate(texts):
        assert np.array_equal(emb[i], encoder.encode([t])[0])
    assert encoder.encode([]).shape == (0, 768)
    assert encoder.encode(["   "]).shape == (1, 768)


def test_paraphrases_are_closer_than_unrelated_messages(encoder: Encoder) -> None:
    a, b, c = encoder.encode(["my package hasn't arrived yet", "the parcel never came",
                              "what time do you open on sunday"])
    assert _cos(a, b) > _cos(a, c) + 0.1


def test_shipped_graph_gives_the_same_meaning(encoder: Encoder) -> None:
    """The re-quantised model (default) against the package's graph with the extra output."""
    shipped = Encoder(threads=1, variant="shipped")
    texts = ["I want a refund for my broken headphones", "do you deliver to Canada?"]
    fast, ref = encoder.encode(texts), shipped.encode(texts)
    assert shipped.variant == "shipped" and encoder.variant == "dynamic"
    for i in range(2):
        assert _cos(fast[i], ref[i]) > 0.93
    with pytest.raises(ValueError, match="variant"):
        Encoder(variant="fp64")


def test_dynamic_model_has_fused_attention_and_the_unfused_numbers(encoder: Encoder, tmp_path: Path) -> None:
    """Issue 20: each layer's attention is one QAttention node (not ~40 small ones), and the
    embeddings are those of the graph quantised without fusing (each of Q, K, V keeps its scale)."""
    import subprocess
    import sys
    from collections import Counter

    import onnx

    from flows.nlu.encoder import default_model_dir, model_file, quantized_model

    ops = Counter(n.op_type for n in onnx.load(str(quantized_model(default_model_dir()))).graph.node)
    assert ops["QAttention"] == 6 and ops["Transpose"] == ops["Softmax"] == 0, ops
    unfused = tmp_path / "unfused.onnx"
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from flows.nlu.encoder import _build; "
                    "_build(Path(sys.argv[1]), Path(sys.argv[2]), fuse=False)", str(model_file()), str(unfused)],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2])
    before = Encoder(threads=1)
    import onnxruntime as ort

    before._session = ort.InferenceSession(str(unfused), providers=["CPUExecutionProvider"])
    texts = ["I want a refund for my broken headphones", "do you deliver to Canada?", "hi",
             "what payment methods do you accept order 1234"]
    for a, b in zip(encoder.encode(texts), before.encode(texts)):
        assert _cos(a[:384], b[:384]) > 0.999 and _cos(a[384:], b[384:]) > 0.999


# -- classifier ---------------------------------------------------------------------------------


def test_fast_predict_matches_scikit_learn(encoder: Encoder, train) -> None:
    from sklearn.linear_model import LogisticRegression

    by, _ = train
    texts = [t for lab in sorted(by) for t in by[lab]]
    labels = [lab for lab in sorted(by) for _ in by[lab]]
    rows = Rows(texts, labels, encoder.encode(texts))
    clf = TextClassifier(Recipe())
    clf._fit_text(rows.texts)
    X = clf._features(rows.texts, rows.emb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=10, max_iter=3000).fit(X, labels)
    clf.classes_ = [str(c) for c in lr.classes_]
    clf._compile(lr.coef_, lr.intercept_)
    clf._memory = rows.emb
    queries = ["how many calories are in a banana", "zzz qqq", "cancel my reservation at 8"]
    emb = encoder.encode(queries)
    ours, _ = clf.predict(queries, emb)
    assert np.abs(ours - lr.predict_proba(clf._features(queries, emb))).max() < 1e-4


def test_own_multinomial_solver_finds_scikit_learns_model(encoder: Encoder, train) -> None:
    """_multinomial_newton_cg solves sklearn's problem: same predictions, probabilities close."""
    from sklearn.linear_model import LogisticRegression

    by, _ = train
    texts = [t for lab in sorted(by) for t in by[lab]]
    labels = [lab for lab in sorted(by) for _ in by[lab]]
    assert len(set(labels)) > 2
    rows = Rows(texts, labels, encoder.encode(texts))
    ours = TextClassifier(Recipe())
    ours._fit_plain(rows)
    X = ours._features(rows.texts, rows.emb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=10, max_iter=3000, solver="newton-cg").fit(X, labels)
    assert ours.classes_ == [str(c) for c in lr.classes_]
    queries = ["how many calories are in a banana", "zzz qqq", "cancel my reservation at 8",
               "i want to book a table", "what is the weather like"] + texts[::7]
    emb = encoder.encode(queries)
    p, _ = ours.predict(queries, emb)
    ref = lr.predict_proba(ours._features(queries, emb))
    assert (p.argmax(axis=1) == ref.argmax(axis=1)).all()
    assert np.abs(p - ref).max() < 0.05


def test_fit_needs_two_labels_and_matching_lengths(encoder: Encoder) -> None:
    emb = encoder.encode(["a", "b"])
    with pytest.raises(ValueError, match="two labels"):
        TextClassifier().fit(Rows(["a", "b"], ["x", "x"], emb))
    with pytest.raises(ValueError, match="differ in length"):
        Rows(["a"], ["x", "y"], emb)


def test_label_names() -> None:
    assert label_text("card_arrival") == "card arrival"
    assert label_text("travel-alert:now") == "travel alert now"


def test_paraphrases_reach_the_right_intent(trained: LearnedNLU, test_rows) -> None:
    """Test rows were never seen in training: most land on their intent, confidently."""
    by, _ = test_rows
    texts = [t for lab in by for t in by[lab]]
    labels = [lab for lab in by for _ in by[lab]]
    results = trained.classify(texts)
    classes = trained.intents.classes_  # type: ignore[union-attr]
    right = sum(classes[int(np.argmax(p))] == lab for (p, _, _), lab in zip(results, labels))
    accepted = sum(bool(sure) for _, sure, _ in results)
    assert right / len(labels) >= 0.85
    assert accepted / len(labels) >= 0.75


def test_threshold_is_calibrated_and_rejects_out_of_scope(trained: LearnedNLU, test_rows) -> None:
    _, oos = test_rows
    assert 0 < trained.threshold < 1 and 0 < trained.cos_threshold < 1
    assert trained.intents.quantile == Recipe().reject_quantile  # type: ignore[union-attr]
    rejected = sum(not sure for _, sure, _ in trained.classify(oos))
    assert rejected / len(oos) >= 0.6


def test_out_of_scope_is_declined_without_out_of_scope_examples(trained: LearnedNLU, test_rows) -> None:
    """Issue 18: confidence and closeness to the intent's centre, calibrated on the examples alone.
    On this sample the rule before (confidence, nearest example) declined 16 of 20 out-of-scope
    messages; bench/nlu/oos.py measures it on CLINC150 dev."""
    by, oos = test_rows
    declined = sum(not sure for _, sure, _ in trained.classify(oos))
    texts = [t for lab in by for t in by[lab]]
    labels = [lab for lab in by for _ in by[lab]]
    classes = trained.intents.classes_  # type: ignore[union-attr]
    right = sum(bool(sure) and classes[int(np.argmax(p))] == lab
                for (p, sure, _), lab in zip(trained.classify(texts), labels))
    assert declined >= 17 and right / len(labels) >= 0.9


def test_similarity_is_to_the_class_centres(encoder: Encoder, train) -> None:
    by = train[0]
    texts = [t for lab in sorted(by) for t in by[lab]]
    labels = [lab for lab in sorted(by) for _ in by[lab]]
    emb = encoder.encode(texts)
    clf = TextClassifier().fit(Rows(texts, labels, emb))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    centres = np.stack([unit[[i for i, lab in enumerate(labels) if lab == c]].mean(axis=0) for c in clf.classes_])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    q = encoder.encode(["what is on my agenda for friday", "sing me a song about boats"])
    _, sim = clf.predict(["what is on my agenda for friday", "sing me a song about boats"], q)
    want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ centres.T
    assert np.allclose(sim, want.max(axis=1), atol=1e-5)
    assert clf.threshold_score > -np.inf and clf.in_scope(*clf.predict(texts[:3], emb[:3])).dtype == bool
    # the rule before issue 18 stays available (bench/nlu compares the two): nearest example
    old = TextClassifier(BEFORE_ISSUE_18).fit(Rows(texts, labels, emb))
    _, sim_old = old.predict(["what is on my agenda for friday", "sing me a song about boats"], q)
    assert np.allclose(sim_old, ((q / np.linalg.norm(q, axis=1, keepdims=True)) @ unit.T).max(axis=1), atol=1e-5)


def test_out_of_scope_examples_choose_the_rejection_rate(encoder: Encoder, train, test_rows) -> None:
    lines: list[str] = []
    service_mod._memory.clear()      # trained for real here, not taken from another test
    nlu = LearnedNLU(encoder=encoder, progress=lines.append)
    nlu.fit(train[0], out_of_scope=train[1])
    q = nlu.intents.quantile  # type: ignore[union-attr]
    assert q in (Recipe().reject_quantile, *QUANTILE_GRID)   # the default first, then more careful ones
    assert any("out-of-scope examples: rejection quantile" in line for line in lines)
    rejected = sum(not sure for _, sure, _ in nlu.classify(test_rows[1]))
    assert rejected / len(test_rows[1]) >= 0.6


def test_single_intent_and_label_name_rows(encoder: Encoder) -> None:
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    nlu.fit({"hours": ["when are you open", "opening times"]})
    assert asyncio.run(nlu.rank("anything at all")) == [("hours", 1.0)]
    nlu.fit({"calories": ["how many calories in an apple", "is pizza fattening"],
             "weather": ["is it going to rain", "how hot is it outside"]})
    # the label's own words are a training row
    assert asyncio.run(nlu.rank("calories", top=1))[0][0] == "calories"


# -- complaint and urgency -------------------------------------------------------------------------


def test_analysis_scores_complaints_and_urgency(trained: LearnedNLU) -> None:
    async def go():
        return await asyncio.gather(
            trained.analyze("@AcmeAir lost my bag AGAIN, third time this year, ridiculous!!"),
            trained.analyze("what time do you open on saturday?"),
            trained.analyze("i'm going to sue you, third time my order is wrong"))

    angry, calm, legal = asyncio.run(go())
    assert angry.complaint > 0.8 and calm.complaint < 0.3
    assert angry.urgency.level in ("elevated", "high") and calm.urgency.level == "none"
    assert legal.urgency.level == "high" and "threatens to sue" in legal.urgency.reasons
    assert angry.ranked and angry.in_scope in (True, False)


def test_admin_complaint_examples_are_learned(encoder: Encoder) -> None:
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    text = "the espresso machine descaler light blinks forever"
    nlu.fit_complaints(use_default=True)
    before = nlu.classify([text])[0][2]
    nlu.fit_complaints([text, "descaler light keeps blinking on my machine",
                        "my machine's descaler warning never goes off"], [])
    after = nlu.classify([text])[0][2]
    assert after > before and after > 0.5


# -- training cache -----------------------------------------------------------------------------


def test_training_is_cached_on_disk(encoder: Encoder, train, tmp_path: Path) -> None:
    examples = {k: v for k, v in list(train[0].items())[:4]}
    first = LearnedNLU(encoder=encoder, cache_dir=tmp_path, progress=lambda m: None)
    first.fit(examples)
    assert first.trained_now >= 1
    views = 2 if first.ml_encoder is not None else 1   # English + multilingual intent models (issue 18)
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.pkl")) == ["complaints"] + ["intents"] * views

    service_mod._memory.clear()      # a new process: only the files are left
    lines: list[str] = []
    again = LearnedNLU(encoder=encoder, cache_dir=tmp_path, progress=lines.append)
    again.fit(examples)
    assert again.trained_now == 0
    assert any("loaded from cache" in line for line in lines)
    assert again.threshold == first.threshold
    q = ["how many calories does a salad have"]
    assert np.allclose(again.classify(q)[0][0], first.classify(q)[0][0])

    changed = dict(examples)
    first_label = sorted(changed)[0]
    changed[first_label] = changed[first_label] + ["one more example phrase"]
    third = LearnedNLU(encoder=encoder, cache_dir=tmp_path, progress=lambda m: None)
    third.fit(changed)
    assert third.trained_now == views    # the intents changed; the complaint model did not


def test_a_corrupt_cache_file_only_costs_a_retraining(encoder: Encoder, train, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    examples = {k: v for k, v in list(train[0].items())[4:7]}
    LearnedNLU(encoder=encoder, cache_dir=tmp_path, progress=lambda m: None).fit(examples)
    for p in tmp_path.glob("intents-*.pkl"):
        p.write_bytes(b"not a pickle")
    service_mod._memory.clear()
    with caplog.at_level(logging.WARNING):
        nlu = LearnedNLU(encoder=encoder, cache_dir=tmp_path, progress=lambda m: None)
        nlu.fit(examples)
    assert nlu.trained_now == (2 if nlu.ml_encoder is not None else 1) and nlu.intents is not None
    assert "unusable" in caplog.text


def test_cache_key_covers_examples_and_out_of_scope(trained: LearnedNLU) -> None:
    k = trained.cache_key
    base = k("intents", ["a", "b"], ["x", "y"])
    assert base == k("intents", ["b", "a"], ["y", "x"])      # order of examples does not matter
    assert base != k("intents", ["a", "b"], ["x", "x"])
    assert base != k("intents", ["a", "b"], ["x", "y"], out_of_scope=["c"])
    assert base != k("complaints", ["a", "b"], ["x", "y"])


# -- micro-batching -----------------------------------------------------------------------------


async def test_a_lone_message_is_not_kept_waiting() -> None:
    sizes: list[int] = []
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: (sizes.append(len(xs)), [x * 2 for x in xs])[1])
    try:
        assert await b.submit(21) == 42
        assert sizes == [1] and b.calls == 1
    finally:
        b.close()


async def test_concurrent_messages_share_model_calls() -> None:
    sizes: list[int] = []
    threads: set[str] = set()

    def slow(xs):
        threads.add(threading.current_thread().name)
        sizes.append(len(xs))
        time.sleep(0.02)
        return [x + 1 for x in xs]

    b: MicroBatcher[int, int] = MicroBatcher(slow, max_batch=16)
    try:
        results = await asyncio.gather(*(b.submit(i) for i in range(50)))
        assert results == [i + 1 for i in range(50)]
        assert sum(sizes) == 50 and b.items == 50
        assert len(sizes) <= 6 and max(sizes) == 16          # batched, and never above max_batch
        assert threading.current_thread().name not in threads   # the model never runs on the loop
    finally:
        b.close()


async def test_workers_run_batches_side_by_side() -> None:
    both = threading.Barrier(2, timeout=5)   # breaks (and fails the call) unless two run at once
    sizes: list[int] = []

    def meet(xs):
        sizes.append(len(xs))
        if len(sizes) <= 2:
            both.wait()
        return list(xs)

    b: MicroBatcher[int, int] = MicroBatcher(meet, max_batch=8, workers=2)
    try:
        assert await asyncio.gather(*(b.submit(i) for i in range(20))) == list(range(20))
        # the first two arrive to idle workers and run at once, alone; the rest queue and batch
        assert sizes[:2] == [1, 1] and sum(sizes) == 20 and max(sizes) == 8 and len(sizes) <= 5
    finally:
        b.close()


async def test_a_failing_batch_fails_its_waiters_and_the_batcher_recovers() -> None:
    calls = {"n": 0}

    def flaky(xs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return list(xs)

    b: MicroBatcher[str, str] = MicroBatcher(flaky)
    try:
        with pytest.raises(RuntimeError, match="exploded"):
            await b.submit("a")
        assert await b.submit("b") == "b"
    finally:
        b.close()


async def test_learned_nlu_batches_concurrent_conversations(trained: LearnedNLU) -> None:
    texts = [f"how many calories are in {n} eggs" for n in range(40)]
    before_calls, before_items = trained.batcher.calls, trained.batcher.items
    results = await asyncio.gather(*(trained.analyze(t) for t in texts))
    assert all(r.ranked[0][0] == "calories" for r in results)
    calls = trained.batcher.calls - before_calls
    assert trained.batcher.items - before_items == 40 and calls < 40


# -- the demo flows -------------------------------------------------------------------------------


def test_demo_flows_train_with_a_calibrated_threshold(encoder: Encoder) -> None:
    fs = load_flows(DEMO)
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    nlu.fit(fs.examples())
    sure = dict(zip(["open", "weather", "refund"],
                    nlu.classify(["what time do you open tomorrow",
                                  "what's the weather like on mars",
                                  "how do I send something back for a refund"])))
    classes = nlu.intents.classes_  # type: ignore[union-attr]
    assert classes[int(np.argmax(sure["open"][0]))] == "opening_hours" and sure["open"][1]
    assert not sure["weather"][1]
    assert classes[int(np.argmax(sure["refund"][0]))] == "returns"


def test_demo_greeting_typos_are_greetings_and_ok_is_no_goodbye(encoder: Encoder) -> None:
    nlu = LearnedNLU(encoder=encoder, progress=lambda m: None)
    nlu.fit(load_flows(DEMO).examples())
    texts = ["helo", "hallo", "hii", "Helo!", "hallo there", "ok", "okay", "Ok."]
    classes = nlu.intents.classes_  # type: ignore[union-attr]
    got = {t: (classes[int(np.argmax(p))], sure) for t, (p, sure, _) in zip(texts, nlu.classify(texts))}
    assert all(got[t] == ("greet", True) for t in texts[:5]), got
    assert all(got[t] == ("acknowledge", True) for t in texts[5:]), got
