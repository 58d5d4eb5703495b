"""Telegram polling with several instances on one PostgreSQL database: one poller per cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from bot.errors import StorageUnavailable
from cluster import on_pg
from conftest import Running, start_app, stop_app, until
from e2e.apps import fake_server, tg_config
from fakes.telegram_api import FakeTelegram, text_update
from test_telegram import to_chat

fake = fake_server(FakeTelegram)


def tg(r: Running):
    return r.services.connectors["telegram"]


def answered(fake: FakeTelegram, chat: int, text: str) -> int:
    return len([c for c in fake.calls_to("sendMessage") if to_chat(chat, text=text)(c) and not c.failed])


def conflicts(fake: FakeTelegram) -> int:
    """getUpdates refused because another getUpdates was running (two pollers)."""
    return len([c for c in fake.calls_to("getUpdates") if c.status == 409])


async def two_instances(tmp_path: Path, fake: FakeTelegram, pg_url: str, *, ttl: float = 10.0,
                        interval: float = 2.0) -> tuple[Running, Running]:
    a = await start_app(on_pg(tg_config(tmp_path / "a", fake), pg_url))
    b = await start_app(on_pg(tg_config(tmp_path / "b", fake), pg_url))
    for r in (a, b):
        tg(r).lease_ttl, tg(r).lease_interval = ttl, interval
    await until(lambda: {tg(a).role, tg(b).role} == {"leader", "standby"}, 10, "one leader, one standby")
    return a, b


async def test_one_instance_polls_and_another_takes_over_on_stop(
        tmp_path: Path, fake: FakeTelegram, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connectors.telegram")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = await two_instances(tmp_path, fake, pg_url)
    try:
        leader, standby = (a, b) if tg(a).role == "leader" else (b, a)
        # a standby instance is ready: it serves everything but polling
        for r in (a, b):
            async with r.http.get(r.url + "/readyz") as resp:
                body = await resp.json()
                assert resp.status == 200 and body["connectors"]["telegram"] == "ok", body
        fake.push_update(text_update(7001, "when are you open?"))
        fake.push_update(text_update(7002, "what payment methods do you accept"))
        await fake.wait_for("sendMessage", predicate=to_chat(7001, text="Monday to Friday"))
        await fake.wait_for("sendMessage", predicate=to_chat(7002, text="PayPal"))
        await asyncio.sleep(2.5)                   # a standby would have started polling by now
        assert answered(fake, 7001, "Monday to Friday") == 1 and answered(fake, 7002, "PayPal") == 1
        assert conflicts(fake) == 0 and tg(standby).role == "standby"
        assert any("standby" in r.getMessage() for r in caplog.records)
        offset = fake.confirmed_offset

        await stop_app(leader)                    # a clean stop releases the lease
        t0 = time.monotonic()
        await until(lambda: tg(standby).role == "leader", 12, "the standby taking over")
        assert time.monotonic() - t0 < 12
        fake.push_update(text_update(7003, "when are you open?"))
        await fake.wait_for("sendMessage", predicate=to_chat(7003, text="Monday to Friday"), timeout=10)
        await asyncio.sleep(0.5)
        assert answered(fake, 7003, "Monday to Friday") == 1
        assert answered(fake, 7001, "Monday to Friday") == 1     # the new poller starts at the stored offset
        assert fake.confirmed_offset > offset
        assert await standby.services.store.get_meta("telegram:offset") == str(fake.confirmed_offset)
    finally:
        for r in (a, b):
            if not r.http.closed:
                await stop_app(r)


async def test_a_poller_that_cannot_renew_stops_and_its_lease_expires(
        tmp_path: Path, fake: FakeTelegram, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = await two_instances(tmp_path, fake, pg_url, ttl=3.0, interval=0.3)
    try:
        await asyncio.sleep(2.5)                  # renewed with the short ttl (the first wait was 2 s)
        leader, standby = (a, b) if tg(a).role == "leader" else (b, a)

        async def unavailable(*args: object, **kw: object) -> bool:
            raise StorageUnavailable("database unreachable")

        monkeypatch.setattr(leader.services.store, "take_lease", unavailable)
        # the leader stops polling at once (its lease is not released: it cannot reach the database)
        await until(lambda: tg(leader).role == "standby", 2, "the leader giving up")
        # the other takes over when the lease runs out
        await until(lambda: tg(standby).role == "leader", 6, "the standby taking over after the ttl")
        fake.push_update(text_update(7101, "when are you open?"))
        await fake.wait_for("sendMessage", predicate=to_chat(7101, text="Monday to Friday"), timeout=10)
        await asyncio.sleep(0.5)
        assert answered(fake, 7101, "Monday to Friday") == 1
        assert tg(leader).role == "standby"
    finally:
        await stop_app(a)
        await stop_app(b)


async def test_sqlite_polls_without_a_lease(tmp_path: Path, fake: FakeTelegram,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    r = await start_app(tg_config(tmp_path, fake))
    try:
        assert tg(r).cluster is None
        fake.push_update(text_update(7201, "when are you open?"))
        await fake.wait_for("sendMessage", predicate=to_chat(7201, text="Monday to Friday"))
        assert tg(r).role is None
    finally:
        await stop_app(r)
