"""Entities a customer already gave (email, phone, amount, date, order number).

Flows use them to pre-fill slots and confirm ("Is that order AB12345?") instead of asking again.
Pure stdlib, no model. Every pattern uses bounded or separator-delimited repetition, so matching
is linear in the input length; :func:`extract` never raises on any string.

Overlaps are resolved greedily: among email, order number, date and amount the longer span wins,
ties go to the more specific kind (email > order number from the flow's pattern > date >
order number found after "order"/"ref" > amount). Phones come last and only fill the gaps, so a
date, an amount or an order number is never also a phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["KINDS", "Entity", "extract", "first"]

KINDS = ("email", "phone", "amount", "date", "order_number")


@dataclass(frozen=True, slots=True)
class Entity:
    kind: str    # one of KINDS
    value: str   # normalised: "jo@x.com", "+4477009001", "12.50 EUR", "2026-11-20", "AB12345"
    text: str    # the exact span in the message (== message[start:end])
    start: int
    end: int


# --- email -------------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")

# --- amount ------------------------------------------------------------------------------------
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}
_CODES = ("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "JPY", "INR")
_WORDS = {"dollar": "USD", "buck": "USD", "euro": "EUR", "pound": "GBP", "quid": "GBP",
          "yen": "JPY", "rupee": "INR"}
# 1,200.00 | 1.200,00 | 1200 | 12.50 | 12,50 -- never part of a longer number
_NUM = (r"(?<![0-9.,])(?P<num>[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]{1,2})?"
        r"|[0-9]{1,3}(?:\.[0-9]{3})+(?:,[0-9]{1,2})?|[0-9]{1,12}(?:[.,][0-9]{1,2})?)"
        r"(?![0-9]|[.,][0-9])")
_CODE = r"\b(?:" + "|".join(_CODES) + r")\b"
_SYM = "[" + "".join(_SYMBOLS) + "]"
_AMOUNT_PRE = re.compile(rf"(?P<cur>{_SYM}|{_CODE})[ \u00a0]?{_NUM}(?:[ \u00a0]?(?P<code>{_CODE}))?",
                         re.I)
_AMOUNT_POST = re.compile(
    rf"{_NUM}[ \u00a0]?(?P<cur>{_SYM}|{_CODE}|\b(?:dollars?|bucks|euros?|pounds?|quid|yen|rupees?)\b)",
    re.I)

# --- date --------------------------------------------------------------------------------------
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MON = (r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
        r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?")
_YEAR = r"(?:,?\s{1,3}(?P<y>[0-9]{4})(?![0-9]))?"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DATE_PATTERNS = (
    re.compile(r"(?<![0-9])(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})(?![0-9])"),
    re.compile(r"(?<![0-9.,/])(?P<d>[0-9]{1,2})(?P<sep>[/.\-])(?P<m>[0-9]{1,2})(?P=sep)"
               r"(?P<y>[0-9]{4})(?![0-9])"),
    re.compile(rf"\b{_MON}\s{{1,3}}(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?\b{_YEAR}", re.I),
    re.compile(rf"\b(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?\s{{1,3}}(?:of\s{{1,3}})?{_MON}{_YEAR}", re.I),
)
_RELATIVE = re.compile(r"\b(?:(?P<rel>today|yesterday|tomorrow)|last\s{1,3}(?P<wd>"
                       + "|".join(_WEEKDAYS) + r"))\b", re.I)

# --- order number ------------------------------------------------------------------------------
_ORDER_KW = re.compile(
    r"\b(?:order|ref(?:erence)?)\b(?:\s{0,3}(?:number|num|no|nr|id)\b\.?)?(?:\s{1,3}(?:is|was)\b)?"
    r"\s{0,3}[:#]?\s{0,3}(?P<tok>[A-Za-z0-9][A-Za-z0-9\-]{2,18}[A-Za-z0-9])(?![A-Za-z0-9\-])",
    re.I)

# --- phone -------------------------------------------------------------------------------------
# groups of digits joined by one separator (or " - "), "(555)" groups, optional leading "+"
_PHONE = re.compile(r"(?<![\w+])(?:\+ ?)?(?:\([0-9]{1,5}\)|[0-9]+)"
                    r"(?:[ .\-]?\([0-9]{1,5}\)|(?<=\))[0-9]+|(?:[ .\-]| - )[0-9]+)*(?!\w)")
_YEARISH = re.compile(r"(?:19|20)[0-9]{2}")
_DATEISH = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
                      r"|[0-9]{1,2}(?P<sep>[.\-])[0-9]{1,2}(?P=sep)[0-9]{4}")
_WORDCHAR = re.compile(r"\w")
_DECIMAL = re.compile(r"[0-9]+[.,][0-9]+")

_PRIORITY = {"email": 0, "order_pattern": 1, "date": 2, "order_kw": 3, "amount": 4}

_Cand = tuple[str, str, int, int, str]  # (rank key, value, start, end, kind)


def extract(text: str, *, order_pattern: str | None = None,
            today: date | None = None) -> list[Entity]:
    """All entities in ``text``, non-overlapping, sorted by start.

    ``order_pattern`` is the flow slot's regex (matched case-insensitively, value upper-cased);
    without it, order numbers are only taken after "order", "order number/no/#", "ref".
    ``today`` anchors relative dates and year-less dates (default: ``date.today()``).
    An invalid ``order_pattern`` raises ``re.error``: that is a flow-authoring bug, not input.
    """
    order_rx = re.compile(order_pattern, re.I) if order_pattern else None  # raises even on ""
    if not isinstance(text, str) or not text:
        return []
    day = today or date.today()
    cands: list[_Cand] = []
    cands += _emails(text)
    cands += _orders(text, order_rx)
    cands += _dates(text, day)
    cands += _amounts(text)

    taken = bytearray(len(text))  # 1 where an entity sits: O(span) overlap checks, not O(#entities)
    chosen: list[Entity] = []
    for rank, value, start, end, kind in sorted(cands, key=lambda c: (c[2] - c[3],
                                                                      _PRIORITY[c[0]], c[2])):
        if taken.find(1, start, end) == -1:
            taken[start:end] = b"\x01" * (end - start)
            chosen.append(Entity(kind, value, text[start:end], start, end))
    # Phones only fill the gaps. Each gap is searched on its own, so a number right after another
    # entity ("order 12345 07700 900123") is not lost inside a longer, overlapping phone match.
    pos = 0
    for start, end in sorted((e.start, e.end) for e in chosen) + [(len(text), len(text))]:
        for m in _PHONE.finditer(text, pos, start):
            value = _phone_value(m.group(0))
            if value and not _WORDCHAR.match(text, m.end()):  # glued to the next entity: no
                chosen.append(Entity("phone", value, m.group(0), m.start(), m.end()))
        pos = end
    chosen.sort(key=lambda e: (e.start, e.end))
    return chosen


def first(text: str, kind: str, *, order_pattern: str | None = None,
          today: date | None = None) -> Entity | None:
    """The first entity of ``kind`` in ``text`` (after overlap resolution), or None."""
    return next((e for e in extract(text, order_pattern=order_pattern, today=today)
                 if e.kind == kind), None)


def _emails(text: str) -> list[_Cand]:
    out = []
    for m in _EMAIL.finditer(text):
        tld = m.group(0).rsplit(".", 1)[1]
        if len(tld) >= 2 and tld.isalpha():
            out.append(("email", m.group(0).lower(), m.start(), m.end(), "email"))
    return out


def _orders(text: str, pattern: re.Pattern[str] | None) -> list[_Cand]:
    if pattern:
        return [("order_pattern", m.group(0).upper(), m.start(), m.end(), "order_number")
                for m in pattern.finditer(text) if m.end() > m.start()]
    return [("order_kw", m.group("tok").upper(), m.start("tok"), m.end("tok"), "order_number")
            for m in _ORDER_KW.finditer(text) if any(c.isdigit() for c in m.group("tok"))]


def _dates(text: str, today: date) -> list[_Cand]:
    out = []
    for pat in _DATE_PATTERNS:
        for m in pat.finditer(text):
            g = m.groupdict()
            month = _MONTHS.index(g["mon"][:3].lower()) + 1 if g.get("mon") else int(g["m"])
            d = _make_date(int(g["y"]) if g["y"] else None, month, int(g["d"]), today)
            if d:
                out.append(("date", d.isoformat(), m.start(), m.end(), "date"))
    for m in _RELATIVE.finditer(text):
        try:
            if m.group("rel"):
                offset = {"today": 0, "yesterday": -1, "tomorrow": 1}[m.group("rel").lower()]
                d = today + timedelta(days=offset)
            else:  # "last Monday": the most recent Monday strictly before today
                back = (today.weekday() - _WEEKDAYS.index(m.group("wd").lower())) % 7 or 7
                d = today - timedelta(days=back)
        except OverflowError:
            continue
        out.append(("date", d.isoformat(), m.start(), m.end(), "date"))
    return out


def _make_date(year: int | None, month: int, day: int, today: date) -> date | None:
    """A valid date; without a year, the candidate closest to ``today``."""
    years = [year] if year is not None else [today.year, today.year - 1, today.year + 1]
    valid = []
    for y in years:
        try:
            valid.append(date(y, month, day))
        except ValueError:
            pass
    return min(valid, key=lambda d: abs(d.toordinal() - today.toordinal()), default=None)


def _amounts(text: str) -> list[_Cand]:
    out = []
    for pat in (_AMOUNT_PRE, _AMOUNT_POST):
        for m in pat.finditer(text):
            cur = (m.groupdict().get("code") or m.group("cur")).lower()
            code = _SYMBOLS.get(cur) or _WORDS.get(cur.rstrip("s")) or cur.upper()
            out.append(("amount", f"{_money(m.group('num'))} {code}", m.start(), m.end(), "amount"))
    return out


def _money(num: str) -> str:
    """"1,200.5" -> "1200.50"; "12,50" -> "12.50"; "1.200" -> "1200.00"."""
    sep = max(num.rfind("."), num.rfind(","))
    whole, frac = (num[:sep], num[sep + 1:]) if sep != -1 and len(num) - sep - 1 <= 2 else (num, "")
    whole = whole.replace(",", "").replace(".", "").lstrip("0") or "0"
    return f"{whole}.{frac.ljust(2, '0')}"


def _phone_value(span: str) -> str | None:
    intl = span.startswith("+")
    if intl:
        span = span.replace("(0)", "", 1)  # +44 (0)20 ... -> +4420...
    groups = re.findall(r"[0-9]+", span)
    digits = "".join(groups)
    if not 7 <= len(digits) <= 15:
        return None
    if not intl and (all(len(g) == 4 and _YEARISH.fullmatch(g) for g in groups)
                     or _DECIMAL.fullmatch(span) or _DATEISH.fullmatch(span)):
        return None  # "2019 2020", "3.14159", an impossible date like "31.02.2026"
    return ("+" if intl else "") + digits
