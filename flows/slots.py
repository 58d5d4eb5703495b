"""Slot values: validating a customer's answer to a ``collect`` step, and pre-filling one from
what the customer already wrote."""

from __future__ import annotations

import re
from typing import Any

from bot.model import normalize_for_matching

from .i18n import LanguageSettings, all_texts, pick
from .nlu import entities as _entities
from .schema import ChoiceSpec, CollectStep, Settings
from .turn import Turn, TurnState

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")
_PHONE = re.compile(r"\+?[\d\s().-]{7,}")
MESSAGE_WORDS = 8      # prefill "message": a message this long is taken as the answer (then confirmed)


def prefill(step: CollectStep, st: TurnState) -> Any:
    """A value for ``step`` found in the customer's recent messages (newest first), or None."""
    kind = step.prefill
    if kind == "none" or not st.recent:
        return None
    if kind == "auto":
        kind = {"email": "email", "phone": "phone", "regex": "order_number"}.get(step.type, "none")
        if kind == "none":
            return None
    for text in reversed(st.recent):
        if kind == "choice":
            norm = normalize_for_matching(text)
            named = {v for c in step.choices if not norm.isdigit()
                     and (v := match_choice([c], None, norm)) is not None}
            if len(named) == 1:         # two choices named ("arrived broken"): ask
                return named.pop()
            continue
        if kind == "message":
            if len(text.split()) >= MESSAGE_WORDS and len(text.strip()) >= step.min_length:
                return text.strip()
            continue
        if kind == "order_number" and step.type == "regex" and step.pattern:
            v = regex_value(step, text)
            if v is None and step.normalize == "upper":
                v = regex_value(step, text.upper())
            if v is not None:
                return v
            continue
        ent = _entities.first(text, kind)
        if ent is not None:
            if step.type == "number":
                try:
                    return float(ent.value.split()[0])
                except ValueError:
                    continue
            return ent.value
    return None


def validate(step: CollectStep, t: Turn, settings: Settings) -> tuple[bool, Any, str]:
    """(valid?, value, why not) of the customer's answer to ``step`` this turn."""
    text = t.input.text.strip()
    norm = normalize_for_matching(t.input.payload or text)
    if step.optional and norm.strip(" .!") in settings.skip_words and not t.input.attachments:
        return True, None, ""
    kind = step.type
    if kind == "attachment":
        if t.input.attachments:
            return True, [dict(a) for a in t.input.attachments], ""
        return False, None, "no attachment"
    if kind == "text":
        return (len(text) >= step.min_length, text, "too short")
    if kind == "choice":
        value = match_choice(step.choices, t.input.payload, norm)
        return (value is not None, value, "not one of the choices")
    if kind == "number":
        m = _NUMBER.search(text)
        if not m:
            return False, None, "no number"
        n = float(m.group(0).replace(",", "."))
        if (step.min is not None and n < step.min) or (step.max is not None and n > step.max):
            return False, None, "out of range"
        return True, int(n) if n.is_integer() else n, ""
    if kind == "email":
        m = _EMAIL.search(text)
        return (m is not None, m.group(0).lower() if m else None, "not an e-mail address")
    if kind == "phone":
        m = _PHONE.search(text)
        digits = re.sub(r"\D", "", m.group(0)) if m else ""
        if not 7 <= len(digits) <= 15:
            return False, None, "not a phone number"
        return True, ("+" if m.group(0).strip().startswith("+") else "") + digits, ""  # type: ignore[union-attr]
    if kind == "regex":
        v = regex_value(step, text)
        return (v is not None, v, "does not match")
    return False, None, f"unknown type {kind}"


def regex_value(step: CollectStep, text: str) -> str | None:
    """The first match of a regex slot's pattern in ``text``, normalised as the step says."""
    m = re.search(step.pattern or "", text)
    if not m:
        return None
    v = m.group(0)
    return v.upper() if step.normalize == "upper" else v.lower() if step.normalize == "lower" else v


def choice_title_value(c: str | ChoiceSpec, lang: str | None = None,
                       langs: LanguageSettings | None = None) -> tuple[str, str]:
    """A choice's title (in ``lang``, README "Languages") and value."""
    if isinstance(c, str):
        return c.replace("_", " ").capitalize(), c
    return (pick(c.title, lang, langs) or c.value.replace("_", " ").capitalize()), c.value


def match_choice(choices: list[str | ChoiceSpec], payload: str | None, norm: str) -> str | None:
    specs = [ChoiceSpec(value=c) if isinstance(c, str) else c for c in choices]
    if payload:
        for c in specs:
            if payload == c.value:
                return c.value
    if norm.isdigit() and 1 <= int(norm) <= len(specs):
        return specs[int(norm) - 1].value
    words = set(re.findall(r"\w+", norm))
    for c in specs:
        names = [c.value, *all_texts(c.title), *c.synonyms]     # a title in any language
        for name in names:
            n = normalize_for_matching(name.replace("_", " "))
            if n and (n == norm or (" " not in n and n in words) or (" " in n and n in norm)):
                return c.value
    return None
