"""The store contract for the WhatsApp connector's operations (bot.storage.ops_whatsapp),
on SQLite and on a real PostgreSQL (``store``)."""

from __future__ import annotations

import time

from bot.model import Inbound, Outbound
from bot.storage import Store


async def _sent_message(store: Store, wa_id: str = "491510") -> tuple[str, int]:
    r = await store.record_inbound(Inbound(channel="whatsapp", external_id=wa_id, platform_message_id="wamid.IN1",
                                           text="hi"))
    [m] = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                  replies=[Outbound("hello")])
    return r.conversation.id, m.id


async def test_last_inbound_only_moves_forward(store: Store) -> None:
    assert await store.whatsapp_last_inbound("491510") is None
    await store.whatsapp_saw_inbound("491510", 1_790_000_000)
    await store.whatsapp_saw_inbound("491510", 1_789_000_000)          # a late redelivery
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_000
    await store.whatsapp_saw_inbound("491510", 1_790_000_500)
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_500


async def test_inbound_seen(store: Store) -> None:
    assert not await store.whatsapp_inbound_seen("wamid.IN1")
    await _sent_message(store)
    assert await store.whatsapp_inbound_seen("wamid.IN1")


async def test_statuses_are_monotonic_and_failed_marks_the_message(store: Store) -> None:
    conv, mid = await _sent_message(store)
    await store.whatsapp_mark_sent_next(mid, ["wamid.OUT1"], conversation_id=conv, now=time.time())
    assert (await store.whatsapp_apply_status("wamid.OUT1", "delivered"))["outcome"] == "recorded"
    await store.whatsapp_apply_status("wamid.OUT1", "sent")
    assert (await store.whatsapp_status("wamid.OUT1"))["status"] == "delivered"
    res = await store.whatsapp_apply_status("wamid.OUT1", "failed", error="not delivered: x (131026)")
    assert res["outcome"] == "failed_now" and res["message_id"] == mid and res["conversation_id"] == conv
    [m] = [m for m in await store.history(conv) if m.id == mid]
    assert m.status == "failed" and m.error == "not delivered: x (131026)"
    assert (await store.whatsapp_apply_status("wamid.OUT1", "failed", error="again"))["outcome"] == "recorded"
    await store.whatsapp_apply_status("wamid.OUT1", "read")
    assert (await store.whatsapp_status("wamid.OUT1"))["status"] == "failed"
    assert (await store.whatsapp_apply_status("wamid.OTHER", "failed"))["outcome"] == "unknown"


async def test_a_failure_that_overtakes_the_send(store: Store) -> None:
    conv, mid = await _sent_message(store)
    # the failed status before the send's record: kept; the record marks the message failed, not sent
    assert (await store.whatsapp_apply_status("wamid.EARLY", "failed", error="e1"))["outcome"] == "unknown"
    nxt, failure = await store.whatsapp_mark_sent_next(mid, ["wamid.EARLY"], conversation_id=conv, now=time.time())
    assert nxt is None and failure == "e1"
    [m] = [m for m in await store.history(conv) if m.id == mid]
    assert m.status == "failed" and m.error == "e1" and m.platform_message_id == "wamid.EARLY"
    # after the record: the status finds the message by its wamid
    conv2, mid2 = await _sent_message(store, "491511")
    assert await store.whatsapp_mark_sent_next(mid2, ["wamid.LATE"], conversation_id=conv2,
                                               now=time.time()) == (None, None)
    assert (await store.whatsapp_apply_status("wamid.LATE", "failed", error="e2"))["outcome"] == "failed_now"
    # a status other than failed that came first: recorded sent, as any send
    conv3, mid3 = await _sent_message(store, "491513")
    await store.whatsapp_apply_status("wamid.QUICK", "delivered")
    assert await store.whatsapp_mark_sent_next(mid3, ["wamid.QUICK"], conversation_id=conv3,
                                               now=time.time()) == (None, None)
    [m3] = [m for m in await store.history(conv3) if m.id == mid3]
    assert m3.status == "sent" and m3.platform_message_id == "wamid.QUICK"


async def test_send_record_links_the_parts_and_reads_the_next_reply(store: Store) -> None:
    r = await store.record_inbound(Inbound(channel="whatsapp", external_id="491512", platform_message_id="wamid.IN3",
                                           text="hi"))
    conv = r.conversation.id
    first, second = await store.commit_turn(conv, inbound_id=r.message.id, flow_state=None,
                                            replies=[Outbound("a long one"), Outbound("then this")])
    nxt, failure = await store.whatsapp_mark_sent_next(first.id, ["wamid.P1", "wamid.P2"], conversation_id=conv,
                                                       now=time.time())
    assert failure is None and nxt is not None and nxt.message.id == second.id
    [m] = [m for m in await store.history(conv) if m.id == first.id]
    assert m.status == "sent" and m.platform_message_id == "wamid.P2"
    # a status of the first part finds the message through its link
    res = await store.whatsapp_apply_status("wamid.P1", "failed", error="not delivered: x")
    assert res["outcome"] == "failed_now" and res["message_id"] == first.id
    # a failure of an earlier part that came first fails the whole message at its record
    await store.whatsapp_apply_status("wamid.Q1", "failed", error="part one")
    _, failure = await store.whatsapp_mark_sent_next(second.id, ["wamid.Q1", "wamid.Q2"], conversation_id=conv,
                                                     now=time.time())
    assert failure == "part one"
