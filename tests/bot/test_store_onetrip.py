"""The hot operations' one-statement forms on PostgreSQL (bot/storage/ops_pg.py, issue 20).

On both backends (``store``): a plain turn, an inbound message into an open conversation and a
reply's sent mark read and write what the several statements they replace did (SQLite still runs
those), including the refusals (no conversation, another instance's claim), which write nothing.
On PostgreSQL: how many round trips each takes, counted on the connection.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.errors import ClaimLost, StoreError
from bot.model import Attachment, Button, ConversationState, Inbound, Outbound
from bot.storage import Store


def inbound(pid: str, text: str = "hi", ext: str = "A", **kw: Any) -> Inbound:
    return Inbound(channel="webchat", external_id=ext, platform_message_id=pid, text=text, **kw)


async def test_a_plain_turn_queues_its_replies_in_order_and_marks_the_message(store: Store) -> None:
    r = await store.record_inbound(inbound("p1", sender_name="Ann"))
    cid = r.conversation.id
    replies = [Outbound("one", buttons=(Button("Yes", "/yes"), Button("No", "/no"))),
               Outbound("two", attachments=(Attachment(kind="image", url="https://x.test/a.png", name="a.png"),)),
               Outbound("three", role="system", outcome="answered")]
    before = time.time()
    queued = await store.commit_turn(cid, inbound_id=r.message.id, replies=replies, flow_state={"flow": "faq"})
    assert [m.text for m in queued] == ["one", "two", "three"]
    assert [m.id for m in queued] == sorted(m.id for m in queued)          # the outbox's order
    assert queued == [m for m in await store.history(cid) if m.direction == "out"]
    assert [(m.role, m.status, m.buttons, m.attachments) for m in queued] == [
        ("bot", "pending", replies[0].buttons, ()), ("bot", "pending", (), replies[1].attachments),
        ("system", "pending", (), ())]
    assert await store.unprocessed_inbound(cid) == []
    assert await store.load_flow_state(cid) == {"flow": "faq"}
    due = await store.due_outbox(time.time() + 1, conversation_id=cid)
    assert [(i.message.id, i.channel, i.external_id) for i in due] == [(queued[0].id, "webchat", "A")]
    assert await store.due_outbox(before - 60) == []                     # due from the turn's time on
    assert [i.message.id for i in await store.outbox_turn(queued[0].id)] == [m.id for m in queued]
    conv = await store.get_conversation(cid)
    assert conv is not None and conv.updated_at >= r.conversation.updated_at

    # no replies, the flow state kept, a state set: the same as before too
    r2 = await store.record_inbound(inbound("p2"))
    assert await store.commit_turn(cid, inbound_id=r2.message.id, replies=[], flow_state=None,
                                   keep_flow_state=True, state=ConversationState.WITH_AGENT) == []
    assert await store.load_flow_state(cid) == {"flow": "faq"}
    conv = await store.get_conversation(cid)
    assert conv is not None and conv.state is ConversationState.WITH_AGENT
    assert await store.unprocessed_inbound(cid) == []


async def test_a_plain_turn_that_is_refused_writes_nothing(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    with pytest.raises(StoreError, match="no conversation"):
        await store.commit_turn("conv_missing", inbound_id=r.message.id, replies=[Outbound("x")], flow_state={"a": 1})
    await store.register_instance("a", host="h", pid=1, now=time.time())
    assert await store.claim_conversation(cid, "a", now=time.time(), ttl=5)
    with pytest.raises(ClaimLost):
        await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("x"), Outbound("y")],
                                flow_state={"a": 1}, owner="b")
    assert [m.id for m in await store.unprocessed_inbound(cid)] == [r.message.id]
    assert [m for m in await store.history(cid) if m.direction == "out"] == []
    assert await store.load_flow_state(cid) is None
    # the owner itself writes
    assert len(await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("x")], flow_state=None,
                                       owner="a")) == 1


async def test_an_inbound_message_into_an_open_conversation(store: Store) -> None:
    first = await store.record_inbound(inbound("p1", sender_name="Ann"))
    cid = first.conversation.id
    await store.set_conversation_language(cid, "de")
    second = await store.record_inbound(inbound("p2", "again", attachments=(
        Attachment(kind="file", url="https://x.test/f.pdf", name="f.pdf"),), payload="/yes"))
    assert not second.duplicate and second.customer == first.customer
    assert second.conversation == await store.get_conversation(cid)      # as stored, language too
    assert second.conversation.language == "de" and second.conversation.updated_at >= first.conversation.updated_at
    assert second.message == (await store.history(cid))[-1]
    assert (second.message.text, second.message.payload, second.message.status) == ("again", "/yes", "received")
    assert second.message.attachments[0].name == "f.pdf"
    # not to be answered: stored processed
    quiet = await store.record_inbound(Inbound(channel="webchat", external_id="A", platform_message_id="p3",
                                               text="auto", answer=False))
    assert quiet.message.status == "processed" and quiet.conversation.id == cid
    # a repeat is still a repeat, and a closed conversation gives way to a new one
    assert (await store.record_inbound(inbound("p2", "again"))).duplicate
    await store.set_conversation_state(cid, ConversationState.CLOSED)
    third = await store.record_inbound(inbound("p4", "new"))
    assert third.conversation.id != cid and third.conversation.state is ConversationState.BOT
    assert [m.text for m in await store.history(third.conversation.id)] == ["new"]


async def test_an_inbound_message_brings_its_customer_up_to_date(store: Store) -> None:
    """A name where there was none and new attributes are written with the message (on
    PostgreSQL after it, in the same transaction); what is there already is left alone."""
    first = await store.record_inbound(inbound("p1", customer_attributes={"language_code": "de"}))
    assert (first.customer.display_name, first.customer.attributes) == ("", {"language_code": "de"})
    second = await store.record_inbound(inbound("p2", sender_name="Ann", customer_attributes={"plan": "pro"}))
    assert second.conversation.id == first.conversation.id
    assert (second.customer.id, second.customer.display_name, second.customer.attributes) == (
        first.customer.id, "Ann", {"language_code": "de", "plan": "pro"})
    assert second.customer == await store.get_customer(first.customer.id)
    third = await store.record_inbound(inbound("p3", sender_name="Bob", customer_attributes={"plan": "pro"}))
    assert third.customer == second.customer                       # a name is not overwritten
    assert [m.text for m in await store.unprocessed_inbound(first.conversation.id)] == ["hi", "hi", "hi"]
    # a repeat changes nothing and says so
    again = await store.record_inbound(inbound("p2", sender_name="Eve", customer_attributes={"plan": "free"}))
    assert again.duplicate and again.message == second.message and again.customer == second.customer
    assert len(await store.history(first.conversation.id)) == 3
    # another address: another customer, another conversation
    other = await store.record_inbound(inbound("q1", ext="B", sender_name="Cy"))
    assert other.customer.id != first.customer.id and other.conversation.id != first.conversation.id
    assert (other.customer.display_name, other.message.conversation_id) == ("Cy", other.conversation.id)


async def test_mark_sent_next_when_the_marked_one_was_not_the_head(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    m1, m2 = await store.commit_turn(cid, inbound_id=None, flow_state=None, replies=[Outbound("1"), Outbound("2")])
    now = time.time() + 1
    # a late record of m2's send (m1 still pending): m1 is next, m2 is sent
    nxt = await store.mark_sent_next(m2.id, "pm-2", conversation_id=cid, now=now)
    assert nxt is not None and nxt.message.id == m1.id
    assert await store.mark_sent_next(m1.id, "pm-1", conversation_id=cid, now=now) is None
    assert [(m.status, m.platform_message_id) for m in await store.history(cid) if m.direction == "out"] == [
        ("sent", "pm-1"), ("sent", "pm-2")]


# -- round trips on PostgreSQL (fixtures `pg`, `trips`: tests/conftest.py) ---------------------

async def test_round_trips_of_a_message_on_postgresql(pg: Store, trips: list[str]) -> None:
    first = await pg.record_inbound(inbound("p1"))
    cid = first.conversation.id
    trips.clear()
    r = await pg.record_inbound(inbound("p2"))
    # BEGIN + lock; the repeat check, the customer, the conversation and the message; COMMIT
    assert len(trips) == 3, trips
    trips.clear()
    m1, _ = await pg.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("a"), Outbound("b")],
                                 flow_state={"n": 1})
    assert len(trips) == 3, trips                          # BEGIN + lock, the turn, COMMIT
    trips.clear()
    nxt = await pg.mark_sent_next(m1.id, "pm-1", conversation_id=cid, now=time.time() + 1)
    assert nxt is not None and len(trips) == 1, trips
