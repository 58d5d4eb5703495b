"""LexicalMatcher: ranks the demo intents, normalizes Unicode, ignores empty input."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from flows import IntentMatcher, LexicalMatcher, load_flows
from flows.matcher import features

DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS


@pytest.fixture(scope="module")
def examples() -> dict[str, list[str]]:
    return load_flows(DEMO).examples()


@pytest.fixture(scope="module")
def matcher(examples: dict[str, list[str]]) -> LexicalMatcher:
    m = LexicalMatcher()
    m.fit(examples)
    return m


def test_is_an_intent_matcher() -> None:
    assert isinstance(LexicalMatcher(), IntentMatcher)


# Demo examples that tie with another intent's example after stopwords and stemming:
# "that helps" (thanks) becomes the feature set of "help" (help).
KNOWN_CONFLICTS = {"that helps"}


def test_every_demo_example_ranks_its_own_intent_first(matcher: LexicalMatcher,
                                                       examples: dict[str, list[str]]) -> None:
    wrong = {}
    for intent, texts in examples.items():
        for text in texts:
            ranked = matcher.rank_sync(text, top=2)
            if ranked[0] != (intent, 1.0):
                wrong[text] = (intent, ranked)
    assert set(wrong) <= KNOWN_CONFLICTS, wrong


def test_thanks_is_not_taken_for_help(matcher: LexicalMatcher) -> None:
    # "that helps" used to be a thanks example; it stems to "help", and help may interrupt a form.
    assert matcher.rank_sync("that was useful, thanks")[0][0] == "thanks"
    assert "that helps" not in [e for ex in matcher_examples() for e in ex]


@pytest.mark.parametrize("text,intent", [
    ("what time do you open on saturday", "opening_hours"),
    ("I'd like to speak with a human", "human"),
    ("WHEN ARE YOU OPEN???", "opening_hours"),
    ("how long does delivery take to germany", "shipping_times"),
    ("can I pay with apple pay", "payment_methods"),
    ("do you take visa", "payment_methods"),
    ("i want to send my shoes back", "returns"),
    ("thank you very much", "thanks"),
    ("bye for now", "goodbye"),
    ("start over please", "restart"),
    ("hello there", "greet"),
    ("my parcel arrived broken", "complaint"),
])
async def test_paraphrases_rank_the_right_intent(matcher: LexicalMatcher, text: str, intent: str) -> None:
    ranked = await matcher.rank(text, top=3)
    assert ranked[0][0] == intent, ranked
    assert len(ranked) <= 3
    assert ranked[0][1] > ranked[1][1] if len(ranked) > 1 else True


async def test_scores_are_sorted_and_bounded(matcher: LexicalMatcher) -> None:
    ranked = await matcher.rank("when can i talk to a person about my delivery", top=6)
    assert 1 < len(ranked) <= 6
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores)
    assert len({i for i, _ in ranked}) == len(ranked)


async def test_top_limits_the_ranking(matcher: LexicalMatcher) -> None:
    assert len(await matcher.rank("when are you open", top=1)) == 1
    assert [i for i, _ in await matcher.rank("when are you open", top=1)] == ["opening_hours"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "!!!", "?", "..."])
async def test_empty_text_ranks_nothing(matcher: LexicalMatcher, text: str) -> None:
    assert await matcher.rank(text) == []


async def test_unfitted_matcher_ranks_nothing() -> None:
    assert await LexicalMatcher().rank("when are you open") == []


def test_unicode_nfc_normalization() -> None:
    composed = "caf\u00e9 au lait"
    decomposed = "cafe\u0301 au lait"
    assert composed != decomposed and unicodedata.normalize("NFC", decomposed) == composed
    assert features(composed) == features(decomposed)

    for fit_form in (composed, decomposed):
        m = LexicalMatcher()
        m.fit({"coffee": [fit_form, "espresso please"], "tea": ["green tea", "earl grey"]})
        a = m.rank_sync(composed)
        b = m.rank_sync(decomposed)
        assert a == b
        assert a[0] == ("coffee", 1.0)
        assert m.rank_sync("CAF\u00c9")[0][0] == "coffee"  # casefolded too
        assert m.rank_sync("CAFE\u0301")[0][0] == "coffee"


def test_accented_word_is_not_the_same_as_unaccented() -> None:
    m = LexicalMatcher()
    m.fit({"coffee": ["caf\u00e9"], "cafe_name": ["cafe"]})
    assert m.rank_sync("cafe\u0301")[0] == ("coffee", 1.0)
    assert m.rank_sync("cafe")[0] == ("cafe_name", 1.0)


def test_features() -> None:
    f = features("The parcels were delivered late")
    assert {"w:parcel", "w:deliver", "w:late", "b:parcel_deliver", "b:deliver_late"} <= set(f)
    assert "w:the" not in f and "w:were" not in f  # stopwords
    assert f["c:<pa"] == pytest.approx(0.15)
    assert features("the") == features("THE")  # only stopwords: they are kept
    assert "w:the" in features("the")
    assert features("") == {}


def test_unseen_words_dilute_the_score() -> None:
    m = LexicalMatcher()
    m.fit({"human": ["human", "talk to a person"], "complaint": ["rude staff", "terrible service"]})
    alone = m.rank_sync("human")[0]
    assert alone == ("human", 1.0)
    long = dict(m.rank_sync("the human at your store was extremely rude and impolite"))
    assert long["human"] < 0.6


def matcher_examples() -> list[list[str]]:
    from flows import load_flows
    from conftest import SHOP_FLOWS as DEMO_FLOWS
    return list(load_flows(DEMO_FLOWS).examples().values())


def test_large_flow_sets_are_scored_by_numpy_with_the_same_results(examples: dict[str, list[str]],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """From matcher.NUMPY_FROM examples the scores are summed by numpy (issue 20: 10x faster at
    5,000-9,000 examples); the rankings and scores are the same as the Python loop's, to the bit
    (same sums in the same order), on every demo example and on variants of them."""
    import flows.matcher as fm

    texts = [t for ts in examples.values() for t in ts]
    texts += [f"{t} order {n}" for n, t in enumerate(texts)] + [t.split()[0] for t in texts] + [
        "the human at your store was rude", "zzz qqq", "!!", "hello hello hello where where"]
    m = LexicalMatcher()
    m.fit(examples)
    seen_numpy = []
    real = fm.np.bincount
    monkeypatch.setattr(fm, "DENSE_CELLS", 0)        # (not the dense index: see the next test)
    m.fit(examples)

    def counting(*a, **kw):
        seen_numpy.append(1)
        return real(*a, **kw)

    for top in (1, 3, 1000):
        monkeypatch.setattr(fm, "NUMPY_FROM", 10**9)
        python = [m.rank_sync(t, top=top) for t in texts]
        monkeypatch.setattr(fm, "NUMPY_FROM", 0)
        monkeypatch.setattr(fm.np, "bincount", counting)
        assert [m.rank_sync(t, top=top) for t in texts] == python
        monkeypatch.setattr(fm.np, "bincount", real)
    assert len(seen_numpy) > len(texts)      # the numpy path did run
    assert sum(1 for r in python if len(r) > 3) > 100


def _paths_texts(examples: dict[str, list[str]]) -> list[str]:
    import csv

    texts = [t for ts in examples.values() for t in ts]
    texts += [f"{t} order {n}" for n, t in enumerate(texts)] + [t.split()[0] for t in texts] + [
        f"{a} {b}" for a, b in zip(texts, texts[7:])] + [
        "the human at your store was rude", "zzz qqq", "!!", "hello hello hello where where", "", "   "]
    with open(Path(__file__).resolve().parents[1] / "fixtures" / "neutral_messages.csv", newline="") as f:
        texts += [row["text"] for row in csv.DictReader(f)]
    return texts


def test_the_dense_index_sums_the_same_floats(examples: dict[str, list[str]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Under matcher.NUMPY_FROM examples a dense index (matcher.DENSE_CELLS) adds a message's
    scores in numpy (issue 20); each intent's best score is the Python loop's and the bincount
    path's to the bit, not only once rounded, on the demo examples and variants of them."""
    import flows.matcher as fm

    texts = _paths_texts(examples)
    dense = LexicalMatcher()
    dense.fit(examples)
    assert dense._dense is not None and dense._dense.shape == (len(dense._rows), len(dense._intents))
    monkeypatch.setattr(fm, "DENSE_CELLS", 0)
    loop = LexicalMatcher()
    loop.fit(examples)
    assert loop._dense is None
    got = [dense._best(t) for t in texts]
    assert got == [loop._best(t) for t in texts]
    monkeypatch.setattr(fm, "NUMPY_FROM", 0)
    assert got == [loop._best(t) for t in texts]        # the bincount path
    assert sum(len(b) > 3 for b in got) > 100
    for top in (1, 3, 8, 1000):
        assert [dense.rank_sync(t, top=top) for t in texts] == [loop.rank_sync(t, top=top) for t in texts]
        # best score first, equal scores by intent name (as heapq.nsmallest with this key did)
        assert [dense.rank_sync(t, top=top) for t in texts] == [
            [(i, round(min(s, 1.0), 4)) for i, s in sorted(b, key=lambda kv: (-kv[1], kv[0]))[:top]] for b in got]


def test_the_float_comparison_can_fail(examples: dict[str, list[str]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above sees a change of the order in which the scores are added: the
    Python loop adding each message's features in reverse order gives other floats."""
    import flows.matcher as fm

    texts = _paths_texts(examples)
    m = LexicalMatcher()
    m.fit(examples)
    before = [m._best(t) for t in texts]
    features = fm._features
    monkeypatch.setattr(fm, "DENSE_CELLS", 0)
    m.fit(examples)
    monkeypatch.setattr(fm, "_features", lambda t: dict(reversed(features(t).items())))
    after = [m._best(t) for t in texts]
    assert after != before
    assert [[i for i, _ in b] for b in after] == [[i for i, _ in b] for b in before]   # only the floats


@pytest.mark.parametrize("dense", [True, False])
def test_equal_scores_rank_by_intent_name(dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intents with the same score come in the order of their names, whatever the flows' order."""
    import flows.matcher as fm

    if not dense:
        monkeypatch.setattr(fm, "DENSE_CELLS", 0)
    m = LexicalMatcher()
    m.fit({"track": ["where is my parcel"], "b_track": ["where is my parcel"], "a_track": ["where is my parcel"],
           "refund": ["i want my money back"], "parcel": ["parcel"]})
    assert (m._dense is not None) is dense
    ranked = m.rank_sync("where is my parcel", top=4)
    assert [i for i, _ in ranked] == ["a_track", "b_track", "track", "parcel"]
    assert ranked[0][1] == ranked[1][1] == ranked[2][1] == 1.0 > ranked[3][1]
    assert [i for i, _ in m.rank_sync("where is my parcel", top=2)] == ["a_track", "b_track"]
