"""A new message's turn starts from what storing it read (``InboundResult.basis``), not from a
second read of its conversation (``turn_start``), and its commit proves nothing changed in
between (issue 20): ``commit_turn(..., basis=...)`` writes only while the conversation, its
customer and its unanswered messages are as the basis says, else raises TurnStale and writes
nothing, and the runtime reads the conversation again and answers from that.

The store's side runs on both backends (``store``); the runtime's on SQLite, with the change
made between storing a message and its turn, where a real agent's or another turn's would be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError, TurnStale
from bot.model import ConversationState, Inbound, Outbound
from bot.storage import HandoffSpec, Store
from conftest import make_config, start_app, stop_app


def inbound(pid: str, text: str = "hi", ext: str = "A", **kw: Any) -> Inbound:
    return Inbound(channel="webchat", external_id=ext, platform_message_id=pid, text=text, **kw)


async def outbound(store: Store, cid: str) -> list[str]:
    return [m.text for m in await store.history(cid) if m.direction == "out"]


async def test_the_basis_of_a_new_message(store: Store) -> None:
    r = await store.record_inbound(inbound("p1", sender_name="Ann", customer_attributes={"plan": "pro"}))
    b = r.basis
    assert b is not None and b.message_id == r.message.id
    assert (b.state, b.language, b.flow_state, b.customer_id) == ("bot", "", "", r.customer.id)
    assert (b.display_name, json.loads(b.attributes)) == ("Ann", {"plan": "pro"})     # as stored
    await store.commit_turn(r.conversation.id, inbound_id=r.message.id, replies=[Outbound("a")],
                            flow_state={"flow": "faq"}, basis=b)
    await store.set_conversation_language(r.conversation.id, "de")
    r2 = await store.record_inbound(inbound("p2"))
    assert r2.basis is not None and (r2.basis.flow_state, r2.basis.language) == ('{"flow": "faq"}', "de")
    assert (await store.record_inbound(inbound("p2"))).basis is None                # a repeat
    quiet = await store.record_inbound(inbound("p3", answer=False))
    assert quiet.basis is None                                                       # never answered
    other = await store.record_inbound(inbound("q1", ext="B"))                       # a new customer
    assert other.basis is not None and other.basis.customer_id == other.customer.id


CHANGES = {
    "flow state": lambda s, cid, r: s.commit_turn(cid, inbound_id=None, replies=[], flow_state={"x": 1}),
    "state": lambda s, cid, r: s.set_conversation_state(cid, ConversationState.WITH_AGENT),
    "language": lambda s, cid, r: s.set_conversation_language(cid, "fr"),
    "customer": lambda s, cid, r: s.set_customer_profile(r.customer.id, tier="gold"),
    "answered": lambda s, cid, r: s.commit_turn(cid, inbound_id=r.message.id, replies=[], flow_state=None,
                                                keep_flow_state=True),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_turn_on_a_changed_conversation_writes_nothing(store: Store, change: str) -> None:
    r = await store.record_inbound(inbound("p1", sender_name="Ann"))
    cid = r.conversation.id
    await CHANGES[change](store, cid, r)
    before = (await store.history(cid), await store.load_turn(cid))
    with pytest.raises(TurnStale):
        await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("a"), Outbound("b")],
                                flow_state={"flow": "faq"}, basis=r.basis)
    with pytest.raises(TurnStale):       # the general form (a handoff) checks it the same way
        await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("a")], flow_state={"flow": "faq"},
                                basis=r.basis, handoff=HandoffSpec(team="support", reason="r", priority=0,
                                                                   context={}, message=lambda n: Outbound("q")))
    assert (await store.history(cid), await store.load_turn(cid)) == before
    assert await store.list_handoffs(states=["queued", "claimed"]) == []


async def test_an_older_unanswered_message_goes_first(store: Store) -> None:
    r1 = await store.record_inbound(inbound("p1"))
    r2 = await store.record_inbound(inbound("p2"))
    cid = r1.conversation.id
    assert r2.basis is not None and r2.basis.flow_state == ""
    with pytest.raises(TurnStale):
        await store.commit_turn(cid, inbound_id=r2.message.id, replies=[Outbound("b")], flow_state=None,
                                basis=r2.basis)
    await store.commit_turn(cid, inbound_id=r1.message.id, replies=[Outbound("a")], flow_state=None, basis=r1.basis)
    # now r2 is the oldest unanswered, and nothing it was computed from changed
    await store.commit_turn(cid, inbound_id=r2.message.id, replies=[Outbound("b")], flow_state=None, basis=r2.basis)
    assert await outbound(store, cid) == ["a", "b"] and await store.unprocessed_inbound(cid) == []
    with pytest.raises(StoreError, match="no conversation"):
        await store.commit_turn("conv_missing", inbound_id=None, replies=[], flow_state=None, basis=r2.basis)


# -- the runtime ---------------------------------------------------------------------------------

@pytest.fixture
async def app(tmp_path: Path):
    r = await start_app(make_config(tmp_path, "nlu: {matcher: lexical}"))
    try:
        yield r
    finally:
        await stop_app(r)


async def test_a_new_message_is_answered_without_reading_its_conversation_again(app: Any) -> None:
    s = app.services
    reads: list[str] = []
    real = s.store.turn_start

    async def turn_start(cid: str) -> Any:
        reads.append(cid)
        return await real(cid)

    s.store.turn_start = turn_start
    for n in range(3):
        await s.runtime.accept(inbound(f"p{n}", "when are you open?"))
        await s.runtime.drain()
    r = await s.store.latest_conversation("webchat", "A")
    assert len(await outbound(s.store, r.id)) == 3 and await s.store.unprocessed_inbound(r.id) == []
    assert reads == []


async def test_an_agent_taking_the_conversation_in_between_keeps_the_bot_silent(app: Any) -> None:
    s = app.services
    stored = await s.store.record_inbound(inbound("p1", "when are you open?"))
    cid = stored.conversation.id
    await s.store.set_conversation_state(cid, ConversationState.WITH_AGENT)     # between storing and the turn
    await s.runtime.process(cid, stored)
    assert await outbound(s.store, cid) == []                                   # kept for the agent
    assert await s.store.unprocessed_inbound(cid) == []


async def test_a_turn_in_between_is_seen_and_each_message_answered_once(app: Any) -> None:
    s = app.services
    first = await s.store.record_inbound(inbound("p1", "when are you open?"))
    second = await s.store.record_inbound(inbound("p2", "what is your return policy"))
    cid = first.conversation.id
    # the second's turn comes first, from what storing it read: the first is older and unanswered
    await s.runtime.process(cid, second)
    replies = await outbound(s.store, cid)
    assert len(replies) == 2 and await s.store.unprocessed_inbound(cid) == []     # both, in order
    await s.runtime.process(cid, first)                                          # answered already
    await s.runtime.process(cid, second)
    assert await outbound(s.store, cid) == replies
    assert [m.direction for m in await s.store.history(cid)] == ["in", "in", "out", "out"]
