"""The store contract for the WhatsApp connector's operations (bot.storage.ops_whatsapp),
on SQLite and on a real PostgreSQL (``store``)."""

from __future__ import annotations

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
    await store.mark_sent(mid, "wamid.OUT1")
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
    # before the send wrote its link: kept, and the send learns of it
    assert (await store.whatsapp_apply_status("wamid.EARLY", "failed", error="e1"))["outcome"] == "unknown"
    assert (await store.whatsapp_note_sent(["wamid.EARLY"], mid))["error"] == "e1"
    # after the link, before the send is recorded: in flight, then applied once it is sent
    conv2, mid2 = await _sent_message(store, "491511")
    assert await store.whatsapp_note_sent(["wamid.LATE"], mid2) is None
    assert (await store.whatsapp_apply_status("wamid.LATE", "failed", error="e2"))["outcome"] == "in_flight"
    await store.mark_sent(mid2, "wamid.LATE")
    assert (await store.whatsapp_apply_status("wamid.LATE", "failed", error="e2"))["outcome"] == "failed_now"
