"""``omnibot db copy``: a realistic SQLite database -> PostgreSQL -> a second SQLite file; every
table's rows equal on all three, the app carries on on the copies, and the refusals."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.media import MediaStore
from bot.model import Attachment, Inbound, Outbound, utcnow
from bot.storage import HandoffSpec, Store, Ticket, open_store
from bot.storage.copy import SKIPPED, TABLES, copy_database, dump
from bot.storage.filelock import SingleInstanceLock

PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def inbound(pid: str, text: str, *, channel: str = "webchat", ext: str = "v1", **kw: Any) -> Inbound:
    return Inbound(channel=channel, external_id=ext, platform_message_id=pid, text=text, **kw)


def handoff(team: str = "support") -> HandoffSpec:
    return HandoffSpec(team=team, reason="asked for a human", priority=1, context={"topic": "refund"},
                       message=lambda position: Outbound(f"you are number {position}"))


async def populate(store: Store) -> None:
    """Something of every kind the bot keeps, through the store's own operations."""
    now = utcnow()
    await store.set_meta("app_secret", "s3cret-value")
    for _ in range(3):
        await store.next_sequence("reference", start=1001)          # tickets C-1001..C-1003 taken
    media = MediaStore(store)  # type: ignore[arg-type]
    photo = await media.save(PHOTO, owner="webchat:v1", name="box.png", mime="image/png")
    first = None
    for i, (channel, ext) in enumerate([("webchat", "v1"), ("telegram", "42"), ("webchat", "v2")]):
        r = await store.record_inbound(inbound(f"{ext}:1", f"hello {i} \u00e9\u00e8 {{ 7*7 }}", channel=channel,
                                               ext=ext, sender_name=f"Cust {i}",
                                               attachments=(Attachment(kind="image", url=f"/media/{photo.id}",
                                                                       name="box.png", mime="image/png",
                                                                       size=photo.size),) if i == 0 else ()))
        first = first or r
        await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state={"flow": "faq", "n": i},
                                replies=[Outbound("Hi!"), Outbound("How can I help?")])
        r2 = await store.record_inbound(inbound(f"{ext}:2", "a human please", channel=channel, ext=ext))
        await store.commit_turn(r2.conversation.id, inbound_id=r2.message.id, flow_state=None,
                                replies=[Outbound("connecting you")], handoff=handoff() if i < 2 else None)
    assert first is not None
    cid = first.conversation.id
    ho = await store.active_handoff(cid)
    assert ho is not None
    await store.transition_handoff(ho.id, expected="queued", new="claimed", agent="Anna")
    await store.save_desk_thread("slack", ho.id, channel="C1", ts="1700000000.000100", team="support",
                                 relayed_upto=3)
    due = await store.due_outbox(now.timestamp() + 60, limit=1)
    await store.mark_retry(due[0].message.id, next_attempt_at=now.timestamp() + 12.5, error="timeout")
    await store.create_ticket(Ticket(reference="C-1003", customer_id=first.customer.id, conversation_id=cid,
                                     status="received", category="shipping", severity="high",
                                     department="logistics", team="complaints", priority=2, created_at=now,
                                     fields={"order": "AB123456"}, reasons=("rule 1",), origin="turn:1:2"))
    await store.create_link_code(first.customer.id, "LINK-1234", at=now, expires_at=now + timedelta(minutes=10))
    await store.save_effect("turn:1:2:refund", {"ok": True, "amount": 12.5})
    await store.first_seen("slack", "Ev0001")
    await store.create_agent("agt_1", name="Anna Smith", email="anna@shop.test", teams=["support"], role="agent",
                             password_hash="$argon2id$v=19$m=65536,t=3,p=4$x$y", created_at=now)
    await store.set_agent_token("anna@shop.test", "ab" * 32)
    await store.add_note(cid, author="Anna Smith", text="called the courier", at=now, handoff_id=ho.id, via="web")
    await store.mark_read("Anna Smith", cid, at=now)
    await store.add_compensation("C-1003", kind="refund", amount=12.5, currency="EUR", state="pending",
                                 requested_by="Anna Smith", at=now)
    await store.audit("agent:Anna Smith", "claim", at=now, customer_id=first.customer.id, target=ho.id,
                      detail={"team": "support"})
    await store.add_flow_version("abc", {"main.yaml": "flows: {}\n"}, loaded_by="startup", at=now)
    # ephemeral: never copied
    await store.register_instance("inst-1", host="h", pid=1, now=now.timestamp())  # type: ignore[attr-defined]
    await store.take_lease("telegram-poller", "inst-1", now=now.timestamp(), ttl=30)  # type: ignore[attr-defined]
    await store.rate_hit("webchat:v1", now=now.timestamp(), window=60)  # type: ignore[attr-defined]


async def build_sqlite(path: Path) -> None:
    store = await open_store(f"sqlite:///{path}")
    try:
        await populate(store)
    finally:
        await store.close()


def normalised(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows comparable across backends: whole floats as ints, memoryviews as bytes, stable order."""
    def value(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, memoryview):
            return bytes(v)
        return v

    return {t: sorted(({k: value(v) for k, v in row.items()} for row in rows), key=lambda r: repr(sorted(r.items())))
            for t, rows in tables.items()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def carries_on(url: str, copied: dict[str, list[dict[str, Any]]]) -> None:
    """The app works on a copy: new messages and turns, ids and sequences after the copied ones."""
    top_message = max(r["id"] for r in copied["messages"])
    top_handoff = max(r["rowid"] for r in copied["handoffs"])
    store = await open_store(url)
    try:
        assert await store.get_meta("app_secret") == "s3cret-value"
        assert await store.next_sequence("reference", start=1001) == 1004
        again = await store.record_inbound(inbound("v1:1", "hello 0"))
        assert again.duplicate                                       # dedupe keys came along
        r = await store.record_inbound(inbound("v1:3", "and again"))
        assert not r.duplicate and r.message.id > top_message
        out = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state={"flow": "x"},
                                      replies=[Outbound("still here")])
        assert out[0].id > r.message.id
        fresh = await store.record_inbound(inbound("v9:1", "new customer", ext="v9"))
        await store.commit_turn(fresh.conversation.id, inbound_id=fresh.message.id, flow_state=None,
                                replies=[Outbound("hi")], handoff=handoff())
        ho = await store.latest_handoff(fresh.conversation.id)
        assert ho is not None and ho.state == "queued"
        assert await store.queue_position(ho.id) == 2                # behind the copied queued one
        assert await store.get_ticket("C-1003") is not None
        media = MediaStore(store)  # type: ignore[arg-type]
        [m] = copied["media"]
        assert await media.read(m["id"]) == PHOTO
        rowids = [row["rowid"] for row in (await dump(url))["handoffs"]]
        assert max(rowids) > top_handoff
    finally:
        await store.close()


async def test_sqlite_to_postgresql_to_sqlite(tmp_path: Path, pg_url: str) -> None:
    src, back = tmp_path / "src.sqlite3", tmp_path / "back.sqlite3"
    await build_sqlite(src)
    before = sha(src)
    seen: list[tuple[str, int, int]] = []
    with SingleInstanceLock(src):        # a bot runs on the source: read-only copying is allowed
        counts = await copy_database(f"sqlite:///{src}", pg_url, batch=2,
                                     progress=lambda t, d, n: seen.append((t, d, n)))
    assert sha(src) == before            # the source was not written to
    assert [c.table for c in counts] == list(TABLES) and all(c.ok for c in counts)
    assert {c.table: c.target for c in counts}["messages"] == 17
    assert ("messages", 2, 17) in seen and ("messages", 17, 17) in seen     # in batches
    counts2 = await copy_database(pg_url, f"sqlite:///{back}")
    assert all(c.ok for c in counts2) and [(c.source, c.target) for c in counts2] == \
        [(c.source, c.target) for c in counts]

    a, b, c = (await dump(f"sqlite:///{src}"), await dump(pg_url), await dump(f"sqlite:///{back}"))
    assert all(a[t] for t in TABLES), [t for t in TABLES if not a[t]]       # every table has rows
    assert normalised(a) == normalised(b) == normalised(c)
    assert set(a) == set(TABLES)
    for path in (back,):
        con = sqlite3.connect(path)
        try:
            for t in SKIPPED:
                assert con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] == 0
        finally:
            con.close()

    await carries_on(pg_url, a)
    await carries_on(f"sqlite:///{back}", a)


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["db", "copy", *args], catch_exceptions=False)


def test_cli_copy_counts_refusals_and_masked_password(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "src.sqlite3"
    asyncio.run(build_sqlite(src))
    target = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    assert "hunter2" in target
    result = run("--from", str(src), "--to", target, "--yes")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "postgres:***@" in result.output
    assert "  messages: 17 -> 17 ok" in result.output and "  media: 1 -> 1 ok" in result.output
    assert "  messages: 17/17" in result.output
    assert "instances" not in result.output

    again = run("--from", str(src), "--to", target, "--yes")     # the target is not empty now
    assert again.exit_code == 1
    assert "is not empty" in again.output and "hunter2" not in again.output

    empty = tmp_path / "empty.sqlite3"
    nope = run("--from", target, "--to", str(empty))           # no --yes, answered no
    assert nope.exit_code != 0 and not empty.exists()

    older = tmp_path / "old.sqlite3"
    con = sqlite3.connect(older)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("PRAGMA user_version=10")
    con.close()
    refused = run("--from", str(older), "--to", str(tmp_path / "x.sqlite3"), "--yes")
    assert refused.exit_code == 1 and "omnibot db migrate" in refused.output


def test_cli_copy_help_says_a_live_sqlite_source_is_fine() -> None:
    result = CliRunner().invoke(main, ["db", "copy", "--help"])
    assert result.exit_code == 0
    assert "read-only" in result.output and "while a bot runs on it" in result.output


@pytest.mark.parametrize("direction", ["sqlite->sqlite"])
def test_copy_into_a_database_in_use_is_refused(tmp_path: Path, direction: str) -> None:
    src, dst = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    asyncio.run(build_sqlite(src))
    with SingleInstanceLock(dst):
        result = run("--from", str(src), "--to", str(dst), "--yes")
    assert result.exit_code == 1 and "error:" in result.output
