"""WhatsApp's store work in fewer PostgreSQL round trips (issue 20): the 24-hour window's upsert
inside record_inbound's one statement, and the send's record (links, mark, next due reply) in
one statement after its locks (bot/storage/ops_pg_whatsapp.py).

On both backends (``store``): the rows written and the outcomes are those of the several
statements SQLite still runs. On PostgreSQL: the round trips of each, counted on the connection.
"""

from __future__ import annotations

import time
from typing import Any


from bot.model import Inbound, Outbound
from bot.storage import Store

T = 1_790_000_000


def wa(pid: str, heard_at: int | None, ext: str = "491510", **kw: Any) -> Inbound:
    return Inbound(channel="whatsapp", external_id=ext, platform_message_id=pid, text="hi", heard_at=heard_at, **kw)


async def test_the_window_moves_forward_with_every_kind_of_inbound(store: Store) -> None:
    # a new customer (the statement writes no message, the rest follows): the window is written
    first = await store.record_inbound(wa("wamid.1", T))
    assert not first.duplicate and await store.whatsapp_last_inbound("491510") == T
    # an open conversation (the one-statement case): forward
    second = await store.record_inbound(wa("wamid.2", T + 60))
    assert second.conversation.id == first.conversation.id and second.message.text == "hi"
    assert await store.whatsapp_last_inbound("491510") == T + 60
    # a late message (an earlier time): stored, the window not moved back
    late = await store.record_inbound(wa("wamid.0", T - 600))
    assert not late.duplicate and late.conversation.id == first.conversation.id
    assert await store.whatsapp_last_inbound("491510") == T + 60
    # a repeat with a later time: still a repeat, and the window moves forward (as before: the
    # upsert never depended on the repeat check)
    again = await store.record_inbound(wa("wamid.2", T + 120))
    assert again.duplicate and again.message == second.message
    assert await store.whatsapp_last_inbound("491510") == T + 120
    # without heard_at: no window written; another address has its own
    await store.record_inbound(wa("wamid.3", None))
    assert await store.whatsapp_last_inbound("491510") == T + 120
    await store.record_inbound(wa("wamid.4", T + 5, ext="491511", sender_name="Bo"))
    assert await store.whatsapp_last_inbound("491511") == T + 5
    assert [m.platform_message_id for m in await store.history(first.conversation.id)] == [
        "wamid.1", "wamid.2", "wamid.0", "wamid.3"]


async def test_the_send_record_marks_links_and_reads_the_next_reply(store: Store) -> None:
    r = await store.record_inbound(wa("wamid.IN", T))
    cid = r.conversation.id
    m1, m2, m3 = await store.commit_turn(cid, inbound_id=r.message.id, flow_state=None,
                                         replies=[Outbound("1"), Outbound("2"), Outbound("3")])
    now = time.time() + 1
    nxt, failure = await store.whatsapp_mark_sent_next(m1.id, ["wamid.A"], conversation_id=cid, now=now)
    assert failure is None and nxt is not None and (nxt.message.id, nxt.external_id, nxt.channel) == (
        m2.id, "491510", "whatsapp")
    [h1] = [m for m in await store.history(cid) if m.id == m1.id]
    assert (h1.status, h1.platform_message_id, h1.error) == ("sent", "wamid.A", None)
    # a delivered status first: sent all the same; the next due is the third
    await store.whatsapp_apply_status("wamid.B", "delivered")
    assert (await store.whatsapp_mark_sent_next(m2.id, ["wamid.B"], conversation_id=cid, now=now))[0].message.id == m3.id
    # a failure first: failed with its reason, nothing due after the last
    await store.whatsapp_apply_status("wamid.C2", "failed", error="no such user (131026)")
    assert await store.whatsapp_mark_sent_next(m3.id, ["wamid.C1", "wamid.C2"], conversation_id=cid,
                                               now=now) == (None, "no such user (131026)")
    out = [(m.status, m.platform_message_id, m.error) for m in await store.history(cid) if m.direction == "out"]
    assert out == [("sent", "wamid.A", None), ("sent", "wamid.B", None),
                   ("failed", "wamid.C2", "no such user (131026)")]
    # every part is linked: a later status of the first part finds the message
    assert (await store.whatsapp_apply_status("wamid.C1", "read"))["message_id"] == m3.id
    # the next due reply is one that is due: a reply not yet due is not returned
    r2 = await store.record_inbound(wa("wamid.IN2", T + 1))
    n1, _ = await store.commit_turn(cid, inbound_id=r2.message.id, flow_state=None,
                                     replies=[Outbound("4"), Outbound("5")])
    assert await store.whatsapp_mark_sent_next(n1.id, ["wamid.D"], conversation_id=cid,
                                               now=time.time() - 3600) == (None, None)


# -- round trips on PostgreSQL (fixtures `pg`, `trips`: tests/conftest.py) ---------------------

async def test_round_trips_of_a_whatsapp_message_on_postgresql(pg: Store, trips: list[str]) -> None:
    first = await pg.record_inbound(wa("wamid.1", T))
    cid = first.conversation.id
    trips.clear()
    r = await pg.record_inbound(wa("wamid.2", T + 60))
    # BEGIN + lock; the window, the repeat check, the customer, the conversation and the message; COMMIT
    assert len(trips) == 3, trips
    assert await pg.whatsapp_last_inbound("491510") == T + 60
    m1, m2 = await pg.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("a"), Outbound("b")],
                                  flow_state=None)
    trips.clear()
    nxt, failure = await pg.whatsapp_mark_sent_next(m1.id, ["wamid.A"], conversation_id=cid, now=time.time() + 1)
    # BEGIN + the wamid's lock; the link, the mark and the next due reply; COMMIT
    assert failure is None and nxt is not None and nxt.message.id == m2.id and len(trips) == 3, trips
    # a failure that came first: one statement more (the failed mark), as few as before otherwise
    await pg.whatsapp_apply_status("wamid.B", "failed", error="e")
    trips.clear()
    assert await pg.whatsapp_mark_sent_next(m2.id, ["wamid.B"], conversation_id=cid, now=time.time() + 1) == (None, "e")
    assert len(trips) == 4, trips


async def test_a_status_is_one_read_and_at_most_one_write(tmp_path: Any) -> None:
    """Meta sends statuses for every reply (sent, delivered, read): the status kept so far and the
    message it belongs to are read in one statement, then the status is written if it moves on."""
    from bot.storage import open_store

    store = await open_store(f"sqlite:///{tmp_path / 'o.sqlite3'}")
    try:
        r = await store.record_inbound(wa("wamid.IN", T))
        [m1] = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                       replies=[Outbound("1")])
        await store.whatsapp_mark_sent_next(m1.id, ["wamid.A"], conversation_id=r.conversation.id, now=time.time())
        traced: list[str] = []
        await store.db.set_trace_callback(traced.append)

        async def statements(status: str, wamid: str = "wamid.A") -> tuple[str, list[str]]:
            traced.clear()
            res = await store.whatsapp_apply_status(wamid, status)
            return res["outcome"], [s.split()[0] for s in traced
                                    if not s.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]

        assert await statements("delivered") == ("recorded", ["SELECT", "INSERT"])
        assert await statements("sent") == ("recorded", ["SELECT"])            # no step back: nothing written
        assert await statements("read", "wamid.UNKNOWN") == ("unknown", ["SELECT", "INSERT"])
        assert await store.whatsapp_status("wamid.A") == {"status": "delivered", "error": ""}
    finally:
        await store.close()


async def test_round_trips_of_a_status_on_postgresql(pg: Store, trips: list[str]) -> None:
    r = await pg.record_inbound(wa("wamid.IN", T))
    [m1] = await pg.commit_turn(r.conversation.id, inbound_id=r.message.id, replies=[Outbound("a")], flow_state=None)
    await pg.whatsapp_mark_sent_next(m1.id, ["wamid.A"], conversation_id=r.conversation.id, now=time.time())
    trips.clear()
    assert (await pg.whatsapp_apply_status("wamid.A", "delivered"))["outcome"] == "recorded"
    # BEGIN + the wamid's lock; the kept status and the message; the status; COMMIT
    assert len(trips) == 4, trips
    trips.clear()
    assert (await pg.whatsapp_apply_status("wamid.A", "failed", error="e"))["outcome"] == "failed_now"
    assert len(trips) == 5, trips      # and the failed mark


async def test_sent_delivered_read_are_kept_forward_only(store: Store) -> None:
    """whatsapp_note_status (the connector's for every status but failed) keeps the latest status
    as whatsapp_apply_status does: only forward, and a failure sticks."""
    import pytest

    r = await store.record_inbound(wa("wamid.IN", T))
    [m1] = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                   replies=[Outbound("1")])
    await store.whatsapp_mark_sent_next(m1.id, ["wamid.A"], conversation_id=r.conversation.id, now=time.time())
    steps = [("delivered", "delivered"), ("sent", "delivered"), ("read", "read"), ("delivered", "read"),
             ("sent", "read")]
    for status, kept in steps:
        await store.whatsapp_note_status("wamid.A", status)
        assert await store.whatsapp_status("wamid.A") == {"status": kept, "error": ""}, (status, kept)
    # a wamid not (yet) ours: kept for the send, as before
    await store.whatsapp_note_status("wamid.EARLY", "sent")
    assert await store.whatsapp_status("wamid.EARLY") == {"status": "sent", "error": ""}
    # a failure sticks; the message is failed and stays so
    assert (await store.whatsapp_apply_status("wamid.A", "failed", error="gone"))["outcome"] == "failed_now"
    for status in ("sent", "delivered", "read"):
        await store.whatsapp_note_status("wamid.A", status)
    assert await store.whatsapp_status("wamid.A") == {"status": "failed", "error": "gone"}
    assert [m.status for m in await store.history(r.conversation.id) if m.id == m1.id] == ["failed"]
    # a delivered status that came before the send's record: sent all the same
    [m2] = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                   replies=[Outbound("2")])
    await store.whatsapp_note_status("wamid.B", "delivered")
    assert (await store.whatsapp_mark_sent_next(m2.id, ["wamid.B"], conversation_id=r.conversation.id,
                                                now=time.time()))[1] is None
    assert [m.status for m in await store.history(r.conversation.id) if m.id == m2.id] == ["sent"]
    with pytest.raises(ValueError):
        await store.whatsapp_note_status("wamid.A", "failed")


async def test_a_status_but_failed_is_one_statement(tmp_path: Any) -> None:
    from bot.storage import open_store

    store = await open_store(f"sqlite:///{tmp_path / 'o.sqlite3'}")
    try:
        traced: list[str] = []
        await store.db.set_trace_callback(traced.append)
        await store.whatsapp_note_status("wamid.A", "delivered")
        await store.whatsapp_note_status("wamid.A", "sent")
        # autocommit: no BEGIN, no SAVEPOINT, no read
        assert [s.split()[0] for s in traced] == ["INSERT", "INSERT"], traced
    finally:
        await store.close()


async def test_round_trips_of_a_status_but_failed_on_postgresql(pg: Store, trips: list[str]) -> None:
    await pg.whatsapp_note_status("wamid.A", "delivered")
    trips.clear()
    await pg.whatsapp_note_status("wamid.A", "read")
    await pg.whatsapp_note_status("wamid.A", "sent")
    assert len(trips) == 2, trips
    assert await pg.whatsapp_status("wamid.A") == {"status": "read", "error": ""}
