"""`omnibot report`: figures from a small hand-made database, expected values worked out by hand.

Fixture (T0 = 2026-11-02 10:00 UTC; "now" = T0 + 12 days):

conversation  customer channel   first in -> first reply   handoff queued -> claimed
v1            c1       webchat   T0 -> +2 s                +60 s -> +360 s (pickup 300 s)
v2            c2       telegram  T0+1h -> +4 s             -
v3            c3       webchat   T0+2h -> +6 s             -
v4            c1       telegram  T0+10d -> +10 s           +20 s -> +120 s (pickup 100 s)
v0            c2       webchat   2026-10-01 (before --since: left out)

ticket  conv category  opened      resolved after   reopened  CSAT
C-1001  v1   shipping  T0+5min     2 h              0         5
C-1002  v2   payment   T0+1h       30 h (> 24 h SLA) 1        2
C-1003  v4   shipping  T0+10d      open (2 days at now: SLA breached); c1's 2nd shipping ticket
C-1004  v3   product   T0+2h       1 h              0         4

=> conversations 4, first response median (2, 4, 6, 10) = 5 s, pickup median (300, 100) = 200 s,
   containment 2/4; tickets 4, resolved 3, resolution median (2 h, 30 h, 1 h) = 2 h,
   FCR 2/3, CSAT (5 + 2 + 4) / 3 = 3.67 with 2/3 satisfied, SLA breaches 2 (C-1002, C-1003),
   repeat complaints 1 (shipping: C-1003).

The same data is also built through the store API (:func:`_through_store`, with the store's clock
held by the test) so the figures can be checked on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from click.testing import CliRunner, Result

from bot import report as rep
from bot.cli import main
from bot.errors import StoreError
from bot.model import Inbound, Outbound
from bot.storage import SqliteStore, Store, Ticket, open_store
from bot.storage import ops_chat, ops_desk
from bot.storage.filelock import DatabaseInUse
from bot.storage.sqlite_schema import MIGRATIONS, split_sql
from conftest import FakeClock

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=12)
H, D = timedelta(hours=1), timedelta(days=1)


def _ts(dt: datetime) -> str:
    return dt.isoformat()


async def _fixture(path: Path) -> Path:
    store = await open_store(f"sqlite:///{path}")     # the real schema, migrations included
    await store.close()
    con = sqlite3.connect(path)
    s = timedelta(seconds=1)
    for c in ("c1", "c2", "c3"):
        con.execute("INSERT INTO customers(id, created_at) VALUES (?, ?)", (c, _ts(T0)))
    convs = [("v1", "c1", "webchat", T0, 2), ("v2", "c2", "telegram", T0 + H, 4),
             ("v3", "c3", "webchat", T0 + 2 * H, 6), ("v4", "c1", "telegram", T0 + 10 * D, 10),
             ("v0", "c2", "webchat", datetime(2026, 10, 1, tzinfo=timezone.utc), 1)]
    for cid, cust, ch, at, reply_after in convs:
        con.execute("INSERT INTO conversations(id, customer_id, channel, external_id, state, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, 'closed', ?, ?)", (cid, cust, ch, cid, _ts(at), _ts(at)))
        for direction, when in (("in", at), ("out", at + reply_after * s), ("in", at + 30 * s)):
            con.execute("INSERT INTO messages(conversation_id, direction, role, text, channel, status, "
                        "created_at) VALUES (?, ?, 'x', 'hi', ?, 'processed', ?)", (cid, direction, ch, _ts(when)))
    for hid, cid, queued, claimed in (("h1", "v1", T0 + 60 * s, T0 + 360 * s),
                                      ("h4", "v4", T0 + 10 * D + 20 * s, T0 + 10 * D + 120 * s)):
        con.execute("INSERT INTO handoffs(id, conversation_id, state, team, reason, created_at, claimed_at, "
                    "closed_at) VALUES (?, ?, 'resolved', 'complaints', 'r', ?, ?, ?)",
                    (hid, cid, _ts(queued), _ts(claimed), _ts(claimed)))
    tickets = [("C-1001", "c1", "v1", "shipping", T0 + timedelta(minutes=5), 2 * H, 0, 5),
               ("C-1002", "c2", "v2", "payment", T0 + H, 30 * H, 1, 2),
               ("C-1003", "c1", "v4", "shipping", T0 + 10 * D, None, 0, None),
               ("C-1004", "c3", "v3", "product", T0 + 2 * H, H, 0, 4)]
    for ref, cust, conv, cat, opened, took, reopened, csat in tickets:
        con.execute("INSERT INTO tickets(reference, customer_id, conversation_id, status, category, severity, "
                    "department, team, priority, created_at, updated_at, resolved_at, reopened, csat) "
                    "VALUES (?, ?, ?, ?, ?, 'normal', 'care', 'complaints', 1, ?, ?, ?, ?, ?)",
                    (ref, cust, conv, "resolved" if took else "received", cat, _ts(opened), _ts(opened),
                     _ts(opened + took) if took else None, reopened, csat))
    con.commit()
    con.close()
    return path


@asynccontextmanager
async def _reader(db: Path) -> AsyncIterator[Store]:
    store = await rep.open_store_for_report(f"sqlite:///{db}")
    try:
        yield store
    finally:
        await store.close()


def _assert_hand_worked(r: dict[str, Any]) -> None:
    assert r["conversations"] == 4 and r["handoffs"] == 2
    assert r["first_response_s_median"] == 5.0
    assert r["agent_pickup_s_median"] == 200.0
    assert r["bot_containment"] == 0.5
    assert (r["tickets"], r["resolved"]) == (4, 3)
    assert r["resolution_s_median"] == 7200.0
    assert r["first_contact_resolution"] == round(2 / 3, 4)
    assert r["csat_mean"] == 3.67 and r["csat_satisfied"] == round(2 / 3, 4) and r["csat_answers"] == 3
    assert r["sla_breaches"] == 2
    assert r["repeat_complaints"] == 1 and r["repeat_by_category"] == {"shipping": 1}


def _assert_by_channel_and_period(r: dict[str, Any], first_week: dict[str, Any]) -> None:
    web, tg = r["groups"]["webchat"], r["groups"]["telegram"]
    assert (web["tickets"], web["resolved"], web["sla_breaches"], web["csat_mean"]) == (2, 2, 0, 4.5)
    assert (tg["tickets"], tg["resolved"], tg["sla_breaches"], tg["repeat_complaints"]) == (2, 1, 2, 1)
    # the first week: v4 and C-1003 (the only repeat) fall outside
    assert (first_week["conversations"], first_week["tickets"], first_week["repeat_complaints"]) == (3, 3, 0)


async def _figures(store: Store) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The report, the report by channel and the first week's report, over ``store``."""
    since = datetime(2026, 11, 1, tzinfo=timezone.utc)
    return (await rep.report(store, since=since, now=NOW),
            await rep.report(store, since=since, by="channel", now=NOW),
            await rep.report(store, since=T0, until=T0 + 7 * D, now=NOW))


async def test_figures_match_the_hand_worked_values(tmp_path: Path) -> None:
    db = await _fixture(tmp_path / "o.sqlite3")
    async with _reader(db) as store:
        r, _, _ = await _figures(store)
    _assert_hand_worked(r)


async def test_by_channel_and_period(tmp_path: Path) -> None:
    db = await _fixture(tmp_path / "o.sqlite3")
    async with _reader(db) as store:
        _, by_channel, first_week = await _figures(store)
        with pytest.raises(ValueError, match="--by must be one of"):
            await rep.report(store, by="weekday")
    _assert_by_channel_and_period(by_channel, first_week)


def _config(tmp_path: Path, url: str, name: str = "config.yaml") -> Path:
    cfg = tmp_path / name
    cfg.write_text(f'storage: {{url: "{url}"}}\n', encoding="utf-8")
    return cfg


async def _cli(*args: str) -> Result:
    """``omnibot ARGS`` on a thread of its own (the command runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_cli_report_text_and_json(tmp_path: Path) -> None:
    db = await _fixture(tmp_path / "o.sqlite3")
    cfg = _config(tmp_path, f"sqlite:///{db}")
    text = await _cli("report", "-c", str(cfg), "--since", "2026-11-01", "--by", "category")
    assert text.exit_code == 0, text.output
    assert "first response (median) 5 s" in text.output and "SLA breaches            2" in text.output
    assert "category: shipping" in text.output
    as_json = await _cli("report", "-c", str(cfg), "--since", "2026-11-01", "--json")
    assert json.loads(as_json.output)["tickets"] == 4
    bad = await _cli("report", "-c", str(cfg), "--since", "last tuesday")
    assert bad.exit_code == 2 and "is not a date like 2026-11-01" in bad.output
    missing = _config(tmp_path, f"sqlite:///{tmp_path / 'nope.sqlite3'}", "none.yaml")
    gone = await _cli("report", "-c", str(missing))
    assert gone.exit_code == 2 and "no such database" in gone.output
    assert not (tmp_path / "nope.sqlite3").exists()          # a report never creates a database
    memory = await _cli("report", "-c", str(_config(tmp_path, "sqlite:///:memory:", "memory.yaml")))
    assert memory.exit_code == 2 and "not :memory:" in memory.output


# -- the same data through the store API: SQLite and PostgreSQL agree ---------------------------------


async def _through_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module docstring's data, written by the store's own operations at the fixture's times."""
    clock = FakeClock(T0)
    monkeypatch.setattr(ops_chat, "utcnow", clock)
    monkeypatch.setattr(ops_desk, "utcnow", clock)
    s = timedelta(seconds=1)
    convs: dict[str, tuple[str, str]] = {}     # name -> (conversation id, customer id)
    for name, ext, ch, at, reply_after in (
            ("v1", "ada", "webchat", T0, 2), ("v2", "bob", "telegram", T0 + H, 4),
            ("v3", "cy", "webchat", T0 + 2 * H, 6), ("v4", "ada-tg", "telegram", T0 + 10 * D, 10),
            ("v0", "bob-old", "webchat", datetime(2026, 10, 1, tzinfo=timezone.utc), 1)):
        clock.now = at
        first = await store.record_inbound(Inbound(ch, ext, f"{name}-1", "hi", sent_at=at))
        convs[name] = (first.conversation.id, first.customer.id)
        clock.now = at + reply_after * s
        await store.commit_turn(first.conversation.id, inbound_id=first.message.id, replies=[Outbound("hello")],
                                flow_state=None)
        clock.now = at + 30 * s
        await store.record_inbound(Inbound(ch, ext, f"{name}-2", "hi", sent_at=clock.now))
    for name, queued, claimed in (("v1", T0 + 60 * s, T0 + 360 * s), ("v4", T0 + 10 * D + 20 * s,
                                                                      T0 + 10 * D + 120 * s)):
        clock.now = queued
        h = await store.create_handoff(convs[name][0], team="complaints", reason="r")
        clock.now = claimed
        assert await store.transition_handoff(h.id, expected="queued", new="claimed", agent="Anna Smith")
    ada = convs["v1"][1]                      # C-1003 is ada's second shipping complaint
    for ref, conv, customer, cat, opened, took, reopened, csat in (
            ("C-1001", "v1", ada, "shipping", T0 + timedelta(minutes=5), 2 * H, False, 5),
            ("C-1002", "v2", convs["v2"][1], "payment", T0 + H, 30 * H, True, 2),
            ("C-1003", "v4", ada, "shipping", T0 + 10 * D, None, False, None),
            ("C-1004", "v3", convs["v3"][1], "product", T0 + 2 * H, H, False, 4)):
        clock.now = opened
        await store.create_ticket(Ticket(ref, customer, convs[conv][0], "received", cat, "normal", "care",
                                         "complaints", 1, opened))
        if took is None:
            continue
        if reopened:                          # resolved too early, reopened, resolved for good at ``took``
            await store.resolve_ticket(ref, at=opened + took / 2, agent="Anna Smith", result=None)
            await store.reopen_ticket(ref, at=opened + took * 3 / 4)
        await store.resolve_ticket(ref, at=opened + took, agent="Anna Smith", result=None)
        await store.record_csat(ref, score=csat, comment=None, at=opened + took + H)   # type: ignore[arg-type]


async def test_figures_through_the_store_on_both_backends(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await _through_store(store, monkeypatch)
    r, by_channel, first_week = await _figures(store)
    _assert_hand_worked(r)
    _assert_by_channel_and_period(by_channel, first_week)


async def test_sqlite_and_postgresql_give_identical_figures(tmp_path: Path, pg_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    results = []
    for url in (f"sqlite:///{tmp_path / 'o.sqlite3'}", pg_url):
        store = await open_store(url)
        try:
            await _through_store(store, monkeypatch)
        finally:
            await store.close()
        reader = await rep.open_store_for_report(url)
        try:
            results.append(await _figures(reader)
                           + (await rep.report(reader, by="team", now=NOW),
                              await rep.report(reader, by="category", until=T0 + D, now=NOW)))
        finally:
            await reader.close()
    assert results[0] == results[1]
    _assert_hand_worked(results[1][0])


async def test_cli_report_on_postgresql(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await open_store(pg_url)
    try:
        await _through_store(store, monkeypatch)
    finally:
        await store.close()
    cfg = _config(tmp_path, pg_url)
    as_json = await _cli("report", "-c", str(cfg), "--since", "2026-11-01", "--json")
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.output)
    assert (figures["tickets"], figures["sla_breaches"], figures["first_response_s_median"]) == (4, 2, 5.0)
    text = await _cli("report", "-c", str(cfg), "--since", "2026-11-01", "--by", "channel")
    assert text.exit_code == 0 and "channel: telegram" in text.output
    down = _config(tmp_path, "postgresql://postgres:s3cret@127.0.0.1:1/nowhere", "down.yaml")
    refused = await _cli("report", "-c", str(down))
    assert refused.exit_code == 2 and "cannot open" in refused.output and "s3cret" not in refused.output


# -- beside a running omnibot on SQLite ---------------------------------------------------------------


async def test_report_while_a_sqlite_store_holds_the_database(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "o.sqlite3"
    bot_store = await open_store(f"sqlite:///{db}")            # "omnibot run": holds the instance lock
    try:
        await _through_store(bot_store, monkeypatch)
        with pytest.raises(DatabaseInUse):                    # a second writer is refused ...
            await open_store(f"sqlite:///{db}")
        async with _reader(db) as reader:                     # ... a reader is not
            r, _, _ = await _figures(reader)
            _assert_hand_worked(r)
            with pytest.raises(StoreError, match="read-only"):
                await reader.set_meta("k", "v")
            # the bot goes on writing; the reader sees each commit (WAL)
            first = await bot_store.get_ticket("C-1001")
            assert first is not None
            await bot_store.create_ticket(Ticket("C-1005", first.customer_id, first.conversation_id, "received",
                                                 "shipping", "normal", "care", "complaints", 1, T0 + 6 * D))
            again, _, _ = await _figures(reader)
            assert again["tickets"] == 5
        cli = await _cli("report", "-c", str(_config(tmp_path, f"sqlite:///{db}")), "--since", "2026-11-01",
                         "--json")
        assert cli.exit_code == 0, cli.output
        assert json.loads(cli.output)["tickets"] == 5
        assert await bot_store.get_meta("app_secret") is None and await bot_store.probe()   # still the writer
    finally:
        await bot_store.close()


async def test_readonly_store_needs_this_omnibots_schema(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    con = sqlite3.connect(old, isolation_level=None)
    for stmt in split_sql(MIGRATIONS[0]):
        con.execute(stmt)
    con.execute("PRAGMA user_version=1")
    con.close()
    with pytest.raises(StoreError, match="omnibot db migrate"):
        await SqliteStore(old, readonly=True).open()
    with pytest.raises(StoreError, match=":memory:"):
        await SqliteStore(":memory:", readonly=True).open()
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 1   # never migrated


async def test_metrics_read_the_apps_store_when_there_is_no_sqlite_file(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics on PostgreSQL (or an in-memory SQLite): the figures come from the app's own store."""
    from bot.config import load_config
    from bot.metrics import Live, MetricsWeb

    await _through_store(store, monkeypatch)
    url = "sqlite:///:memory:" if isinstance(store, SqliteStore) else store.url  # type: ignore[attr-defined]
    config = load_config(_config(tmp_path, url))
    web = MetricsWeb(config=config, live=Live(), is_agent=None, store=store)
    figures = await web.figures(since=datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert (figures["conversations"], figures["tickets"]) == (4, 4)
    assert sorted(figures["groups"]) == ["payment", "product", "shipping"]
    assert await MetricsWeb(config=config, live=Live(), is_agent=None).figures() == {}   # no store: no figures
