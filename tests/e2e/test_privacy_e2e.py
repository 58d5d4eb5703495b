"""Privacy at the edge, end to end over the web chat: card data never stored (SQLite and PostgreSQL),
the customer told once, the logs at DEBUG free of every detected kind, negative controls untouched."""

from __future__ import annotations

import io
from pathlib import Path
from typing import AsyncIterator

import pytest

from bot.config import Config
from bot.logs import configure_logging
from conftest import Running, make_config, start_app, stop_app
from e2e.chat import ChatClient

NOTICE = "For your safety we removed your card number; we never need it here."
CARD = "4111 1111 1111 1111"
SECRETS_SENT = ["4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "5500000000000004",
                "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "ann.privacy@shop.example",
                "+44 20 7946 0958", "2079460958"]
NEGATIVE = "order AB123456 (#100234) of 2026-11-30 09:15:00 cost €1,234.56, see C-1042"


def pg_or_sqlite_config(request: pytest.FixtureRequest, tmp_path: Path, extra: str = "") -> Config:
    """The test config on SQLite, or on a fresh PostgreSQL database."""
    config = make_config(tmp_path, "nlu: {matcher: lexical}\n" + extra)
    if request.param == "postgresql":
        config = config.model_copy(update={"storage": config.storage.model_copy(
            update={"url": request.getfixturevalue("pg_url")})})
    return config


@pytest.fixture(params=["sqlite", "postgresql"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Running, io.StringIO]]:
    # customer text let into the logs: only the privacy masking stands between it and the log lines
    config = pg_or_sqlite_config(request, tmp_path)
    config = config.model_copy(update={"logging": config.logging.model_copy(update={"customer_text": True})})
    logs = io.StringIO()
    configure_logging(config, level="DEBUG", stream=logs)
    r = await start_app(config)
    try:
        yield r, logs
    finally:
        await stop_app(r)


async def test_card_data_is_never_stored_and_the_customer_is_told_once(app: tuple[Running, io.StringIO]) -> None:
    r, logs = app
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        ack = await c.send(f"hi, my card is {CARD} cvv 123, iban DE89 3704 0044 0532 0130 00, "
                           "mail ann.privacy@shop.example or call +44 20 7946 0958")
        assert ack["type"] == "ack"
        told = await c.expect(lambda f: f["type"] == "message" and f["message"]["text"] == NOTICE)
        assert told["message"]["role"] == "system"
        await c.reply()                                   # the bot's answer to the message
        await c.say("and 5500-0000-0000-0004 exp 12/27 987")
        await c.say(NEGATIVE)
    finally:
        await c.close()
    await r.services.runtime.drain()
    rows = list(c.messages.values())
    assert sum(1 for m in rows if m["text"] == NOTICE) == 1           # once per conversation
    store = r.services.store
    history = await store.history(rows[0]["conversation_id"], limit=1000)
    texts = [m.text for m in history if m.direction == "in"]
    assert texts[0] == ("hi, my card is **** **** **** 1111 cvv ***, iban DE89 3704 0044 0532 0130 00, "
                        "mail ann.privacy@shop.example or call +44 20 7946 0958")   # e-mail, phone, IBAN: policy clear
    assert texts[1] == "and **** **** **** 0004 exp 12/27 ***"
    assert texts[2] == NEGATIVE
    stored = "\n".join(m.text for m in history)
    for s in ("4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "cvv 123", "987"):
        assert s not in stored
    # the logs at DEBUG: not one line with any kind (cards, IBAN, e-mail, phone) of what was sent
    lines = logs.getvalue().splitlines()
    assert any("message 1 in" in line and "a***@shop.example" in line for line in lines)   # text logged, masked
    assert any(NEGATIVE in line for line in lines)                                        # controls untouched
    for line in lines:
        for s in SECRETS_SENT:
            assert s not in line, line


async def test_delete_my_data_is_explained_and_becomes_a_ticket_for_a_person(
        app: tuple[Running, io.StringIO]) -> None:
    r, _ = app
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        got = await c.say("please delete my data", expect_text="reference")
    finally:
        await c.close()
    said = got[-1]["text"]
    assert "we don't delete or send anything on a chat message alone" in said
    ref = said.split("reference ")[1].split(";")[0]
    store = r.services.store
    t = await store.get_ticket(ref)
    assert t is not None and t.category == "privacy_request" and t.status == "received"
    assert t.fields["request"] == "please delete my data"
    # nothing was erased: the conversation and the customer are as they were
    history = await store.history(t.conversation_id)
    assert history[0].text == "please delete my data"
    assert await store.find_customers(customer_id=t.customer_id) == [t.customer_id]
