"""Web-chat limits with several instances on one PostgreSQL database: a visitor's limits count
their messages on every instance together."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from cluster import on_pg
from conftest import Running, make_config, start_app, stop_app, until
from e2e.chat import ChatClient


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Running, Running]]:
    config = on_pg(make_config(tmp_path, "webchat: {messages_per_minute: 4}"), pg_url)
    a = await start_app(config)
    b = await start_app(config)
    try:
        yield a, b
    finally:
        await stop_app(a)
        await stop_app(b)


async def one_visitor_on_both(a: Running, b: Running) -> tuple[ChatClient, ChatClient]:
    on_a = ChatClient(a.http, a.ws_url)
    await on_a.connect()
    on_b = ChatClient(b.http, b.ws_url)
    await on_b.connect(token=on_a.token)          # the same visitor, a socket on each instance
    assert on_b.token == on_a.token
    return on_a, on_b


async def test_messages_per_minute_counts_every_instance(pair: tuple[Running, Running]) -> None:
    a, b = pair
    on_a, on_b = await one_visitor_on_both(a, b)
    try:
        acks = [await c.send(f"hello {i}") for i, c in enumerate([on_a, on_b, on_a, on_b])]
        assert [f["type"] for f in acks] == ["ack"] * 4, acks
        for c in (on_a, on_b):                   # the fifth this minute, on either instance
            refused = await c.send("one more")
            assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
    finally:
        await on_a.close()
        await on_b.close()


async def test_wrong_link_codes_count_on_every_instance(tmp_path: Path, pg_url: str) -> None:
    config = on_pg(make_config(tmp_path, "webchat: {messages_per_minute: 100}"), pg_url)
    a = await start_app(config)
    b = await start_app(config)
    on_a, on_b = await one_visitor_on_both(a, b)

    def replies(text: str) -> int:
        seen = {m["id"]: m for c in (on_a, on_b) for m in c.messages.values()}
        return len([m for m in seen.values() if text in m["text"]])

    try:
        for i in range(5):                                   # MAX_FAILURES, spread over both
            ack = await (on_a, on_b)[i % 2].send(f"link {100000 + i}")
            assert ack["type"] == "ack", ack
            await until(lambda: replies("isn't valid") == i + 1, 10, f"wrong code {i + 1} refused")
        ack = await on_b.send("link 200000")
        assert ack["type"] == "ack"
        await until(lambda: replies("Too many wrong codes") == 1, 10, "the limit")
        assert replies("isn't valid") == 5
    finally:
        await on_a.close()
        await on_b.close()
        await stop_app(a)
        await stop_app(b)
