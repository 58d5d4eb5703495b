"""The WhatsApp connector's pure parts: signatures, webhook bodies, and message shapes within WhatsApp's limits."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from bot.config import WhatsAppConfig
from bot.model import Button, Message
from connectors.whatsapp import MalformedPayload, WhatsAppConnector, parse_webhook, signature_ok, split_text
from fakes.whatsapp_api import check_message, sign, status_update, text_message


def test_signature_on_the_raw_bytes() -> None:
    body = json.dumps(text_message("49", "Grüße 🙂"), ensure_ascii=False).encode()
    assert signature_ok("s3cret", body, sign("s3cret", body))
    assert not signature_ok("s3cret", body, sign("other", body))
    assert not signature_ok("s3cret", json.dumps(json.loads(body)).encode(), sign("s3cret", body))  # re-serialized
    assert not signature_ok("s3cret", body, None) and not signature_ok("s3cret", body, "sha1=abc")
    assert not signature_ok("", body, sign("", body))


def test_parse_messages_and_statuses_of_one_body() -> None:
    data = text_message("4915", "hello", ts=1_790_000_000, wamid="wamid.A", name="Maria")
    data["entry"][0]["changes"][0]["value"]["statuses"] = status_update("wamid.B", "failed", "4915",
                                                                        code=131047)["entry"][0]["changes"][0]["value"]["statuses"]
    data["entry"][0]["changes"][0]["value"]["messages"].append({"from": "4915", "type": "text"})   # no id: skipped
    incoming, statuses = parse_webhook(data, now=0)
    [i] = incoming
    assert (i.inbound.external_id, i.inbound.platform_message_id, i.inbound.text, i.inbound.sender_name, i.at) == \
        ("4915", "wamid.A", "hello", "Maria", 1_790_000_000)
    [s] = statuses
    assert s.status == "failed" and "24-hour window" in s.error and "131047" in s.error
    for bad in ([], {"entry": 5}, {"entry": [{"changes": "x"}]}):
        with pytest.raises(MalformedPayload):
            parse_webhook(bad, now=0)


def _connector() -> WhatsAppConnector:
    cfg = WhatsAppConfig(enabled=True, access_token="t0ken", phone_number_id="1", app_secret="s3cret",
                         verify_token="v3rify")
    return WhatsAppConnector(config=cfg, accept=lambda i: None, store=None, media=None)  # type: ignore[arg-type]


def _msg(text: str, titles: list[str]) -> Message:
    return Message(1, "c", "out", "bot", text, datetime.now(timezone.utc),
                   buttons=tuple(Button(t, f"p{i}") for i, t in enumerate(titles)))


async def test_choices_fit_whatsapps_limits() -> None:
    c = _connector()
    [p] = await c._session_payloads(_msg("Pick", ["Yes", "No"]), "Pick")
    assert p["interactive"]["type"] == "button"
    long = "An option with a very long title indeed"
    [p] = await c._session_payloads(_msg("Pick", ["A", "B", "C", long]), "Pick")
    rows = p["interactive"]["action"]["sections"][0]["rows"]
    assert p["interactive"]["type"] == "list" and len(rows[3]["title"]) == 24 and rows[3]["description"] == long
    ps = await c._session_payloads(_msg("Pick", [f"Option {i}" for i in range(12)]), "Pick")
    assert ps[0]["type"] == "text" and "12. Option 11" in ps[0]["text"]["body"]
    ps = await c._session_payloads(_msg("x" * 1500, ["Yes", "No"]), "x" * 1500)
    assert [q["type"] for q in ps] == ["text", "interactive"]
    ps = await c._session_payloads(_msg("y " * 3000, []), "y " * 3000)
    assert len(ps) == 2
    for q in ps:
        assert check_message({"messaging_product": "whatsapp", "to": "1", **q}) == ""
    assert all(len(x) <= 4096 for x in split_text("z" * 9000))
