"""The NLU's answer to a message does not depend on load (issue 20), and repeats cost no model call.

The same texts are analysed alone (one model call each, nothing else going on) and then
concurrently among 64 other messages (so they share batched calls): intents, scores, the
in-scope verdict, complaint and urgency must be the same. A negative control shows the check
is sharp enough: an encoder that pads a batch into one model call (what the encoder must never
do, flows/nlu/encoder.py) fails it. The encoder remembers embeddings by token ids: a variant
of a message in case, accents or spacing costs no model call and is understood exactly as it
is when computed alone from nothing, whether it follows the message or arrives beside it.

Training data: the CLINC150 sample in tests/fixtures/nlu (licence there).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from flows.nlu.batcher import MicroBatcher
from flows.nlu.encoder import Encoder, shared_encoder
from flows.nlu.service import Analysis, LearnedNLU, read_labelled_csv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nlu"

PROBE = ["how many calories are in an egg", "what's the weather like tomorrow", "hi",
         "I want to book a table for two tonight", "THIS IS THE THIRD TIME I ASK, where is my refund??",
         "¿cuántas calorías tiene una manzana?", "wie wird das Wetter morgen", "ok thanks"]


def _examples(name: str) -> tuple[dict[str, list[str]], list[str]]:
    texts, labels = read_labelled_csv(FIXTURES / name)
    by: dict[str, list[str]] = defaultdict(list)
    other = []
    for t, lab in zip(texts, labels):
        (other if lab == "oos" else by[lab]).append(t)
    return dict(by), other


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder(2)


@pytest.fixture(scope="module")
def nlu(encoder: Encoder) -> LearnedNLU:
    n = LearnedNLU(encoder=encoder, progress=lambda m: None)
    n.fit(_examples("clinc_train.csv")[0])
    return n


@pytest.fixture(scope="module")
def crowd() -> list[str]:
    by, oos = _examples("clinc_test.csv")
    texts = [t for ts in by.values() for t in ts] + oos
    others = [t for t in texts if t not in PROBE][:64]
    assert len(others) == 64
    return others


def _same(a: Analysis, b: Analysis, tol: float = 1e-6) -> bool:
    """The same understanding: intents in the same order, the same verdicts, scores equal to
    float32 rounding (a batched matrix product may round the last bit differently)."""
    return ([i for i, _ in a.ranked] == [i for i, _ in b.ranked]
            and all(abs(x - y) <= tol for (_, x), (_, y) in zip(a.ranked, b.ranked))
            and a.in_scope == b.in_scope and abs(a.complaint - b.complaint) <= tol
            and a.urgency == b.urgency)


def _forget(nlu: LearnedNLU) -> None:
    """Nothing remembered: neither answers by text nor embeddings by token ids."""
    nlu.batcher.clear()
    forget = getattr(nlu.encoder, "forget", None)
    if forget is not None:
        forget()


async def _alone_and_in_crowd(nlu: LearnedNLU, crowd: list[str]) -> tuple[list[Analysis], list[Analysis]]:
    _forget(nlu)
    calls, items = nlu.batcher.calls, nlu.batcher.items
    alone = [await nlu.analyze(t, top=5) for t in PROBE]          # one model call each
    assert nlu.batcher.calls - calls == len(PROBE) == nlu.batcher.items - items
    _forget(nlu)                                                 # nothing remembered: computed again
    calls, items = nlu.batcher.calls, nlu.batcher.items
    mixed = [x for pair in zip(crowd[::8], PROBE) for x in pair] + [t for t in crowd if t not in crowd[::8]]
    results = await asyncio.gather(*(nlu.analyze(t, top=5) for t in mixed))
    assert nlu.batcher.items - items == len(mixed)
    assert nlu.batcher.calls - calls < len(mixed) / 4            # they really shared model calls
    in_crowd = [results[mixed.index(t)] for t in PROBE]
    return alone, in_crowd


async def test_same_message_same_understanding_alone_or_among_64_others(nlu: LearnedNLU, crowd) -> None:
    alone, in_crowd = await _alone_and_in_crowd(nlu, crowd)
    for t, a, b in zip(PROBE, alone, in_crowd):
        assert _same(a, b), (t, a, b)
    # and what is remembered now is that same understanding
    calls = nlu.batcher.calls
    again = [await nlu.analyze(t, top=5) for t in PROBE]
    assert nlu.batcher.calls == calls
    assert all(_same(a, b) for a, b in zip(alone, again))


async def test_the_check_catches_an_encoder_whose_batches_change_embeddings(
        nlu: LearnedNLU, crowd, encoder: Encoder, monkeypatch) -> None:
    """Negative control: pad a batch into one model call (dynamic quantisation then scales each
    message by the batch's activations) and the same messages are understood differently."""
    def padded(texts, *, parallel=True):
        enc = encoder._tok.encode_batch([t if t.strip() else "." for t in texts])
        width = max(len(e.ids) for e in enc)
        ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in enc], np.int64)
        mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc], np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if encoder._wants_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        last, layer3 = encoder._session.run(["last_hidden_state", "layer_norm_6"], feeds)
        m = mask[:, :, None].astype(np.float32)

        def pool(h):
            v = (h * m).sum(axis=1) / m.sum(axis=1)
            return v / np.linalg.norm(v, axis=1, keepdims=True)
        return np.hstack([pool(last), pool(layer3)]).astype(np.float32)

    monkeypatch.setattr(nlu.encoder, "encode", padded)
    try:
        alone, in_crowd = await _alone_and_in_crowd(nlu, crowd)
    finally:
        _forget(nlu)
    assert not all(_same(a, b) for a, b in zip(alone, in_crowd))


# What the model reads is the same (the uncased tokenizer lowercases, strips accents, splits off
# punctuation and collapses spaces), the text is not: each pair differs to the customer.
VARIANTS = [("how many calories are in an egg", "How many calories are in an EGG"),
            ("what's the weather like tomorrow", "What 's  the weather like tomorrow"),
            ("I want to book a table for two tonight", "i want to book a table for two tonight"),
            ("THIS IS THE THIRD TIME I ASK, where is my refund??",
             "this is the third time i ask , where is my refund ? ?"),
            ("¿cuántas calorías tiene una manzana?", "¿Cuantas calorias tiene una manzana?"),
            ("ok thanks", "OK   thanks")]


async def _each_alone_from_nothing(nlu: LearnedNLU, texts: list[str]) -> list[Analysis]:
    out = []
    for t in texts:
        _forget(nlu)
        out.append(await nlu.analyze(t, top=5))
    return out


async def test_a_variant_in_case_or_spacing_costs_no_model_call_and_is_understood_the_same(
        nlu: LearnedNLU, encoder: Encoder) -> None:
    variants = [v for _, v in VARIANTS]
    fresh = await _each_alone_from_nothing(nlu, variants)
    _forget(nlu)
    for original, _ in VARIANTS:
        await nlu.analyze(original, top=5)
    calls, hits = encoder.calls, encoder.hits
    reused = [await nlu.analyze(v, top=5) for v in variants]
    assert encoder.calls == calls and encoder.hits == hits + len(VARIANTS)   # no model call
    for v, a, b in zip(variants, fresh, reused):
        assert _same(a, b, tol=0.0), (v, a, b)                    # to the last bit
    # the rest of the analysis still reads the text: urgency sees the shouting, the original's
    # complaint and intents are its own (only the embedding is shared)
    shout, quiet = await nlu.analyze(VARIANTS[3][0]), await nlu.analyze(VARIANTS[3][1])
    assert shout.urgency.score > quiet.urgency.score


async def test_variants_arriving_together_among_others_are_understood_as_alone(
        nlu: LearnedNLU, encoder: Encoder, crowd) -> None:
    texts = [t for pair in VARIANTS for t in pair]
    alone = await _each_alone_from_nothing(nlu, texts)
    _forget(nlu)
    calls = encoder.calls
    mixed = [x for pair in zip(crowd[: len(texts)], texts) for x in pair] + crowd[len(texts):]
    results = await asyncio.gather(*(nlu.analyze(t, top=5) for t in mixed))
    # one model call per distinct token sequence, whichever batch each landed in
    assert encoder.calls - calls == len(crowd) + len(VARIANTS)
    for t, a in zip(texts, alone):
        assert _same(a, results[mixed.index(t)]), t


def test_the_memory_is_keyed_by_what_the_model_reads(encoder: Encoder) -> None:
    encoder.forget()
    calls = encoder.calls
    a = encoder.encode(["Where is my order?", "where is   my order ?", "WHERE IS MY ÓRDER?"])
    assert encoder.calls - calls == 1 and np.array_equal(a[0], a[1]) and np.array_equal(a[0], a[2])
    b = encoder.encode(["where is my order", "where is my order?"])   # no "?": another input
    assert encoder.calls - calls == 2 and np.array_equal(b[1], a[0]) and not np.array_equal(b[0], a[0])
    kept = a[0].copy()
    a[0, 0] = 42.0                                    # the returned array is the caller's own copy
    assert np.array_equal(encoder.encode(["where is my order?"])[0], kept)
    remembered = next(iter(encoder._memory.values()))
    with pytest.raises(ValueError):
        remembered[0] = 1.0                           # and what is remembered cannot be changed


def test_the_embedding_memory_is_bounded_least_recently_used_first() -> None:
    small = Encoder(memory=2)
    try:
        small.encode(["one"]), small.encode(["two"]), small.encode(["one"]), small.encode(["three"])
        assert small.calls == 3                                   # "two" is the oldest now
        small.encode(["one"])
        assert small.calls == 3
        small.encode(["two"])
        assert small.calls == 4 and len(small._memory) == 2
    finally:
        small.forget()


def _two_threads_at_once(enc: Encoder, monkeypatch, first_fails: bool = False):
    """``enc`` encodes two variants of one text on two threads, the second while the first runs."""
    started, release = threading.Event(), threading.Event()
    real, runs = enc._run, []

    def slow(ids):
        runs.append(ids)
        started.set()
        release.wait(5)
        if first_fails and len(runs) == 1:
            raise RuntimeError("model exploded")
        return real(ids)

    monkeypatch.setattr(enc, "_run", slow)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(enc.encode, ["Where is my order?"], parallel=False)
        assert started.wait(5)
        b = pool.submit(enc.encode, ["where is my order ?"], parallel=False)
        time.sleep(0.2)                      # b finds the same ids being run
        release.set()
        return a, b.result(5), runs


def test_the_same_ids_on_two_threads_at_once_are_one_model_call(monkeypatch) -> None:
    enc = Encoder(memory=8)
    a, b, runs = _two_threads_at_once(enc, monkeypatch)
    assert len(runs) == 1 and enc.calls == 1 and enc.hits == 1
    assert np.array_equal(a.result(5), b)
    assert not enc._running


def test_when_the_call_another_thread_waits_for_fails_it_runs_its_own(monkeypatch) -> None:
    enc = Encoder(memory=8)
    a, b, runs = _two_threads_at_once(enc, monkeypatch, first_fails=True)
    with pytest.raises(RuntimeError, match="exploded"):
        a.result(5)
    assert len(runs) == 2 and b.shape == (1, 768) and not enc._running
    assert np.array_equal(b, Encoder(memory=0).encode(["where is my order?"]))


async def test_a_repeated_message_costs_no_model_call_and_gets_the_same_answer(nlu: LearnedNLU) -> None:
    nlu.batcher.clear()
    first = await nlu.analyze("how many calories in a banana")
    calls, hits = nlu.batcher.calls, nlu.batcher.hits
    second = await nlu.analyze("how many calories in a banana")
    assert nlu.batcher.calls == calls and nlu.batcher.hits == hits + 1
    assert second == first
    # what is remembered cannot be changed by a caller
    probs = nlu.batcher._cache["how many calories in a banana"][0]
    with pytest.raises(ValueError):
        probs[0] = 1.0


async def test_the_same_message_at_once_from_many_customers_is_one_model_call(nlu: LearnedNLU) -> None:
    nlu.batcher.clear()
    items = nlu.batcher.items
    results = await asyncio.gather(*(nlu.analyze("what is my credit score") for _ in range(20)))
    assert nlu.batcher.items - items == 1
    assert all(r == results[0] for r in results)


async def test_training_again_forgets_remembered_answers(encoder: Encoder) -> None:
    n = LearnedNLU(encoder=encoder, progress=lambda m: None)
    n.fit({"greet": ["hello there", "hi", "good morning"], "bye": ["goodbye", "see you", "bye now"]})
    assert (await n.analyze("hello friend")).ranked[0][0] == "greet"
    n.fit({"welcome": ["hello there", "hi", "good morning"], "bye": ["goodbye", "see you", "bye now"]})
    assert (await n.analyze("hello friend")).ranked[0][0] == "welcome"
    n.close()


# -- the batcher's memory, without a model ------------------------------------------------------


async def test_the_memory_is_bounded_least_recently_used_first() -> None:
    seen: list[int] = []
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: (seen.extend(xs), [x * 2 for x in xs])[1], cache=2)
    try:
        assert [await b.submit(x) for x in (1, 2, 1, 3)] == [2, 4, 2, 6]   # 2 is the oldest now
        assert seen == [1, 2, 3]
        assert await b.submit(1) == 2 and await b.submit(2) == 4
        assert seen == [1, 2, 3, 2]
    finally:
        b.close()


async def test_a_failed_call_is_not_remembered() -> None:
    calls = {"n": 0}

    def flaky(xs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return [x.upper() for x in xs]

    b: MicroBatcher[str, str] = MicroBatcher(flaky, cache=8)
    try:
        with pytest.raises(RuntimeError):
            await b.submit("a")
        assert await b.submit("a") == "A" and calls["n"] == 2
    finally:
        b.close()


async def test_a_result_of_the_old_model_is_not_remembered_after_clear() -> None:
    release = threading.Event()
    model = {"v": 1}

    def slow(xs):
        v = model["v"]
        release.wait(5)
        return [f"{x}{v}" for x in xs]

    b: MicroBatcher[str, str] = MicroBatcher(slow, cache=8)
    try:
        old = asyncio.ensure_future(b.submit("a"))
        await asyncio.sleep(0.05)
        b.clear()                  # the model changes while the call runs
        model["v"] = 2
        release.set()
        assert await old == "a1"
        assert await b.submit("a") == "a2"
    finally:
        b.close()


async def test_one_asker_giving_up_does_not_cancel_the_others() -> None:
    def slow(xs):
        time.sleep(0.1)
        return list(xs)

    b: MicroBatcher[str, str] = MicroBatcher(slow, cache=8)
    try:
        first = asyncio.ensure_future(b.submit("x"))
        second = asyncio.ensure_future(b.submit("x"))
        await asyncio.sleep(0.01)
        first.cancel()
        assert await second == "x"
        assert b.items == 1
    finally:
        b.close()


def test_latency_figures_run_the_model_for_every_message(nlu: LearnedNLU, encoder: Encoder) -> None:
    """`omnibot nlu eval` times messages it has just predicted: the memory must not flatter it."""
    from flows.nlu.evaluate import _latency

    texts = [f"how many calories are in {n} bananas" for n in range(12)]
    nlu.classify(texts)
    calls = encoder.calls
    _latency(nlu, texts)
    assert encoder.calls - calls == len(texts)
