"""Personal data in what customers write: found, masked per place, told about once.

:class:`Detector` finds, in any text:

- ``card``: payment card numbers, 13-19 digits with optional spaces or dashes, passing the Luhn
  check (a run of digit groups is searched for its Luhn-valid stretch, so "order 1234 4111 1111
  1111 1111" masks only the card);
- ``cvc``: card security codes, as ``cvv 123``, ``CVC: 1234``, ``security code 123`` (anywhere),
  and a bare 3-4 digit number right after a card (``4111 1111 1111 1111 12/27 123``);
- ``iban``: IBANs with or without spaces, passing the ISO 13616 mod-97 check;
- ``email``: e-mail addresses;
- ``phone``: phone numbers in international (``+44 20 7946 0958``) and the national formats of
  ``privacy.phone_regions`` (``030 12345678`` in DE, ``(415) 555-2671`` in US), found by
  Google's libphonenumber (the ``phonenumbers`` package), which knows every country's
  numbering plan, so dates, amounts, order numbers and ids are not taken for numbers;
- any pattern an admin names in ``privacy.patterns`` (a national id format, ...).

Order numbers (AB123456, #100234), dates, amounts (€1,234.56), ticket references (C-1042) and
timestamps are left alone.

:class:`Privacy` applies ``privacy.policy``: per kind, for each place a text goes (``stored``,
``logs``, ``slack``, ``desk``), ``clear`` or ``mask`` (and for the desk ``owner``: clear to the
agent who owns the conversation, masked to everyone else). The one-line calls for the desks are
:func:`slack_text` (a Slack copy) and :func:`desk_text` (the web desk); they use the policy
:func:`configure` installed at start-up (the defaults before that).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

BUILTIN_KINDS = ("card", "cvc", "iban", "email", "phone")
PLACES = ("stored", "logs", "slack", "desk")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


# -- cards -------------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"(?<![\d.,/])\d(?:[ -]?\d){12,}(?![\d/])")
_NO_DIGITS = str.maketrans("", "", "0123456789")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> list[Finding]:
    out: list[Finding] = []
    for m in _DIGIT_RUN.finditer(text):
        run, base = m.group(0), m.start()
        # the groups of the run with their offsets; the card is the first stretch of whole groups
        # (or the whole run) of 13-19 digits passing Luhn; what follows may hold another card
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", run)]
        i = 0
        while i < len(groups):
            best = 0
            for j in range(i + 1, len(groups) + 1):
                digits = "".join(run[a:b] for a, b in groups[i:j])
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn(digits):
                    best = j
            if best:
                s, e = groups[i][0], groups[best - 1][1]
                out.append(Finding("card", base + s, base + e, run[s:e]))
                i = best
            else:
                i += 1
    return out


# a security code named as such; or 3-4 digits right after a card (after an optional expiry)
_CVC_NAMED = re.compile(r"\b(?:cvv2?|cvc2?|csc|cid|security\s+code|card\s+code|verification\s+code)\b"
                        r"(?:\s*(?:is|number|no\.?|#|:|=|-))*\s*(\d{3,4})\b", re.I)
_CVC_AFTER = re.compile(r"^[\s,;/-]*(?:(?:exp(?:iry|ires)?\.?:?\s*)?\d{1,2}\s*/\s*\d{2,4}[\s,;-]+)?(\d{3,4})\b")


def _cvcs(text: str, cards: Sequence[Finding]) -> list[Finding]:
    out = [Finding("cvc", m.start(1), m.end(1), m.group(1)) for m in _CVC_NAMED.finditer(text)]
    for c in cards:
        m = _CVC_AFTER.match(text[c.end:c.end + 40])
        if m:
            out.append(Finding("cvc", c.end + m.start(1), c.end + m.end(1), m.group(1)))
    return out


# -- IBANs -------------------------------------------------------------------------

_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}\b")


def iban_valid(candidate: str) -> bool:
    s = re.sub(r"\s", "", candidate).upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit() or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def _ibans(text: str) -> list[Finding]:
    out = []
    for m in _IBAN.finditer(text):
        value = m.group(0)
        # a trailing word glued on by the optional spaces ("DE89 3704 ... 00 please") is not part of it
        while value and not iban_valid(value):
            cut = value.rfind(" ")
            if cut < 0:
                value = ""
                break
            value = value[:cut]
        if value:
            out.append(Finding("iban", m.start(), m.start() + len(value), value))
    return out


# -- e-mail ------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")


# -- phones ------------------------------------------------------------------------

# something a phone number could be: 7 or more digits with only separators between them
_PHONE_CANDIDATE = re.compile(r"(?:\+|\(|\b)\d(?:[\s().-]{0,3}\d){6,}")


def _phones(text: str, regions: Sequence[str]) -> list[Finding]:
    """Phone numbers in ``text``: what libphonenumber's matcher finds in the whole text, found by
    running it only on the stretches that could hold a number (see :func:`_phone_windows`)."""
    if not _PHONE_CANDIDATE.search(text):
        return []
    regions = tuple(regions) or ("ZZ",)
    need = _min_phone_digits(regions)
    out: list[Finding] = []
    for start, window in _phone_windows(text):
        if sum(ch.isdigit() for ch in window) < need:
            continue
        out += [Finding("phone", start + a, start + b, raw) for a, b, raw in _phones_in(window, regions)]
    return out


def _phones_full(text: str, regions: Sequence[str]) -> list[Finding]:
    """The matcher over the whole text (what :func:`_phones` equals; the benchmark's baseline)."""
    if not _PHONE_CANDIDATE.search(text):
        return []
    return [Finding("phone", a, b, raw) for a, b, raw in _match_phones(text, tuple(regions) or ("ZZ",))]


# A stretch of characters a phone number candidate of libphonenumber's matcher is made of (digits,
# its punctuation, + and opening brackets, white space) and ':' (its time-stamp check reads it).
# Every candidate the matcher tries lies inside one such stretch, so running it on each stretch
# with one character of context either side (which its check of the characters around a number
# reads) finds the same numbers as running it on the whole text; only an extension written with
# words ("ext. 12") is left off the number's end.
_WINDOW = re.compile(r"[\d\s:+＋(\[（［\-x‐-―−ー－-／\xa0\xad\u200b\u2060\u3000()（）［］.\]/~⁓∼～]+")


def _phone_windows(text: str) -> list[tuple[int, str]]:
    """(offset, stretch with one character of context either side) for each stretch holding a digit."""
    out = []
    for m in _WINDOW.finditer(text):
        a, b = m.span()
        if any(ch.isdigit() for ch in m.group(0)):
            a, b = max(a - 1, 0), min(b + 1, len(text))
            out.append((a, text[a:b]))
    return out


@functools.lru_cache(maxsize=8192)
def _phones_in(window: str, regions: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """The matcher's numbers in one stretch; remembered (log lines repeat their ids, years, ports)."""
    return tuple(_match_phones(window, regions))


def _match_phones(text: str, regions: tuple[str, ...]) -> list[tuple[int, int, str]]:
    import phonenumbers
    from phonenumbers import Leniency, PhoneNumberMatcher

    out = []
    for region in regions:
        try:
            for m in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
                out.append((m.start, m.end, m.raw_string))
        except phonenumbers.NumberParseException:   # pragma: no cover - the matcher catches its own
            continue
    return out


@functools.lru_cache(maxsize=64)
def _min_phone_digits(regions: tuple[str, ...]) -> int:
    """The fewest digits a valid number can have, from libphonenumber's own metadata: the shortest
    national number of ``regions``, and of any country with its country code (written +CC ...). A
    stretch with fewer digits cannot hold one (and is not given to the matcher)."""
    import phonenumbers
    from phonenumbers import PhoneMetadata

    def shortest(md: Any) -> int | None:
        lengths = [n for n in (md.general_desc.possible_length or ()) if n > 0] if md and md.general_desc else []
        return min(lengths) if lengths else None

    best = 99
    for r in phonenumbers.SUPPORTED_REGIONS:
        md = PhoneMetadata.metadata_for_region(r)
        n = shortest(md)
        if n is not None:
            best = min(best, len(str(md.country_code)) + n)
            if r in regions:
                best = min(best, n)
    for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        n = shortest(PhoneMetadata.metadata_for_nongeo_region(cc))
        if n is not None:
            best = min(best, len(str(cc)) + n)
    return max(1, min(best, 99))


def normalize_phone(value: str, regions: Sequence[str] = ("GB", "DE", "FR", "US")) -> str | None:
    """``+4420...`` (E.164) for a phone number in any of the given formats, or None."""
    import phonenumbers

    for region in list(regions) + ["ZZ"]:
        try:
            n = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(n):
            return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
    return None


# -- masks -------------------------------------------------------------------------

def mask_value(kind: str, value: str, custom_masks: Mapping[str, str] | None = None) -> str:
    """How a found value is shown when masked."""
    if kind == "card":
        digits = re.sub(r"\D", "", value)
        return f"**** **** **** {digits[-4:]}"
    if kind == "cvc":
        return "***"
    if kind == "iban":
        s = re.sub(r"\s", "", value).upper()
        return f"{s[:2]}** **** **** {s[-4:]}"
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        return ("+" if value.lstrip().startswith("+") else "") + "*** *** " + digits[-2:]
    return (custom_masks or {}).get(kind) or f"[{kind}]"


def _overlapping(a: Finding, b: Finding) -> bool:
    return a.start < b.end and b.start < a.end


_PRIORITY = {"card": 0, "iban": 1, "cvc": 2, "email": 3}    # then custom patterns, then phone


class Detector:
    """Finds personal data in text (see the module's docstring)."""

    def __init__(self, *, patterns: Mapping[str, str] | None = None, masks: Mapping[str, str] | None = None,
                 phone_regions: Sequence[str] = ("GB", "DE", "FR", "US")) -> None:
        self.patterns = {name: re.compile(p) for name, p in (patterns or {}).items()}
        self.masks = dict(masks or {})
        self.phone_regions = tuple(phone_regions)

    @property
    def kinds(self) -> tuple[str, ...]:
        return BUILTIN_KINDS + tuple(self.patterns)

    def find(self, text: str, kinds: Iterable[str] | None = None) -> list[Finding]:
        """Every finding, without overlaps (a card wins over a phone number in it), in text order."""
        if not text:
            return []
        want = set(self.kinds if kinds is None else kinds)
        found: list[Finding] = []
        digits = len(text) - len(text.translate(_NO_DIGITS))
        cards = _cards(text) if digits >= 13 else []
        if "card" in want or "cvc" in want:
            found += cards
        if "cvc" in want and digits >= 3:
            found += _cvcs(text, cards)
        if "iban" in want and digits >= 2:
            found += _ibans(text)
        if "email" in want and "@" in text:
            found += [Finding("email", m.start(), m.end(), m.group(0)) for m in _EMAIL.finditer(text)]
        for name, rx in self.patterns.items():
            if name in want:
                found += [Finding(name, m.start(), m.end(), m.group(0)) for m in rx.finditer(text) if m.group(0)]
        if "phone" in want and digits >= 7:
            found += _phones(text, self.phone_regions)
        found.sort(key=lambda f: (_PRIORITY.get(f.kind, 4 if f.kind in self.patterns else 5), f.start))
        kept: list[Finding] = []
        for f in found:
            if not any(_overlapping(f, k) for k in kept):
                kept.append(f)
        return sorted((f for f in kept if f.kind in want), key=lambda f: f.start)

    def mask(self, text: str, kinds: Iterable[str] | None = None) -> tuple[str, list[Finding]]:
        """``text`` with each finding of ``kinds`` (all by default) replaced by its mask, and the findings."""
        found = self.find(text, kinds)
        if not found:
            return text, []
        out, at = [], 0
        for f in found:
            out.append(text[at:f.start])
            out.append(mask_value(f.kind, f.value, self.masks))
            at = f.end
        out.append(text[at:])
        return "".join(out), found


# -- the policy ----------------------------------------------------------------------

#: Defaults per kind: where the value is kept in clear (see PrivacyConfig in bot.config).
DEFAULT_POLICY: dict[str, dict[str, str]] = {
    "card": {"stored": "mask", "logs": "mask", "slack": "mask", "desk": "mask"},
    "cvc": {"stored": "mask", "logs": "mask", "slack": "mask", "desk": "mask"},
    "iban": {"stored": "clear", "logs": "mask", "slack": "mask", "desk": "owner"},
    "email": {"stored": "clear", "logs": "mask", "slack": "mask", "desk": "owner"},
    "phone": {"stored": "clear", "logs": "mask", "slack": "mask", "desk": "owner"},
}
#: For an admin's own patterns, unless the policy names them.
CUSTOM_DEFAULT = {"stored": "clear", "logs": "mask", "slack": "mask", "desk": "owner"}


class Privacy:
    """The detector and the policy from config (``privacy``); :func:`configure` makes one current."""

    def __init__(self, cfg: Any = None) -> None:
        if cfg is None:
            from bot.config import PrivacyConfig
            cfg = PrivacyConfig()
        self.cfg = cfg
        self.detector = Detector(patterns={p.name: p.pattern for p in cfg.patterns},
                                 masks={p.name: p.mask for p in cfg.patterns if p.mask},
                                 phone_regions=cfg.phone_regions)
        self.policy: dict[str, dict[str, str]] = {}
        for kind in self.detector.kinds:
            base = dict(DEFAULT_POLICY.get(kind, CUSTOM_DEFAULT))
            base.update({k: v for k, v in (cfg.policy.get(kind) or {}).items() if v is not None})
            self.policy[kind] = base

    def kinds_masked(self, place: str, *, owner: bool = False) -> list[str]:
        """The kinds masked in ``place`` (for the desk: as seen by the owning agent or not)."""
        out = []
        for kind, places in self.policy.items():
            rule = places.get(place, "mask")
            if rule == "mask" or (rule == "owner" and not owner):
                out.append(kind)
        return out

    def mask(self, text: str, place: str, *, owner: bool = False) -> str:
        return self.detector.mask(text, self.kinds_masked(place, owner=owner))[0] if text else text

    def for_storage(self, text: str) -> tuple[str, list[Finding]]:
        """What is stored of an inbound text (and what the flow sees), and what was removed."""
        return self.detector.mask(text, self.kinds_masked("stored")) if text else (text, [])

    def slack(self, text: str) -> str:
        return self.mask(text, "slack")

    def desk(self, text: str, *, owner: bool) -> str:
        return self.mask(text, "desk", owner=owner)

    def logs(self, text: str) -> str:
        return self.mask(text, "logs")

    def slots(self, slots: Mapping[str, Any], personal: Iterable[str], place: str, *,
              owner: bool = False) -> dict[str, Any]:
        """Slot values for ``place``: personal slots (``personal: true`` on their collect step) are
        masked there unless the place shows that data (the desk to the owner); others as any text."""
        personal = set(personal)
        clear_personal = place == "desk" and owner
        out: dict[str, Any] = {}
        for k, v in slots.items():
            if k in personal and not clear_personal and v not in (None, ""):
                out[k] = "[personal data]"
            elif isinstance(v, str):
                out[k] = self.mask(v, place, owner=owner)
            else:
                out[k] = v
        return out


_current: Privacy | None = None


def configure(cfg: Any) -> Privacy:
    """Make the ``privacy`` section of config the one :func:`current` (and the helpers) use."""
    global _current
    _current = Privacy(cfg)
    return _current


def current() -> Privacy:
    global _current
    if _current is None:
        _current = Privacy()
    return _current


def slack_text(text: str) -> str:
    """A text as copied to Slack (default: cards, codes, IBANs, e-mail and phone masked)."""
    return current().slack(text)


def desk_text(text: str, *, owner: bool) -> str:
    """A text as the web desk shows it: e-mail, phone and IBAN in clear to the agent who owns the
    conversation (``owner=True``), masked to others; cards and codes never."""
    return current().desk(text, owner=owner)


def stored_text(text: str | None) -> str | None:
    """Free text an agent writes (a reply, a note, an outcome the customer is told) as the ``stored``
    place keeps it (default: a pasted card number or security code masked, the rest in clear)."""
    return current().for_storage(text)[0] if text else text


def personal_slots(flows: Any) -> frozenset[str]:
    """The slots marked ``personal: true`` on a collect step of any flow (a ``flows.FlowSet``)."""
    out = set()
    for pf in getattr(flows, "flows", {}).values():
        for step in pf.steps:
            if getattr(step, "personal", False) and getattr(step, "collect", None):
                out.add(step.collect)
    return frozenset(out)
