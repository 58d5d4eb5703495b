"""Rule-based urgency / anger signal: one test table per cue group, levels, word boundaries,
safety negation, de-escalation, and robustness on odd input.

Expected scores follow the weight table in ``flows/nlu/urgency.py``.
"""

from __future__ import annotations

import re

import pytest

from flows.nlu.urgency import ELEVATED, HIGH, Urgency, urgency


def has_safety(u: Urgency) -> bool:
    return any(r.startswith("safety") for r in u.reasons)


# --- one cue group at a time: exact weight and reason --------------------------------------------

@pytest.mark.parametrize(("message", "reason", "score"), [
    # legal threat
    ("I'm calling my lawyer about this", "mentions a lawyer", 0.5),
    ("My attorney will be in touch", "mentions a lawyer", 0.5),
    ("I will sue you", "threatens to sue", 0.5),
    ("I'm going to sue", "threatens to sue", 0.5),
    ("I'll see you in court", "mentions court", 0.5),
    ("I'll take this to small claims", "mentions court", 0.5),
    ("I'm reporting you to the ombudsman", "mentions a regulator", 0.5),
    ("Trading standards will hear about this", "mentions a regulator", 0.5),
    ("I'll do a chargeback", "threatens a chargeback", 0.5),
    ("I will dispute the charge with my bank", "threatens a chargeback", 0.5),
    # leaving
    ("Please cancel my subscription", "wants to cancel", 0.35),
    ("I want to terminate my contract", "wants to cancel", 0.35),
    ("I'm closing my account", "closing the account", 0.35),
    ("I'm switching to Acme", "switching to a competitor", 0.35),
    ("Switching to another provider", "switching to a competitor", 0.35),
    ("Never again.", "says never again", 0.35),
    ("Last time I order from you", "says never again", 0.35),
    # repetition
    ("This is the third time", "third time", 0.35),
    ("for the 5th time", "5th time", 0.35),
    ("still waiting for my refund", "still waiting", 0.3),
    ("still not delivered", "still not", 0.3),
    ("it keeps happening", "keeps happening", 0.3),
    ("it happens every time", "every time", 0.3),
    ("I've asked 5 times", "5 times", 0.3),
    ("How many times do I have to ask", "how many times", 0.3),
    ("it broke again", "again", 0.15),
    # long wait
    ("I've waited 2 weeks for this", "2 weeks", 0.2),
    ("10 days and no parcel", "10 days", 0.2),
    ("I've been waiting for weeks", "for weeks", 0.2),
    # urgency words
    ("I need this urgently", "urgently", 0.3),
    ("please fix asap", "asap", 0.3),
    ("refund me immediately", "immediately", 0.3),
    ("I need it right now", "right now", 0.3),
    ("this is an emergency", "emergency", 0.3),
    ("I need it today!", "today!", 0.3),
    # strong negative
    ("This is unacceptable", "unacceptable", 0.25),
    ("what a scam", "scam", 0.25),
    ("worst service, simply the worst", "worst", 0.25),  # one word, counted once
    ("This is ridiculous and unacceptable", "ridiculous", 0.35),  # two words: +0.10
    # profanity, plain and obfuscated
    ("what the f*** is this", "profanity", 0.3),
    ("f**k this", "profanity", 0.3),
    ("sh*t service", "profanity", 0.3),
    ("this is bullshit", "profanity", 0.3),
    ("wtf", "profanity", 0.3),
    ("ffs, answer me", "profanity", 0.3),
    # shouting
    ("WHERE IS MY PARCEL", "shouting (caps)", 0.25),
    ("I NEED HELP NOW", "shouting (caps)", 0.25),
    ("WHY IS MY BOX LATE", "shouting (caps)", 0.25),  # all caps, even with short words
    ("Please help, my ORDER NUMBER IS WRONG", "shouting (caps)", 0.25),
    # repeated punctuation
    ("Where is it??", "??", 0.15),
    ("Seriously?!", "?!", 0.15),
    ("Hello!!!", "!!!", 0.15),
])
def test_cue_group(message: str, reason: str, score: float) -> None:
    u = urgency(message)
    assert u.reasons == (reason,)
    assert u.score == score


@pytest.mark.parametrize("message", [
    "I shipped it with UPS, DHL said OK",
    "UPS DHL OK",
    "My IBAN and SWIFT are correct",
    "I use GMAIL and my TV is LG",
    "HELLO",  # fewer than 8 letters
])
def test_acronyms_and_short_caps_are_not_shouting(message: str) -> None:
    u = urgency(message)
    assert "shouting (caps)" not in u.reasons
    assert u.score == 0.0


@pytest.mark.parametrize("message", ["Thanks!", "Is it here yet?", "ok! thanks. bye?"])
def test_single_punctuation_is_not_a_cue(message: str) -> None:
    assert urgency(message) == Urgency(0.0, "none", ())


# --- levels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "Hi, could you tell me when my parcel will arrive?",
    "What are your opening hours?",
    "Can I change the delivery address for order 12345?",
    "I'd like to cancel my order, please",  # cancelling an order is routine, not leaving
    "Thanks, that's all!",
])
def test_calm_message_scores_zero(message: str) -> None:
    assert urgency(message) == Urgency(0.0, "none", ())


def test_a_repeat_contact_alone_is_elevated() -> None:
    u = urgency("third time I ask, where is my refund")
    assert u.reasons == ("third time",)
    assert (u.score, u.level) == (0.35, "elevated")
    # other repetition cues need a second cue
    assert urgency("still waiting for my refund").level == "none"


@pytest.mark.parametrize("message", [
    "third time I ask, where is my refund?!",
    "third time I ask, I've waited 2 weeks for my refund",
    "third time I ask, where is my refund, this is ridiculous",
    "THIRD TIME I ASK, WHERE IS MY REFUND",
])
def test_repetition_with_another_cue_is_at_least_elevated(message: str) -> None:
    u = urgency(message)
    assert "third time" in u.reasons
    assert u.level in ("elevated", "high")
    assert u.score >= ELEVATED


def test_legal_threat_plus_repetition_is_high() -> None:
    u = urgency("I'm going to sue you, this is the third time!!")
    assert u.level == "high"
    assert u.score >= HIGH
    assert u.reasons == ("threatens to sue", "third time", "!!")


@pytest.mark.parametrize("message", [
    "I'll see you in court",
    "cancel my subscription",
    "this is ridiculous and unacceptable",
])
def test_single_strong_cue_is_elevated(message: str) -> None:
    assert urgency(message).level == "elevated"


def test_everything_at_once_is_clamped_to_one() -> None:
    u = urgency("We'll sue you, I am livid, this is the worst, third time, absolutely furious!!! WTF")
    assert (u.score, u.level) == (1.0, "high")
    assert len(u.reasons) >= 5


# --- safety / health -----------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "reason"), [
    ("the charger caught fire", "safety: caught fire"),
    ("the battery exploded", "safety: exploded"),
    ("the plug sparked", "safety: sparked"),
    ("there's a burning smell from the kettle", "safety: burning"),
    ("my son was hurt by the toy", "safety: hurt"),
    ("I had an allergic reaction after eating it", "safety: allergic reaction"),
    ("this heater is unsafe", "safety: unsafe"),
    ("it doesn't charge and caught fire", "safety: caught fire"),  # negation ends at "and"
    ("It won't turn on, smoke everywhere", "safety: smoke"),       # ... and at a comma
    ("I can't believe it caught fire", "safety: caught fire"),
    ("No, it caught fire", "safety: caught fire"),
])
def test_safety_alone_is_high(message: str, reason: str) -> None:
    u = urgency(message)
    assert u.level == "high"
    assert u.score >= HIGH
    assert u.reasons[0] == reason


@pytest.mark.parametrize("message", [
    "The parcel was crushed but nobody was hurt",
    "no one was hurt",
    "no-one got hurt, thankfully",
    "I wasn't hurt",
    "I didn\u2019t get hurt",  # curly apostrophe
    "no injuries, just a dent",
    "It's not dangerous, just annoying",
    "delivered without injury",
    "there was no smoke",
])
def test_negated_safety_is_skipped(message: str) -> None:
    u = urgency(message)
    assert not has_safety(u)
    assert u.level == "none"


@pytest.mark.parametrize(("message", "reason"), [
    ("The charger sparked but nobody was hurt", "safety: sparked"),
    ("nobody was hurt when it caught fire", "safety: caught fire"),
    ("no injuries but the phone caught fire", "safety: caught fire"),
])
def test_negation_only_skips_the_negated_hit(message: str, reason: str) -> None:
    u = urgency(message)
    assert u.reasons[0] == reason
    assert u.level == "high"


def test_safety_stays_high_when_de_escalated() -> None:
    u = urgency("not urgent, but the charger caught fire")
    assert has_safety(u)
    assert (u.score, u.level) == (HIGH, "high")


# --- word boundaries -----------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "I have an issue with my order",
    "The issue you mentioned is fixed",
    "I love my new suede boots",
    "Thanks for the courtesy call",
    "Your staff were very courteous",
    "I'm against paper invoices",   # "again"
    "I ordered the scampi",         # "scam"
    "The firewall blocks the app",  # "fire"
    "I ordered smoked salmon",      # "smoke"
    "Please check the pursuit",     # "sue"
])
def test_words_inside_other_words_do_not_trigger(message: str) -> None:
    assert urgency(message) == Urgency(0.0, "none", ())


# --- de-escalation -------------------------------------------------------------------------------

@pytest.mark.parametrize("calm", ["Not urgent, but", "No rush, but", "No hurry, but",
                                  "Whenever you can:"])
def test_de_escalation_lowers_the_score(calm: str) -> None:
    angry = "this is ridiculous, where is my refund??"
    base, softened = urgency(angry), urgency(f"{calm} {angry}")
    assert base.level == "elevated"
    assert softened.score == pytest.approx(base.score - 0.3)
    assert softened.level == "none"
    assert softened.reasons[-1].startswith("de-escalated (")


@pytest.mark.parametrize("message", ["This is not urgent", "It's not that urgent",
                                     "no emergency, just a question"])
def test_negated_urgency_word_is_not_an_urgency_cue(message: str) -> None:
    u = urgency(message)
    assert u.score == 0.0
    assert len(u.reasons) == 1 and u.reasons[0].startswith("de-escalated")


# --- invariants and robustness ---------------------------------------------------------------------

TRIGGERED = [
    "the charger caught fire",
    "I'm going to sue you, this is the third time!!",
    "third time I ask, where is my refund",
    "WHERE IS MY PARCEL",
    "what the f*** is this",
    "Where is it??",
    "cancel my subscription asap, this is a scam",
    "!" * 10_000,
    "WHERE IS MY PARCEL, I WANT A REFUND NOW!!! " * 250,
]


@pytest.mark.parametrize("message", TRIGGERED)
def test_triggered_message_has_readable_reasons(message: str) -> None:
    u = urgency(message)
    assert u.score > 0
    assert u.reasons
    assert all(isinstance(r, str) and r.strip() and len(r) <= 60 for r in u.reasons)


@pytest.mark.parametrize("message", TRIGGERED + [
    "Hi, could you tell me when my parcel will arrive?",
    "not urgent",
    "We'll sue you, I am livid, this is the worst, third time, absolutely furious!!! WTF",
])
def test_score_is_bounded_and_level_matches_it(message: str) -> None:
    u = urgency(message)
    assert 0.0 <= u.score <= 1.0
    expected = "high" if u.score >= HIGH else "elevated" if u.score >= ELEVATED else "none"
    assert u.level == expected


@pytest.mark.parametrize("message", ["", "   ", "\n\t", None, 123, b"I will sue you"])
def test_empty_or_non_string_input_is_calm(message: object) -> None:
    assert urgency(message) == Urgency(0.0, "none", ())  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [
    "😀😀😀", "🔥🔥🔥", "\x00\x01", "\ud800", "x" * 10_000, "a " * 5_000, "no fire " * 1_250,
    "ÉÀÈ ÇÂÊ ÎÔÛ", "ΑΥΤΟ ΕΙΝΑΙ ΑΠΑΡΑΔΕΚΤΟ", "日本語のメッセージです",
])
def test_odd_input_never_raises(message: str) -> None:
    u = urgency(message)
    assert 0.0 <= u.score <= 1.0
    assert u.level in ("none", "elevated", "high")
    assert isinstance(u.reasons, tuple)


def test_long_repeated_punctuation_reason_is_truncated() -> None:
    assert urgency("!" * 10_000) == Urgency(0.15, "none", ("!!!!!",))


# --- the screen that skips the scoring of a message with no cue ----------------------------------

def _texts() -> list[str]:
    """Every string of this file (the test tables above) and every text of the message fixtures,
    each also in capitals, in title case, with a calming preamble and with a trailing "again!!"."""
    import ast
    import csv
    from pathlib import Path

    here = Path(__file__)
    base = [n.value for n in ast.walk(ast.parse(here.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and n.value.strip()]
    for name in ("complaint_messages.csv", "neutral_messages.csv", "complaints_heldout_a.csv",
                 "complaints_heldout_b.csv"):
        with open(here.parent.parent / "fixtures" / name, newline="") as f:
            base += [row["text"] for row in csv.DictReader(f)]
    base += ["I’m switching to Acme", "switching to acme", "SWITCHING TO ACME", "Ich bin wütend!!",
             "Ça suffit, c'est inacceptable", "ſue you", "I will ſue you", "KEEPS HAPPENING",
             "my parcel is late again", "nobody was hurt", "it caught fire", "no rush, whenever you can"]
    out = []
    for t in base:
        out += [t, t.upper(), t.title(), f"Not urgent, but {t}", f"{t} again!!"]
    return out


def _differences() -> list[tuple[str, Urgency, Urgency]]:
    from flows.nlu import urgency as u

    diffs = []
    for t in _texts():
        fast, full = u._score.__wrapped__(t), u._full_score(t.replace("\u2019", "'"))
        if fast != full:
            diffs.append((t, fast, full))
    return diffs


def test_the_screen_gives_what_the_full_scoring_gives() -> None:
    """The screen (flows/nlu/urgency.py _screen) changes no result: on thousands of texts, with
    cues of every group and without any, the same score, level and reasons as scoring every rule."""
    assert len(_texts()) > 3000
    assert _differences() == []


def test_a_screen_that_misses_a_cue_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: a screen without the legal rules changes results."""
    from flows.nlu import urgency as u

    legal = [p.pattern for p, _, _ in dict(u._GROUPS)["legal"]]
    kept = [p for p in u._screen_patterns() if p not in legal]
    assert len(kept) == len(u._screen_patterns()) - len(legal)
    monkeypatch.setattr(u, "_SCREEN", u._screen(kept))
    u._score.cache_clear()
    try:
        assert any("lawyer" in t.lower() for t, _, _ in _differences())
    finally:
        u._score.cache_clear()


def _first_chars(items: list) -> set[str]:
    """What the first character of a match of the parsed ``items`` can be: "w" (a letter, a digit
    or "_"), or "other" (anything else, or not known: the check below then fails)."""
    from re import _constants as c

    if not items:
        return {"other"}
    op, av = items[0]
    if op is c.AT:                                       # \b: look at what follows
        return _first_chars(items[1:])
    if op is c.LITERAL:
        return {"w" if re.match(r"\w", chr(av)) else "other"}
    if op is c.SUBPATTERN:
        return _first_chars(list(av[3].data) + list(items[1:]))
    if op is c.BRANCH:
        return set().union(*(_first_chars(list(b.data) + list(items[1:])) for b in av[1]))
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        low, _, sub = av
        first = _first_chars(list(sub.data) + list(items[1:]))
        return first if low >= 1 else first | _first_chars(items[1:])
    if op is c.IN:
        ok = all((o is c.LITERAL and re.match(r"\w", chr(a))) or (o is c.RANGE and all(
            re.match(r"\w", chr(x)) for x in range(a[0], a[1] + 1)))
            or (o is c.CATEGORY and a in (c.CATEGORY_DIGIT, c.CATEGORY_WORD)) for o, a in av)
        return {"w" if ok else "other"}
    return {"other"}


def test_every_screened_rule_starts_a_word() -> None:
    """The screen (flows/nlu/urgency.py _screen) tries the rules only where a word starts: right
    only if every rule is ``\\b`` and then a letter or a digit, which the parsed patterns show."""
    from re import _parser

    from flows.nlu import urgency as u

    patterns = u._screen_patterns()
    assert len(patterns) == 2 + sum(len(rules) for _, rules in u._GROUPS)
    for p in patterns:
        assert p.startswith(r"\b"), p
        assert _first_chars(list(_parser.parse(p).data)) == {"w"}, p
    # the check can fail: a rule that may start with punctuation, or with nothing
    assert _first_chars(list(_parser.parse(r"\b(?:ok|!!)").data)) == {"w", "other"}
    assert "other" in _first_chars(list(_parser.parse(r"\b(?:ok)?").data))
    with pytest.raises(ValueError):
        u._screen([r"(?:ok)"])
