"""Entity extraction: emails, phones, amounts, dates and order numbers from customer messages.

Covers normalised values, exact spans, overlap resolution between kinds, ``first()``, flow
``order_pattern``s, and robustness (odd and very long input never raises).
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from flows.nlu.entities import KINDS, Entity, extract, first

TODAY = date(2026, 11, 23)  # a Monday


def found(text: str, **kw: object) -> list[tuple[str, str, str]]:
    """(kind, value, text) of every entity, with ``today`` pinned."""
    kw.setdefault("today", TODAY)
    return [(e.kind, e.value, e.text) for e in extract(text, **kw)]  # type: ignore[arg-type]


def assert_well_formed(message: str, entities: list[Entity]) -> None:
    """Spans are exact, sorted, non-overlapping, and of a known kind."""
    for e in entities:
        assert e.kind in KINDS
        assert 0 <= e.start < e.end <= len(message)
        assert message[e.start:e.end] == e.text
    for a, b in zip(entities, entities[1:]):
        assert a.end <= b.start


# --- email -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "value", "span"), [
    ("my email is jo.smith@example.com", "jo.smith@example.com", "jo.smith@example.com"),
    ("My email is Jo.Smith@Example.COM.", "jo.smith@example.com", "Jo.Smith@Example.COM"),
    ("email me at JO@X.COM!", "jo@x.com", "JO@X.COM"),
    ("reach me (jo+orders@mail.example.co.uk), thanks", "jo+orders@mail.example.co.uk",
     "jo+orders@mail.example.co.uk"),
    ("it's jo_99@x.io?", "jo_99@x.io", "jo_99@x.io"),
])
def test_email(message: str, value: str, span: str) -> None:
    assert found(message) == [("email", value, span)]


@pytest.mark.parametrize("message", [
    "jo@localhost",          # no dot in the domain
    "jo@x.c",                # one-letter TLD
    "meet me @ the store",
    "price@2 each",
])
def test_not_an_email(message: str) -> None:
    assert first(message, "email", today=TODAY) is None


# --- phone -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "value", "span"), [
    ("call me on +44 7700 900123 please", "+447700900123", "+44 7700 900123"),
    ("my number is (555) 123-4567", "5551234567", "(555) 123-4567"),
    ("ring 07700-900-123 after lunch", "07700900123", "07700-900-123"),
    ("Call +1 (555) 123-4567.", "+15551234567", "+1 (555) 123-4567"),
    ("landline +44 (0)20 7946 0958", "+442079460958", "+44 (0)20 7946 0958"),
    ("text 555.123.4567", "5551234567", "555.123.4567"),
    ("Text 07700900123.", "07700900123", "07700900123"),
])
def test_phone(message: str, value: str, span: str) -> None:
    assert found(message) == [("phone", value, span)]


@pytest.mark.parametrize(("message", "expected"), [
    ("it was delivered 20/11/2026", [("date", "2026-11-20", "20/11/2026")]),
    ("it was delivered 2026-11-20", [("date", "2026-11-20", "2026-11-20")]),
    ("it was delivered 20.11.2026", [("date", "2026-11-20", "20.11.2026")]),
    ("I paid $1,234,567 for this?", [("amount", "1234567.00 USD", "$1,234,567")]),
    ("refund 1234567 USD now", [("amount", "1234567.00 USD", "1234567 USD")]),
    ("customer since 2019 2020", []),
    ("customer since 2019 2020 2021", []),
    ("between 2019-2020", []),
    ("pi is 3.14159265", []),
    ("it weighs 1234.5678 kg", []),
    ("where is order 7700900123", [("order_number", "7700900123", "7700900123")]),
    ("ref 07700900123", [("order_number", "07700900123", "07700900123")]),
    ("room 12345", []),  # too short for a phone, no order keyword
])
def test_not_a_phone(message: str, expected: list[tuple[str, str, str]]) -> None:
    assert found(message) == expected


@pytest.mark.parametrize(("message", "other"), [
    ("order 12345 07700 900123", ("order_number", "12345", "12345")),
    ("paid $25 07700 900123", ("amount", "25.00 USD", "$25")),
    ("on 20/11/2026 07700 900123", ("date", "2026-11-20", "20/11/2026")),
    ("jo@x.com 07700 900123", ("email", "jo@x.com", "jo@x.com")),
])
def test_phone_right_after_another_entity_is_still_found(message: str,
                                                          other: tuple[str, str, str]) -> None:
    assert found(message) == [other, ("phone", "07700900123", "07700 900123")]


# --- amount ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "value", "span"), [
    ("I was charged $25 twice", "25.00 USD", "$25"),
    ("I paid 25 USD", "25.00 USD", "25 USD"),
    ("they took €12,50 from my card", "12.50 EUR", "€12,50"),
    ("it was 1,200.00 dollars", "1200.00 USD", "1,200.00 dollars"),
    ("that's 25 quid for a cable", "25.00 GBP", "25 quid"),
    ("£1.200,00 for a sofa", "1200.00 GBP", "£1.200,00"),
    ("EUR 12,50 extra", "12.50 EUR", "EUR 12,50"),
    ("only $0.99", "0.99 USD", "$0.99"),
    ("$25.5 shipping", "25.50 USD", "$25.5"),
    ("100 bucks!", "100.00 USD", "100 bucks"),
    ("25 pounds", "25.00 GBP", "25 pounds"),
    ("charged 25.00 eur", "25.00 EUR", "25.00 eur"),
    ("charged 12,50\u00a0EUR", "12.50 EUR", "12,50\u00a0EUR"),
    ("$25 USD", "25.00 USD", "$25 USD"),
])
def test_amount(message: str, value: str, span: str) -> None:
    assert found(message) == [("amount", value, span)]


def test_two_amounts_in_one_message() -> None:
    assert found("£5 and $10") == [("amount", "5.00 GBP", "£5"), ("amount", "10.00 USD", "$10")]


@pytest.mark.parametrize("message", ["I paid 25", "I need 3 of them", "size 12.5"])
def test_number_without_currency_is_not_an_amount(message: str) -> None:
    assert first(message, "amount", today=TODAY) is None


# --- date --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "value", "span"), [
    ("it was delivered 2026-11-20", "2026-11-20", "2026-11-20"),
    ("it was delivered on 20/11/2026", "2026-11-20", "20/11/2026"),
    ("ordered 12.11.2026", "2026-11-12", "12.11.2026"),
    ("it arrived Nov 3rd", "2026-11-03", "Nov 3rd"),
    ("it arrived Nov. 3", "2026-11-03", "Nov. 3"),
    ("I ordered on 3 November 2025", "2025-11-03", "3 November 2025"),
    ("I ordered on November 3, 2025", "2025-11-03", "November 3, 2025"),
    ("on the 3rd of November", "2026-11-03", "3rd of November"),
    ("3rd November 2025", "2025-11-03", "3rd November 2025"),
    # year-less: the candidate closest to today (documented), so early January is next year
    ("deliver by Jan 5", "2027-01-05", "Jan 5"),
])
def test_date(message: str, value: str, span: str) -> None:
    assert found(message) == [("date", value, span)]


@pytest.mark.parametrize(("message", "value", "span"), [
    ("it should have come today", "2026-11-23", "today"),
    ("I ordered it yesterday", "2026-11-22", "yesterday"),
    ("promised for tomorrow", "2026-11-24", "tomorrow"),
    ("I ordered last Monday", "2026-11-16", "last Monday"),  # strictly before today (a Monday)
    ("I ordered last Sunday", "2026-11-22", "last Sunday"),
    ("LAST FRIDAY it broke", "2026-11-20", "LAST FRIDAY"),
])
def test_relative_date(message: str, value: str, span: str) -> None:
    assert found(message) == [("date", value, span)]


def test_relative_date_defaults_to_the_real_today() -> None:
    before = date.today().isoformat()
    ent = first("it came today", "date")
    after = date.today().isoformat()
    assert ent is not None and ent.value in (before, after)


@pytest.mark.parametrize("message", [
    "delivered 31/02/2026",
    "delivered 31.02.2026",
    "delivered 31-02-2026",
    "delivered 2026-02-30",
    "delivered 2026-13-01",
    "delivered Feb 30",
    "delivered Feb 29",  # no leap year within a year of 2026
])
def test_invalid_date_is_not_extracted_as_anything(message: str) -> None:
    assert found(message) == []


# --- order number ------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "value", "span"), [
    ("Where is order 12345?", "12345", "12345"),
    ("order #AB12345 hasn't arrived", "AB12345", "AB12345"),
    ("my order number is ab-12345", "AB-12345", "ab-12345"),
    ("Order No: 98765", "98765", "98765"),
    ("order no. 98765", "98765", "98765"),
    ("order: 98765", "98765", "98765"),
    ("my order was x99812 I think", "X99812", "x99812"),
    ("ref xy9876", "XY9876", "xy9876"),
    ("reference number AB-123", "AB-123", "AB-123"),
])
def test_order_number_after_keyword(message: str, value: str, span: str) -> None:
    assert found(message) == [("order_number", value, span)]


@pytest.mark.parametrize("message", [
    "I want to order something",
    "what's my order status",
    "my order is late",
    "my order from last week",
    "refund 12345",           # "ref" must be a whole word
    "ab12345 is missing",     # no keyword and no flow pattern
])
def test_no_order_number(message: str) -> None:
    assert first(message, "order_number", today=TODAY) is None


@pytest.mark.parametrize(("message", "expected"), [
    ("Is ab12345 on its way?", [("AB12345", "ab12345")]),
    ("AB12345 and cd54321 both missing", [("AB12345", "AB12345"), ("CD54321", "cd54321")]),
    ("order 12345", []),  # the flow's pattern replaces the keyword rule
])
def test_order_pattern(message: str, expected: list[tuple[str, str]]) -> None:
    ents = extract(message, order_pattern=r"[A-Z]{2}\d{5}", today=TODAY)
    assert [(e.value, e.text) for e in ents if e.kind == "order_number"] == expected


def test_order_pattern_beats_phone_and_keeps_the_phone() -> None:
    message = "order AB12345, call 0123456789"
    assert found(message, order_pattern=r"[A-Z]{2}\d{5}") == [
        ("order_number", "AB12345", "AB12345"), ("phone", "0123456789", "0123456789")]


@pytest.mark.parametrize("pattern", ["[A-Z", "(ab", "*x"])
@pytest.mark.parametrize("message", ["order AB12345", ""])
def test_invalid_order_pattern_raises(pattern: str, message: str) -> None:
    with pytest.raises(re.error):
        extract(message, order_pattern=pattern)


# --- overlaps and spans ------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "expected"), [
    # an order number is never also a phone
    ("my order is 5551234567, phone 07700 900123",
     [("order_number", "5551234567", "5551234567"), ("phone", "07700900123", "07700 900123")]),
    # same span: date beats an order number found after "order"
    ("my order 2026-11-20", [("date", "2026-11-20", "2026-11-20")]),
    # the longer span wins: the email swallows the "ref jo123" token
    ("ref jo123@x.com", [("email", "jo123@x.com", "jo123@x.com")]),
    # digits inside an email are not a phone
    ("jo07700900123@x.com", [("email", "jo07700900123@x.com", "jo07700900123@x.com")]),
])
def test_overlap_resolution(message: str, expected: list[tuple[str, str, str]]) -> None:
    assert found(message) == expected


def test_realistic_message_with_every_kind() -> None:
    message = ("Hi, I paid $1,200.00 on 20/11/2026 for order #AB12345 but nothing came. "
               "Call 07700 900123 or write to Jo.Smith@Example.com - urgent!")
    ents = extract(message, today=TODAY)
    assert_well_formed(message, ents)
    assert [(e.kind, e.value) for e in ents] == [
        ("amount", "1200.00 USD"), ("date", "2026-11-20"), ("order_number", "AB12345"),
        ("phone", "07700900123"), ("email", "jo.smith@example.com")]


@pytest.mark.parametrize("message", [
    "order 12345 07700 900123 $25 2026-11-20 jo@x.com",
    "(555) 123-4567 / +44 7700 900123 / 20.11.2026 / €12,50 / ref ZZ-9",
    "€12,50€12,50 1.234.567 12/11/2026/2026 order#1234#",
])
def test_spans_are_exact_sorted_and_disjoint(message: str) -> None:
    ents = extract(message, today=TODAY)
    assert ents
    assert_well_formed(message, ents)


# --- first() -----------------------------------------------------------------------------------

def test_first_returns_the_earliest_of_a_kind() -> None:
    message = "call 07700 900123 or +44 20 7946 0958"
    ent = first(message, "phone", today=TODAY)
    assert ent == Entity("phone", "07700900123", "07700 900123", 5, 17)


@pytest.mark.parametrize(("message", "kind", "kw", "value"), [
    ("paid $25 on 2026-11-20", "date", {}, "2026-11-20"),
    ("paid $25 on 2026-11-20", "amount", {}, "25.00 USD"),
    ("paid $25 on 2026-11-20", "email", {}, None),
    ("order 7700900123", "phone", {}, None),  # taken by the order number
    ("is ab12345 here", "order_number", {"order_pattern": r"[a-z]{2}\d{5}"}, "AB12345"),
    ("", "email", {}, None),
])
def test_first(message: str, kind: str, kw: dict[str, str], value: str | None) -> None:
    ent = first(message, kind, today=TODAY, **kw)
    assert (ent.value if ent else None) == value


# --- robustness --------------------------------------------------------------------------------

@pytest.mark.parametrize("message", ["", None, 123, b"jo@x.com", ["order 12345"]])
def test_empty_or_non_string_input_returns_nothing(message: object) -> None:
    assert extract(message) == []  # type: ignore[arg-type]
    assert first(message, "email") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [
    "   \n\t  ", "\x00\x01\x02", "\ud800 lone surrogate", "😀📦🔥" * 50, "مرحبا 12345 שלום",
    "@@@@....----++++", "((((((((((", "1-" * 500, "+" * 500, "order " * 500, "Nov " * 500,
])
def test_odd_input_never_raises(message: str) -> None:
    ents = extract(message, today=TODAY)
    assert_well_formed(message, ents)


def test_entities_inside_emoji_text() -> None:
    assert found("😀📦 order 123456 😀") == [("order_number", "123456", "123456")]


def test_very_long_realistic_input() -> None:
    chunk = "Hi, order #AB12345 paid $25 on 2026-11-20, call +44 7700 900123 or jo@x.com. "
    n = 100_000 // len(chunk) + 1
    message = chunk * n
    assert len(message) >= 100_000
    ents = extract(message, today=TODAY)
    assert_well_formed(message, ents)
    assert {k: sum(e.kind == k for e in ents) for k in KINDS} == dict.fromkeys(KINDS, n)


@pytest.mark.parametrize("message", [
    "1 " * 50_000, "1-" * 50_000, "(1)" * 33_334, "9" * 100_000, "a@" * 50_000, "a." * 50_000,
])
def test_very_long_pathological_input(message: str) -> None:
    assert extract(message, today=TODAY) == []
