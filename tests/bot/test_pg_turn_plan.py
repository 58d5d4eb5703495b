"""PostgreSQL's generic plan of a turn's one statement (issue 20) reads its inbound message by
the primary key and looks for an older waiting message in ``messages_unprocessed``: never a
whole scan of an unrelated partial index, on a young table without statistics or an analysed one.

asyncpg prepares the statement and the server switches to a generic plan (made without the
parameters' values) after a few executions, kept until the tables' statistics change. On young
tables the costs of the primary key and of a whole scan of the small partial index
``messages_inbound_dedupe`` (predicate ``direction = 'in'``, implied by the processed mark's
``id=? AND direction='in'``) tied, and the generic plan then read every inbound message per turn
(bench/pg_statements.py: 600-900 buffers per call). The index now covers only rows with a
platform id (migration 16), so only a query that names ``platform_message_id`` can use it.
"""

from __future__ import annotations

import re

import asyncpg
import pytest

from bot.model import Inbound, Outbound
from bot.storage import TurnBasis, ops_pg
from bot.storage.postgres import PostgresStore
from bot.storage.sql import pg_sql


async def _generic_plan(con: asyncpg.Connection, sql: str, args: list) -> str:
    """The server's generic plan of ``sql`` (prepared as asyncpg does, untyped), as EXPLAIN shows it."""
    await con.execute("SET plan_cache_mode = force_generic_plan")
    await con.execute(f"PREPARE s AS {sql}")
    values = ", ".join("NULL" if a is None else str(a) if isinstance(a, (int, float))
                       else "'" + str(a).replace("'", "''") + "'" for a in args)
    plan = "\n".join(r[0] for r in await con.fetch(f"EXPLAIN EXECUTE s({values})"))
    await con.execute("DEALLOCATE s")
    assert re.search(r"= \$\d+", plan), plan         # made without the parameters' values
    return plan


def _turn_statement(conversation_id: str, basis: TurnBasis) -> tuple[str, list]:
    op = ops_pg.commit_turn_pg(conversation_id, sets=["updated_at=?", "flow_state=?"], args=["t", None],
                               inbound_id=basis.message_id, replies=[Outbound(text="hi")], now_iso="t",
                               now_ts=1.0, owner=None, basis=basis)
    request = next(op)
    return pg_sql(request.sql), list(request.args)


@pytest.mark.parametrize("messages, analyze", [(1, False), (30, False), (300, True)])
async def test_the_turns_generic_plan_reads_messages_by_the_right_indexes(pg: PostgresStore, pg_url: str,
                                                                         messages: int, analyze: bool) -> None:
    for n in range(messages):
        result = await pg.record_inbound(Inbound(channel="webchat", external_id=f"c{n % 3}",
                                                 platform_message_id=f"m{n}", text=f"hello {n}"))
    assert result.basis is not None
    sql, args = _turn_statement(result.conversation.id, result.basis)
    con = await asyncpg.connect(pg_url)
    try:
        # as on a live database: the older messages answered, this one waiting
        await con.execute("UPDATE messages SET status='processed' WHERE id <> $1", result.basis.message_id)
        if analyze:
            await con.execute("ANALYZE")
        plan = await _generic_plan(con, sql, args)
    finally:
        await con.close()
    scans = re.findall(r"(Seq Scan|Index Scan|Index Only Scan|Bitmap Index Scan)(?: using (\w+))? on messages",
                       plan)
    assert "messages_inbound_dedupe" not in plan, plan
    # the inbound read twice by id (still received; its processed mark), the older waiting one looked for
    assert sorted(index for _, index in scans) == ["messages_pkey", "messages_pkey", "messages_unprocessed"], plan


@pytest.mark.parametrize("messages, analyze", [(1, False), (300, True)])
async def test_the_repeat_check_still_finds_a_message_by_its_platform_id_in_the_dedupe_index(
        pg: PostgresStore, pg_url: str, messages: int, analyze: bool) -> None:
    """Migration 16 narrowed ``messages_inbound_dedupe`` to rows with a platform id: the query it
    serves (``channel=? AND platform_message_id=? AND direction='in'``, which implies it) still uses it."""
    for n in range(messages):
        await pg.record_inbound(Inbound(channel="webchat", external_id=f"c{n % 3}", platform_message_id=f"m{n}",
                                        text=f"hello {n}"))
    request = next(ops_pg.record_inbound_pg(Inbound(channel="webchat", external_id="c0", platform_message_id="m0",
                                                    text="hello 0"), "t"))
    con = await asyncpg.connect(pg_url)
    try:
        if analyze:
            await con.execute("ANALYZE")
        plan = await _generic_plan(con, pg_sql(request.sql), list(request.args))
    finally:
        await con.close()
    assert re.search(r"Index (Only )?Scan using messages_inbound_dedupe on messages", plan), plan
