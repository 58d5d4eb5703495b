"""The conversation model: text sanitizing, matching normalization, serialization."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.model import (Attachment, Button, ConversationState, Inbound, Message, normalize_for_matching,
                       sanitize_text)
from bot.storage import open_store


def test_sanitize_replaces_lone_surrogates_with_one_replacement_char() -> None:
    assert sanitize_text("a\ud800b") == "a\ufffdb"
    assert sanitize_text("\udc00") == "\ufffd"
    out = sanitize_text("x\ud800y\udfffz")
    assert out == "x\ufffdy\ufffdz"
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in out)
    out.encode("utf-8")  # must not raise


def test_sanitize_keeps_a_surrogate_pair_as_the_character_it_encodes() -> None:
    # Two UTF-16 code units that form a valid pair are one emoji, not garbage.
    assert sanitize_text("hi \ud83d\ude00!") == "hi \U0001F600!"


def test_sanitize_strips_nul_and_keeps_normal_text() -> None:
    assert sanitize_text("a\x00b\x00") == "ab"
    assert sanitize_text("Grüße, 東京 👋\nline 2") == "Grüße, 東京 👋\nline 2"
    assert sanitize_text(123) == "123"  # type: ignore[arg-type]


def test_sanitize_bounds_length() -> None:
    assert len(sanitize_text("x" * 50_000)) == 20_000
    assert sanitize_text("abcdef", max_chars=3) == "abc"
    # NULs are removed before bounding, so the bound counts real characters.
    assert sanitize_text("\x00" * 5 + "abcdef", max_chars=4) == "abcd"


async def test_sanitized_text_can_be_stored_and_read_back() -> None:
    store = await open_store("sqlite:///:memory:")
    try:
        text = sanitize_text("broken \ud800 text\x00 end")
        name = sanitize_text("Ann\udfff", max_chars=200)
        res = await store.record_inbound(Inbound("webchat", "v1", "p1", text, sender_name=name))
        assert res.message.text == "broken \ufffd text end"
        hist = await store.history(res.conversation.id)
        assert [m.text for m in hist] == ["broken \ufffd text end"]
        assert hist[0].sender_name == "Ann\ufffd"
    finally:
        await store.close()


async def test_unsanitized_lone_surrogate_cannot_be_stored() -> None:
    """Why sanitize_text exists: the raw text would crash storage."""
    store = await open_store("sqlite:///:memory:")
    try:
        with pytest.raises(UnicodeEncodeError):
            await store.record_inbound(Inbound("webchat", "v1", "p1", "bad \ud800"))
    finally:
        await store.close()


@pytest.mark.parametrize(("raw", "expected"), [
    ("Cafe\u0301", "café"),            # combining accent is composed (NFC)
    ("CAFÉ", "café"),
    ("Straße", "strasse"),             # casefold, not lower()
    ("  Hello World \n", "hello world"),
    ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
    ("\u212b", "å"),                   # ANGSTROM SIGN -> NFC -> casefold
])
def test_normalize_for_matching(raw: str, expected: str) -> None:
    assert normalize_for_matching(raw) == expected


def test_normalize_makes_composed_and_decomposed_equal() -> None:
    assert normalize_for_matching("e\u0301te\u0301") == normalize_for_matching("ÉTÉ") == "été"
    assert "Straße".lower() != "strasse"  # the reason casefold is used


def test_attachment_round_trip() -> None:
    a = Attachment(kind="image", url="/media/x.png", name="x.png", mime="image/png", size=1234,
                   platform_file_id="f-1")
    d = a.to_dict()
    assert d == {"kind": "image", "url": "/media/x.png", "name": "x.png", "mime": "image/png",
                 "size": 1234, "platform_file_id": "f-1"}
    assert Attachment.from_dict(d) == a


def test_attachment_from_dict_defaults_and_coercion() -> None:
    a = Attachment.from_dict({"kind": "weird", "url": "u", "size": None})
    assert a == Attachment(kind="file", url="u", name="", mime="", size=0, platform_file_id="")
    assert Attachment.from_dict({"kind": "image", "size": "42"}).size == 42


def test_message_to_dict() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    m = Message(id=7, conversation_id="conv_1", direction="out", role="agent", text="hi",
                created_at=at, sender_name="Anna", status="pending",
                attachments=(Attachment("file", "/m/a.pdf", "a.pdf"),),
                buttons=(Button("Yes", "yes"), Button("No", "no")))
    assert m.to_dict() == {
        "id": 7, "conversation_id": "conv_1", "direction": "out", "role": "agent", "text": "hi",
        "sender": "Anna", "at": "2024-05-06T07:08:09+00:00", "status": "pending", "error": None,
        "attachments": [{"kind": "file", "url": "/m/a.pdf", "name": "a.pdf", "mime": "", "size": 0,
                         "platform_file_id": ""}],
        "buttons": [{"title": "Yes", "payload": "yes"}, {"title": "No", "payload": "no"}],
    }


def test_message_to_dict_carries_the_failure_only_when_failed() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    failed = Message(id=8, conversation_id="conv_1", direction="out", role="agent", text="hi", created_at=at,
                     status="failed", error="the customer blocked the bot on Telegram")
    assert (failed.to_dict()["status"], failed.to_dict()["error"]) == ("failed",
                                                                       "the customer blocked the bot on Telegram")
    # an error kept from an earlier retry is not shown once the message went out
    sent = Message(id=9, conversation_id="conv_1", direction="out", role="agent", text="hi", created_at=at,
                   status="sent", error="503 from platform")
    assert sent.to_dict()["error"] is None


def test_conversation_state_values() -> None:
    assert [s.value for s in ConversationState] == ["bot", "waiting", "with_agent", "closed"]
    assert ConversationState("waiting") is ConversationState.WAITING
