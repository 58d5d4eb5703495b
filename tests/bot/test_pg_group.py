"""PostgreSQL: operations asked for together go to one connection together, and those that write
share one transaction (a group commit, issue 20), on a real PostgreSQL (tests/pg.py).

Each operation still has its own result or its own error: if one fails inside the shared
transaction, it is rolled back and they run again one by one, so a failing operation fails
alone and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from bot.errors import StoreConflict
from bot.model import Inbound
from bot.storage.postgres import PostgresStore
from bot.storage import postgres as pgmod
from bot.storage.sql import Run, lock_key, transaction


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every shared transaction that committed."""
    sizes: list[int] = []
    real = pgmod._run_grouped

    async def counting(con, calls):
        out = await real(con, calls)
        sizes.append(len(calls))
        return out

    monkeypatch.setattr(pgmod, "_run_grouped", counting)
    return sizes


def _inbound(n: int, ext: str = "c1") -> Inbound:
    return Inbound(channel="webchat", external_id=ext, platform_message_id=f"m{n}", text=f"hello {n}",
                   sender_name="Ann")


async def test_concurrent_writes_share_commits_and_keep_their_order(pg: PostgresStore, groups: list[int]) -> None:
    results = await asyncio.gather(*(pg.record_inbound(_inbound(n)) for n in range(40)))
    assert sum(groups) >= 20 and len(groups) < 10           # most of 40 writes shared a few commits
    ids = [r.message.id for r in results]
    assert ids == sorted(ids)                                 # run in the order they were asked for
    assert len({r.conversation.id for r in results}) == 1
    assert [m.text for m in await pg.unprocessed_inbound(results[0].conversation.id)] == \
        [f"hello {n}" for n in range(40)]


async def test_a_group_takes_all_its_locks_in_the_round_trip_that_begins_it(
        pg: PostgresStore, groups: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20: the locks of a group's operations are taken together with its BEGIN, in key
    order, not in a round trip of their own per operation; each operation still runs under its
    own address's lock until the shared COMMIT."""
    sent: list[str] = []
    real = asyncpg.connection.Connection.execute

    def execute(con, query, *args, **kw):
        sent.append(query)
        return real(con, query, *args, **kw)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", execute)
    results = await asyncio.gather(*(pg.record_inbound(_inbound(n, f"c{n}")) for n in range(12)))
    assert sum(groups) == 12 and len(groups) < 6
    assert "SELECT pg_advisory_xact_lock($1)" not in sent              # none alone
    begins = [q for q in sent if q.startswith("BEGIN; SET LOCAL lock_timeout")]
    assert len(begins) == len(groups)
    taken = [int(k) for q in begins for k in re.findall(r"pg_advisory_xact_lock\((-?\d+)\)", q)]
    assert sorted(taken) == sorted(lock_key(f"addr:webchat:c{n}") for n in range(12))
    for q in begins:
        keys = [int(k) for k in re.findall(r"pg_advisory_xact_lock\((-?\d+)\)", q)]
        assert keys == sorted(keys)
    assert [r.message.text for r in results] == [f"hello {n}" for n in range(12)]


def _dup_insert():
    yield Run("INSERT INTO meta(key, value) VALUES ('k', 'again')")


@transaction
def _half_then_fail():
    yield Run("INSERT INTO meta(key, value) VALUES ('half', 'written')")
    raise ValueError("changed its mind")


async def test_a_failing_operation_fails_alone_and_leaves_nothing(pg: PostgresStore, groups: list[int]) -> None:
    await pg.set_meta("k", "v1")
    outcome = await asyncio.gather(pg.set_meta("a", "1"), pg._call(_dup_insert, (), {}), pg.set_meta("b", "2"),
                                   pg._call(_half_then_fail, (), {}), pg.set_meta("c", "3"), pg.get_meta("k"),
                                   return_exceptions=True)
    assert outcome[0] is None and outcome[2] is None and outcome[4] is None and outcome[5] == "v1"
    assert isinstance(outcome[1], StoreConflict)             # the primary key says no
    assert isinstance(outcome[3], ValueError)
    assert groups == []                                      # the shared try was rolled back ...
    assert [await pg.get_meta(k) for k in ("a", "b", "c", "k", "half")] == ["1", "2", "3", "v1", None]


async def test_a_lock_held_elsewhere_makes_the_group_give_up_not_wait(pg: PostgresStore, pg_url: str,
                                                                     groups: list[int]) -> None:
    """Another instance holds the address's lock: the shared transaction gives up after
    GROUP_LOCK_WAIT_MS (it holds its locks until its COMMIT, so two groups must not wait on each
    other), and the operations run one by one; each waits as it would alone, none is lost."""
    other = await asyncpg.connect(pg_url)
    try:
        await other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock_key('addr:webchat:c1')})")
        both = asyncio.gather(pg.record_inbound(_inbound(1)), pg.set_meta("free", "yes"))
        await asyncio.sleep(pgmod.GROUP_LOCK_WAIT_MS / 1000 * 3)
        assert not both.done()                                # the inbound waits for the lock
        await other.execute("COMMIT")
        r, _ = await asyncio.wait_for(both, 5)
    finally:
        await other.close()
    assert groups == []                                       # not in a shared transaction
    assert r.message.text == "hello 1" and await pg.get_meta("free") == "yes"
    assert [m.text for m in await pg.unprocessed_inbound(r.conversation.id)] == ["hello 1"]


async def test_operations_asked_for_before_close_still_run(pg_url: str) -> None:
    s = PostgresStore(pg_url)
    await s.open()
    pending = asyncio.ensure_future(s.set_meta("late", "yes"))
    await asyncio.sleep(0)
    await s.close()
    await pending
    again = PostgresStore(pg_url)
    await again.open()
    try:
        assert await again.get_meta("late") == "yes"
    finally:
        await again.close()
