"""The NLU's answer to a message does not depend on load (issue 20), and repeats cost no model call.

The same texts are analysed alone (one model call each, nothing else going on) and then
concurrently among 64 other messages (so they share batched calls): intents, scores, the
in-scope verdict, complaint and urgency must be the same. A negative control shows the check
is sharp enough: an encoder that pads a batch into one model call (what the encoder must never
do, flows/nlu/encoder.py) fails it.

Training data: the CLINC150 sample in tests/fixtures/nlu (licence there).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
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


async def _alone_and_in_crowd(nlu: LearnedNLU, crowd: list[str]) -> tuple[list[Analysis], list[Analysis]]:
    nlu.batcher.clear()
    calls, items = nlu.batcher.calls, nlu.batcher.items
    alone = [await nlu.analyze(t, top=5) for t in PROBE]          # one model call each
    assert nlu.batcher.calls - calls == len(PROBE) == nlu.batcher.items - items
    nlu.batcher.clear()                                          # nothing remembered: computed again
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
        nlu.batcher.clear()
    assert not all(_same(a, b) for a, b in zip(alone, in_crowd))


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
