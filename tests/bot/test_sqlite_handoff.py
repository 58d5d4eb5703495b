"""SQLite: operations asked for together cross to the connection thread together (issue 20).

Each operation still runs alone and in order, with its own result or its own error; only the
hand-off to aiosqlite's thread is shared.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.errors import StoreConflict
from bot.model import Inbound
from bot.storage import SqliteStore


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
