"""SQLite: operations asked for together cross to the connection thread together (issue 20).

Each operation still runs alone and in order, with its own result or its own error; the
hand-off to aiosqlite's thread is shared, and so is the COMMIT of those that write (each in
its own savepoint, all or nothing on its own).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import sqlite3

from bot.errors import StorageUnavailable, StoreConflict
from bot.model import Inbound
from bot.storage import SqliteStore
from bot.storage.sql import Run, transaction


@pytest.fixture
async def sqlite(tmp_path: Path):
    s = SqliteStore(tmp_path / "x.sqlite3")
    await s.open()
    yield s
    await s.close()


def _inbound(n: int, ext: str = "c1") -> Inbound:
    return Inbound(channel="webchat", external_id=ext, platform_message_id=f"m{n}", text=f"hello {n}",
                   sender_name="Ann")


async def test_concurrent_operations_share_hand_offs_and_keep_their_order(sqlite: SqliteStore,
                                                                           monkeypatch) -> None:
    calls = []
    real = sqlite.db._execute

    async def counting(fn, *args):
        calls.append(len(args[1]) if len(args) > 1 and isinstance(args[1], list) else 1)
        return await real(fn, *args)

    monkeypatch.setattr(sqlite.db, "_execute", counting)
    results = await asyncio.gather(*(sqlite.record_inbound(_inbound(n)) for n in range(40)))
    assert sum(calls) == 40 and len(calls) < 10           # 40 operations, a few hand-offs
    ids = [r.message.id for r in results]
    assert ids == sorted(ids)                             # run in the order they were asked for
    assert len({r.conversation.id for r in results}) == 1
    assert [m.text for m in await sqlite.unprocessed_inbound(results[0].conversation.id)] == \
        [f"hello {n}" for n in range(40)]


async def test_one_failing_operation_fails_alone(sqlite: SqliteStore) -> None:
    await sqlite.set_meta("k", "v1")

    async def conflict() -> None:
        await sqlite._call(_dup_insert, (), {})     # the primary key says no

    outcome = await asyncio.gather(sqlite.set_meta("a", "1"), conflict(), sqlite.set_meta("b", "2"),
                                   sqlite.get_meta("k"), return_exceptions=True)
    assert outcome[0] is None and outcome[2] is None and outcome[3] == "v1"
    assert isinstance(outcome[1], StoreConflict)
    assert await sqlite.get_meta("a") == "1" and await sqlite.get_meta("b") == "2"


def _dup_insert():
    from bot.storage.sql import Run

    yield Run("INSERT INTO meta(key, value) VALUES ('k', 'again')")


async def test_operations_asked_for_before_close_still_run(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "y.sqlite3")
    await s.open()
    pending = asyncio.ensure_future(s.set_meta("late", "yes"))
    await asyncio.sleep(0)
    await s.close()
    await pending
    again = SqliteStore(tmp_path / "y.sqlite3")
    await again.open()
    try:
        assert await again.get_meta("late") == "yes"
    finally:
        await again.close()


async def _statements(s: SqliteStore) -> list[str]:
    seen: list[str] = []
    await s.db._execute(s._con.set_trace_callback, seen.append)
    return seen


async def test_concurrent_writes_share_one_commit(sqlite: SqliteStore) -> None:
    seen = await _statements(sqlite)
    await asyncio.gather(*(sqlite.set_meta(f"k{n}", str(n)) for n in range(20)))
    await sqlite.db._execute(sqlite._con.set_trace_callback, None)
    assert 1 <= seen.count("COMMIT") < 5
    assert [await sqlite.get_meta(f"k{n}") for n in range(20)] == [str(n) for n in range(20)]


@transaction
def _half_then_fail():
    yield Run("INSERT INTO meta(key, value) VALUES ('half', 'written')")
    raise ValueError("changed its mind")


async def test_a_failing_operation_in_a_shared_commit_leaves_nothing_and_the_others_commit(
        sqlite: SqliteStore) -> None:
    seen = await _statements(sqlite)
    outcome = await asyncio.gather(sqlite.set_meta("a", "1"), sqlite._call(_half_then_fail, (), {}),
                                   sqlite.set_meta("b", "2"), return_exceptions=True)
    await sqlite.db._execute(sqlite._con.set_trace_callback, None)
    assert seen.count("COMMIT") == 1                      # they did share it
    assert isinstance(outcome[1], ValueError) and outcome[0] is None and outcome[2] is None
    assert await sqlite.get_meta("half") is None
    assert await sqlite.get_meta("a") == "1" and await sqlite.get_meta("b") == "2"


async def test_without_the_write_lock_reads_still_work_and_writes_fail_alone(sqlite: SqliteStore,
                                                                            tmp_path: Path) -> None:
    await sqlite.set_meta("k", "v")
    await sqlite.db.execute("PRAGMA busy_timeout=30")
    other = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")                      # another process holds the write lock
    try:
        outcome = await asyncio.gather(sqlite.get_meta("k"), sqlite.set_meta("a", "1"),
                                       sqlite.set_meta("b", "2"), sqlite.get_meta("k"), return_exceptions=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert outcome[0] == "v" and outcome[3] == "v"
    assert all(isinstance(o, StorageUnavailable) for o in outcome[1:3])
    assert await sqlite.get_meta("a") is None


def _half_then_fail_unguarded():
    """Not a transaction: what it wrote before failing stays (as in autocommit)."""
    yield Run("INSERT INTO meta(key, value) VALUES ('half', 'written')")
    raise ValueError("changed its mind")


async def test_in_a_shared_commit_only_all_or_nothing_operations_take_a_savepoint(sqlite: SqliteStore) -> None:
    seen = await _statements(sqlite)
    outcome = await asyncio.gather(
        sqlite.record_inbound(_inbound(1)), sqlite.get_meta("k"), sqlite._call(_half_then_fail_unguarded, (), {}),
        sqlite.set_meta("b", "2"), sqlite.record_inbound(_inbound(2)), return_exceptions=True)
    await sqlite.db._execute(sqlite._con.set_trace_callback, None)
    assert seen.count("COMMIT") == 1                      # one shared commit
    # record_inbound is a transaction (a savepoint each); the read, set_meta and the unguarded
    # operation are not: no savepoint, two statements fewer each
    assert seen.count("SAVEPOINT op") == 2 and seen.count("RELEASE op") == 2
    assert isinstance(outcome[2], ValueError) and outcome[1] is None and outcome[3] is None
    assert await sqlite.get_meta("half") == "written"     # kept, as without the shared commit
    assert await sqlite.get_meta("b") == "2"
    assert [m.text for m in await sqlite.unprocessed_inbound(outcome[0].conversation.id)] == ["hello 1", "hello 2"]
