"""Per-message text scoring that is a pure function of the text is remembered (issue 20):
urgency cues and language detection. The remembered answer is the computed one, and immutable."""

from __future__ import annotations

import dataclasses

import pytest

from flows import language
from flows.nlu.urgency import Urgency, urgency


def test_a_repeated_message_is_scored_for_urgency_once() -> None:
    text = "this is the THIRD time I ask, where is my refund??"
    first = urgency(text)
    assert first.level in ("elevated", "high") and first.reasons
    assert urgency(text) is first                      # remembered, not scored again
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.score = 0.0                             # type: ignore[misc]
    assert urgency("") == Urgency(0.0, "none", ()) and urgency(None) == Urgency(0.0, "none", ())  # type: ignore[arg-type]


def test_a_repeated_message_is_detected_once_whatever_the_order_of_languages() -> None:
    pytest.importorskip("lingua")
    text = "¿dónde está mi pedido? lo compré hace una semana"
    before = language._detect.cache_info()
    first = language.detect(text, ("en", "es", "id"))
    assert first is not None and first[0] == "es"
    assert language.detect(text, ("id", "es", "en")) == first
    after = language._detect.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 1
