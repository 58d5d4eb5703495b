"""The per-message operations that do two operations' work in one (bot/storage/ops_hotpath.py):
each gives exactly what the two it replaces give, on SQLite and on PostgreSQL (``store``)."""

from __future__ import annotations

import time

from bot.model import Inbound, Outbound
from bot.storage import SqliteStore, Store


def inbound(pid: str, text: str = "hi", ext: str = "A", **kw: object) -> Inbound:
    return Inbound(channel="webchat", external_id=ext, platform_message_id=pid, text=text, **kw)  # type: ignore[arg-type]


async def test_turn_start_is_unprocessed_inbound_and_load_turn(store: Store) -> None:
    a1 = await store.record_inbound(inbound("a1", "one", sender_name="Ann",
                                            customer_attributes={"language_code": "de"}))
    await store.record_inbound(inbound("b1", "other", ext="B"))
    a2 = await store.record_inbound(inbound("a2", "two"))
    cid = a1.conversation.id
    await store.commit_turn(cid, inbound_id=None, replies=[Outbound("r")], flow_state={"flow": "faq", "n": 1})
    await store.set_conversation_language(cid, "de")

    messages, loaded = await store.turn_start(cid)
    assert messages == await store.unprocessed_inbound(cid)
    assert [m.id for m in messages] == [a1.message.id, a2.message.id]
    assert [m.text for m in messages] == ["one", "two"]
    assert loaded == await store.load_turn(cid)
    conv, customer, state = loaded  # type: ignore[misc]
    assert (conv.language, customer.display_name, customer.attributes) == ("de", "Ann", {"language_code": "de"})
    assert state == {"flow": "faq", "n": 1}

    # all answered: no message, still the conversation
    await store.commit_turn(cid, inbound_id=a1.message.id, replies=[], flow_state=None)
    await store.commit_turn(cid, inbound_id=a2.message.id, replies=[], flow_state=None)
    messages, loaded = await store.turn_start(cid)
    assert messages == [] and loaded == await store.load_turn(cid)
    assert loaded is not None and loaded[2] is None        # the flow state was cleared
    assert await store.turn_start("conv_missing") == ([], None)


async def test_mark_sent_next_is_mark_sent_then_the_next_due(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    other = await store.record_inbound(inbound("q1", ext="B"))
    o1 = await store.commit_turn(other.conversation.id, inbound_id=None, replies=[Outbound("x")], flow_state=None)
    m1, m2, m3 = await store.commit_turn(cid, inbound_id=None, flow_state=None,
                                         replies=[Outbound("1"), Outbound("2"), Outbound("3")])
    now = time.time() + 1
    nxt = await store.mark_sent_next(m1.id, "pm-1", conversation_id=cid, now=now)
    assert nxt is not None and nxt.message.id == m2.id and nxt.message.text == "2"
    assert (nxt.channel, nxt.external_id, nxt.attempts) == ("webchat", "A", 0)
    assert [i.message.id for i in await store.due_outbox(now, limit=1, conversation_id=cid)] == [m2.id]
    sent = {m.id: m for m in await store.history(cid)}[m1.id]
    assert (sent.status, sent.platform_message_id) == ("sent", "pm-1")

    # the next one waits for a retry: not due now, so nothing is handed back
    await store.mark_retry(m3.id, next_attempt_at=now + 500, error="e")
    assert await store.mark_sent_next(m2.id, "pm-2", conversation_id=cid, now=now) is None
    assert (await store.mark_sent_next(m2.id, "pm-2", conversation_id=cid, now=now + 600)).message.id == m3.id  # type: ignore[union-attr]
    assert await store.mark_sent_next(m3.id, "pm-3", conversation_id=cid, now=now) is None
    # another conversation's outbox is left alone
    assert [i.message.id for i in await store.due_outbox(now)] == [o1[0].id]


async def test_record_inbound_keeps_when_the_customer_wrote(store: Store) -> None:
    """``Inbound.heard_at`` is written with the message (WhatsApp's window, one operation instead of
    ``whatsapp_saw_inbound`` + ``record_inbound``): never moved back, also by a repeat delivery."""
    def wa(pid: str, at: int | None) -> Inbound:
        return Inbound(channel="whatsapp", external_id="491510", platform_message_id=pid, text="hi", heard_at=at)

    assert await store.whatsapp_last_inbound("491510") is None
    await store.record_inbound(wa("w1", 1_790_000_000))
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_000
    await store.record_inbound(wa("w0", 1_789_000_000))               # a late, older message
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_000
    dup = await store.record_inbound(wa("w1", 1_790_000_500))          # a repeat still opens it
    assert dup.duplicate and await store.whatsapp_last_inbound("491510") == 1_790_000_500
    await store.record_inbound(wa("w2", None))                         # none given: left alone
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_500
    await store.whatsapp_saw_inbound("491510", 1_790_000_900)          # the same row as before
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_900
    # another channel's messages touch no WhatsApp window
    await store.record_inbound(inbound("x1", ext="491510"))
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_900


async def test_record_inbound_patches_customer_attributes_only_when_they_change(store: Store) -> None:
    """A Telegram customer's app language comes with every message: stored once, not rewritten
    (and the customer not read again) while it stays the same; a new value is still patched in."""
    statements: list[str] = []
    sqlite = isinstance(store, SqliteStore)       # SQLite: what the connection runs is seen
    if sqlite:
        await store.db.set_trace_callback(statements.append)

    def tg(pid: str, **attrs: object) -> Inbound:
        return Inbound(channel="telegram", external_id="77", platform_message_id=pid, text="hi",
                       customer_attributes=attrs)

    try:
        first = await store.record_inbound(tg("77:1", language_code="en", telegram_start="ad"))
        assert first.customer.attributes == {"language_code": "en", "telegram_start": "ad"}
        statements.clear()
        same = await store.record_inbound(tg("77:2", language_code="en"))
        assert same.customer.attributes == {"language_code": "en", "telegram_start": "ad"}
        if sqlite:
            assert statements and not [s for s in statements if "customers" in s and "UPDATE" in s]
        other = await store.record_inbound(tg("77:3", language_code="es"))
        assert other.customer.attributes == {"language_code": "es", "telegram_start": "ad"}
        assert (await store.get_customer(first.customer.id)).attributes["language_code"] == "es"  # type: ignore[union-attr]
    finally:
        if sqlite:
            await store.db.set_trace_callback(None)
