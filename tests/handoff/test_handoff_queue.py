"""The agent desk interface (claim, reply, resolve, hand back) and the bot staying silent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.config import Config, HandoffConfig, TeamConfig
from bot.events import Event, EventBus
from bot.locks import KeyedLock
from bot.model import ConversationState, Inbound, Message, Outbound
from bot.runtime import Runtime
from bot.storage import HandoffSpec, Store, open_store
from flows import FlowEngine, load_flows
from flows.engine import ActionContext
from handoff.queue import Conflict, DeskError, HandoffQueue, NotFound

DEMO_FLOWS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS

JOINED = "Anna from Customer Care has joined the conversation."


@dataclass
class Desk:
    store: Store
    locks: KeyedLock
    events: EventBus
    queue: HandoffQueue
    inbox: asyncio.Queue[Event]
    wakes: list[int] = field(default_factory=list)

    def drain_events(self) -> list[Event]:
        out = []
        while not self.inbox.empty():
            out.append(self.inbox.get_nowait())
        return out


def reset_flow(s: Any) -> dict[str, Any]:
    return {"slots": (s or {}).get("slots", {}), "flow": None}


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    store = await open_store("sqlite:///:memory:")
    locks, events = KeyedLock(), EventBus()
    wakes: list[int] = []
    queue = HandoffQueue(store=store, locks=locks, events=events, config=Config(),
                         wake_delivery=lambda: wakes.append(1), reset_flow=reset_flow)
    try:
        yield Desk(store, locks, events, queue, events.subscribe(), wakes)
    finally:
        await store.close()


async def new_handoff(d: Desk, ext: str = "visitor-1", *, team: str = "support", priority: int = 0) -> str:
    """A customer message answered by a turn that queues the conversation (as the runtime does)."""
    r = await d.store.record_inbound(Inbound("webchat", ext, f"{ext}-m1", "I want a person", sender_name="Maria"))
    spec = HandoffSpec(team=team, reason="you asked to talk to a person", priority=priority,
                       context={"slots": {"order_number": "AB123456"}},
                       message=lambda pos: Outbound(f"You are number {pos} in the queue."))
    await d.store.commit_turn(r.conversation.id, inbound_id=r.message.id, replies=[],
                              flow_state={"flow": "complaint", "step": 3, "slots": {"order_number": "AB123456"}},
                              handoff=spec)
    h = await d.store.active_handoff(r.conversation.id)
    assert h is not None
    return h.id


async def outbound(d: Desk, conversation_id: str) -> list[Message]:
    return [m for m in await d.store.history(conversation_id) if m.direction == "out"]


async def conv_state(d: Desk, conversation_id: str) -> ConversationState:
    c = await d.store.get_conversation(conversation_id)
    assert c is not None
    return c.state


async def test_handoff_is_queued_and_listed(desk: Desk) -> None:
    hid = await new_handoff(desk)
    h = await desk.queue.get(hid)
    assert (h.state, h.team, h.agent) == ("queued", "support", None)
    assert await conv_state(desk, h.conversation_id) is ConversationState.WAITING
    assert [m.text for m in await outbound(desk, h.conversation_id)] == ["You are number 1 in the queue."]
    assert [x.id for x in await desk.queue.list()] == [hid]
    assert await desk.queue.list(team="complaints") == []
    assert await desk.queue.position(h) == 1


async def test_claim_tells_the_customer_who_joined(desk: Desk) -> None:
    hid = await new_handoff(desk)
    desk.drain_events()
    h = await desk.queue.claim(hid, "Anna Smith")
    assert (h.state, h.agent) == ("claimed", "Anna Smith")
    assert h.claimed_at is not None
    assert await conv_state(desk, h.conversation_id) is ConversationState.WITH_AGENT
    last = (await outbound(desk, h.conversation_id))[-1]
    assert (last.text, last.role, last.status) == (JOINED, "system", "pending")
    assert desk.wakes == [1]
    events = desk.drain_events()
    assert [e.kind for e in events] == ["claimed", "state"]
    assert all(e.handoff_id == hid and e.conversation_id == h.conversation_id for e in events)
    assert events[1].data == {"state": "with_agent", "position": 0, "team": "Customer Care", "agent": "Anna",
                              "channel": "webchat", "external_id": "visitor-1"}
    assert await desk.queue.position(h) == 0


async def test_claim_uses_the_configured_team_name() -> None:
    store = await open_store("sqlite:///:memory:")
    try:
        cfg = Config(handoff=HandoffConfig(teams={"support": TeamConfig(name="Customer Care"),
                                                  "complaints": TeamConfig(name="Complaints Desk")}))
        events = EventBus()
        q = HandoffQueue(store=store, locks=KeyedLock(), events=events, config=cfg,
                         wake_delivery=lambda: None, reset_flow=reset_flow)
        d = Desk(store, KeyedLock(), events, q, events.subscribe())
        hid = await new_handoff(d, team="complaints")
        h = await q.claim(hid, "Bo")
        assert (await outbound(d, h.conversation_id))[-1].text == "Bo from Complaints Desk has joined the conversation."
    finally:
        await store.close()


async def test_second_claim_is_a_conflict(desk: Desk) -> None:
    hid = await new_handoff(desk)
    await desk.queue.claim(hid, "Anna Smith")
    with pytest.raises(Conflict, match="^already claimed by Anna Smith$") as ei:
        await desk.queue.claim(hid, "Ben Jones")
    assert ei.value.status == 409
    h = await desk.queue.get(hid)
    assert h.agent == "Anna Smith"
    # the customer was told once
    assert [m.text for m in await outbound(desk, h.conversation_id)].count(JOINED) == 1


async def test_concurrent_claims_exactly_one_wins(desk: Desk) -> None:
    hid = await new_handoff(desk)
    agents = ["Anna Smith", "Ben Jones", "Cleo Park", "Dev Rao"]
    results = await asyncio.gather(*(desk.queue.claim(hid, a) for a in agents), return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 3
    winner = wins[0].agent
    assert all(isinstance(e, Conflict) and str(e) == f"already claimed by {winner}" for e in losses)
    h = await desk.queue.get(hid)
    joined = [m.text for m in await outbound(desk, h.conversation_id) if m.text.endswith("has joined the conversation.")]
    assert joined == [f"{winner.split()[0]} from Customer Care has joined the conversation."]
    assert len(desk.locks) == 0   # per-conversation locks are released


async def test_reply_requires_holding_the_claim(desk: Desk) -> None:
    hid = await new_handoff(desk)
    with pytest.raises(Conflict, match=r"claim the conversation first \(it is queued\)"):
        await desk.queue.reply(hid, "Anna Smith", "hello")
    await desk.queue.claim(hid, "Anna Smith")
    with pytest.raises(Conflict, match="^claimed by Anna Smith$"):
        await desk.queue.reply(hid, "Ben Jones", "let me help")
    with pytest.raises(DeskError, match="empty"):
        await desk.queue.reply(hid, "Anna Smith", "   \n ")
    h = await desk.queue.get(hid)
    assert [m.text for m in await outbound(desk, h.conversation_id)] == ["You are number 1 in the queue.", JOINED]


async def test_reply_is_queued_as_agent_message(desk: Desk) -> None:
    hid = await new_handoff(desk)
    h = await desk.queue.claim(hid, "Anna Smith")
    before = await desk.store.load_flow_state(h.conversation_id)
    desk.drain_events()
    desk.wakes.clear()
    msg = await desk.queue.reply(hid, "Anna Smith", "  I've issued a refund for AB123456.  ")
    assert (msg.role, msg.sender_name, msg.text, msg.direction, msg.status) == (
        "agent", "Anna", "I've issued a refund for AB123456.", "out", "pending")
    assert (await outbound(desk, h.conversation_id))[-1] == msg
    assert desk.wakes == [1]
    events = desk.drain_events()
    assert [(e.kind, e.handoff_id, e.data) for e in events] == [("message", hid, {"message_id": msg.id})]
    # a reply changes neither the conversation state nor the flow state
    assert await conv_state(desk, h.conversation_id) is ConversationState.WITH_AGENT
    assert await desk.store.load_flow_state(h.conversation_id) == before


async def test_resolve_closes_the_conversation(desk: Desk) -> None:
    hid = await new_handoff(desk)
    h = await desk.queue.claim(hid, "Anna Smith")
    with pytest.raises(Conflict, match="claimed by Anna Smith; only they can resolve it"):
        await desk.queue.resolve(hid, "Ben Jones")
    desk.drain_events()
    r = await desk.queue.resolve(hid, "Anna Smith")
    assert r.state == "resolved" and r.closed_at is not None
    assert await conv_state(desk, h.conversation_id) is ConversationState.CLOSED
    last = (await outbound(desk, h.conversation_id))[-1]
    assert last.role == "system"
    assert last.text == "Anna marked your request as resolved. If there's anything else, just write here."
    events = desk.drain_events()
    assert [e.kind for e in events] == ["resolved", "state"]
    assert events[1].data["state"] == "closed"
    assert await desk.queue.list() == []
    # nothing more can be done with it
    with pytest.raises(Conflict):
        await desk.queue.reply(hid, "Anna Smith", "one more thing")
    with pytest.raises(Conflict, match="cannot claim a handoff that is resolved"):
        await desk.queue.claim(hid, "Ben Jones")
    with pytest.raises(Conflict):
        await desk.queue.resolve(hid, "Anna Smith")
    # the customer's next message starts a new conversation
    nxt = await desk.store.record_inbound(Inbound("webchat", "visitor-1", "m2", "thanks!"))
    assert nxt.conversation.id != h.conversation_id
    assert nxt.conversation.state is ConversationState.BOT


async def test_resolve_without_claim(desk: Desk) -> None:
    hid = await new_handoff(desk)
    r = await desk.queue.resolve(hid, "Ben Jones")
    assert r.state == "resolved"
    assert await conv_state(desk, r.conversation_id) is ConversationState.CLOSED


async def test_hand_back_returns_to_bot_keeps_slots_ends_flow(desk: Desk) -> None:
    hid = await new_handoff(desk)
    h = await desk.queue.claim(hid, "Anna Smith")
    with pytest.raises(Conflict, match="only they can hand it back"):
        await desk.queue.hand_back(hid, "Ben Jones")
    desk.drain_events()
    r = await desk.queue.hand_back(hid, "Anna Smith")
    assert r.state == "returned" and r.closed_at is not None
    assert await conv_state(desk, h.conversation_id) is ConversationState.BOT
    assert await desk.store.load_flow_state(h.conversation_id) == {"slots": {"order_number": "AB123456"},
                                                                   "flow": None}
    last = (await outbound(desk, h.conversation_id))[-1]
    assert (last.role, last.text) == ("system",
                                      "You're back with our assistant. Is there anything else I can help with?")
    events = desk.drain_events()
    assert [e.kind for e in events] == ["returned", "state"]
    assert events[1].data["state"] == "bot"
    assert await desk.store.active_handoff(h.conversation_id) is None


async def test_hand_back_while_queued_cancels(desk: Desk) -> None:
    hid = await new_handoff(desk)
    r = await desk.queue.hand_back(hid, "Anna Smith")
    assert r.state == "returned" and r.agent is None
    assert await conv_state(desk, r.conversation_id) is ConversationState.BOT


async def test_unknown_handoff_is_not_found(desk: Desk) -> None:
    for call in (desk.queue.get("ho_nope"), desk.queue.claim("ho_nope", "A"),
                 desk.queue.reply("ho_nope", "A", "x"), desk.queue.resolve("ho_nope", "A"),
                 desk.queue.hand_back("ho_nope", "A")):
        with pytest.raises(NotFound) as ei:
            await call
        assert ei.value.status == 404


async def test_list_orders_by_priority_then_age(desk: Desk) -> None:
    a = await new_handoff(desk, "A")
    b = await new_handoff(desk, "B", priority=1)
    c = await new_handoff(desk, "C")
    assert [h.id for h in await desk.queue.list()] == [b, a, c]
    assert [await desk.queue.position(await desk.queue.get(x)) for x in (a, b, c)] == [2, 1, 3]
    await desk.queue.claim(b, "Anna")
    # claimed handoffs stay listed (the desk shows them) but leave the queue
    assert [h.id for h in await desk.queue.list()] == [b, a, c]
    assert [await desk.queue.position(await desk.queue.get(x)) for x in (a, c)] == [1, 2]


async def test_waiting_seconds(desk: Desk) -> None:
    hid = await new_handoff(desk)
    h = await desk.queue.get(hid)
    assert desk.queue.waiting_seconds(h, now=h.created_at + timedelta(seconds=75)) == 75
    assert desk.queue.waiting_seconds(h, now=h.created_at - timedelta(seconds=5)) == 0
    claimed = await desk.queue.claim(hid, "Anna")
    assert desk.queue.waiting_seconds(claimed, now=claimed.created_at + timedelta(hours=1)) == int(
        (claimed.claimed_at - claimed.created_at).total_seconds())  # type: ignore[operator]


# -- with the runtime and the demo flows ----------------------------------------


@dataclass
class Bot:
    store: Store
    runtime: Runtime
    queue: HandoffQueue
    events: EventBus


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    store = await open_store("sqlite:///:memory:")
    config = Config(handoff=HandoffConfig(teams={"support": TeamConfig(name="Customer Care"),
                                                 "complaints": TeamConfig(name="Complaints")}))

    async def create_reference(ctx: ActionContext) -> str:
        return f"C-{await store.next_sequence('reference', start=1001)}"

    engine = FlowEngine(load_flows(DEMO_FLOWS, teams=["support", "complaints"]),
                        actions={"create_reference": create_reference})
    locks, events = KeyedLock(), EventBus()
    runtime = Runtime(store=store, engine=engine, config=config, locks=locks, events=events)
    queue = HandoffQueue(store=store, locks=locks, events=events, config=config, wake_delivery=lambda: None,
                         reset_flow=engine.reset_after_handoff)
    try:
        yield Bot(store, runtime, queue, events)
    finally:
        await runtime.stop()
        await store.close()


async def say(bot: Bot, pid: str, text: str) -> Message:
    res = await bot.runtime.accept(Inbound("webchat", "visitor-9", pid, text, sender_name="Maria Lopez"))
    await bot.runtime.drain()
    return res.message


async def test_bot_is_silent_while_waiting_and_the_message_is_kept(bot: Bot) -> None:
    first = await say(bot, "m1", "I want to talk to a person")
    cid = first.conversation_id
    conv = await bot.store.get_conversation(cid)
    assert conv is not None and conv.state is ConversationState.WAITING
    h = await bot.store.active_handoff(cid)
    assert h is not None and (h.team, h.state) == ("support", "queued")
    outs = [m for m in await bot.store.history(cid) if m.direction == "out"]
    assert len(outs) == 1
    assert outs[0].text.startswith("I'm passing you to our Customer Care team because you asked to talk to a "
                                   "person. You are number 1 in the queue.")

    inbox = bot.events.subscribe()
    msg = await say(bot, "m2", "hello? is anyone there?")
    assert msg.conversation_id == cid
    hist = await bot.store.history(cid)
    assert [m.direction for m in hist] == ["in", "out", "in"]          # no bot reply
    assert hist[-1].text == "hello? is anyone there?"
    assert hist[-1].status == "processed"
    assert await bot.store.unprocessed_inbound(cid) == []
    events = []
    while not inbox.empty():
        events.append(inbox.get_nowait())
    assert [(e.kind, e.conversation_id, e.handoff_id, e.data) for e in events] == [
        ("message", cid, h.id, {"message_id": msg.id})]

    # the same while an agent has it
    await bot.queue.claim(h.id, "Anna Smith")
    await say(bot, "m3", "hi Anna")
    hist = await bot.store.history(cid)
    assert [(m.direction, m.role) for m in hist[-2:]] == [("out", "system"), ("in", "customer")]
    assert hist[-1].status == "processed"


async def test_bot_answers_again_after_hand_back(bot: Bot) -> None:
    first = await say(bot, "m1", "agent")
    cid = first.conversation_id
    h = await bot.store.active_handoff(cid)
    assert h is not None
    await bot.queue.claim(h.id, "Anna Smith")
    await bot.queue.hand_back(h.id, "Anna Smith")
    state = await bot.store.load_flow_state(cid)
    assert state is not None and state.get("flow") is None
    n = len(await bot.store.history(cid))
    await say(bot, "m2", "when are you open?")
    new = (await bot.store.history(cid))[n:]
    assert [(m.direction, m.role) for m in new] == [("in", "customer"), ("out", "bot")]
    assert new[1].text.startswith("Our customer service is open Monday to Friday")


async def test_duplicate_inbound_is_not_answered_twice(bot: Bot) -> None:
    a = await say(bot, "m1", "when are you open?")
    b = await say(bot, "m1", "when are you open?")
    assert a.id == b.id
    hist = await bot.store.history(a.conversation_id)
    assert [m.direction for m in hist] == ["in", "out"]


# -- reopen: a past conversation back in its last team's queue, the customer told nothing --
async def test_a_resolved_conversation_is_queued_again_silently(desk: Desk) -> None:
    hid = await new_handoff(desk, priority=2)
    h = await desk.queue.claim(hid, "Anna Smith")
    await desk.queue.resolve(hid, "Anna Smith")
    cid = h.conversation_id
    assert (await desk.store.get_conversation(cid)).state is ConversationState.CLOSED  # type: ignore[union-attr]
    told = len(await outbound(desk, cid))
    desk.drain_events()

    new = await desk.queue.reopen(cid, "Bob Jones", note="  refund bounced ")
    assert (new.state, new.team, new.priority) == ("queued", "support", 2)
    assert new.reason == "reopened by Bob Jones: refund bounced"
    assert new.context["slots"] == {"order_number": "AB123456"}          # the card keeps what was known
    assert (new.context["reopened_by"], new.context["reopened_from"]) == ("Bob Jones", hid)
    assert (await desk.store.get_conversation(cid)).state is ConversationState.WAITING  # type: ignore[union-attr]
    assert len(await outbound(desk, cid)) == told                        # nothing to the customer
    assert [(e.kind, e.handoff_id) for e in desk.drain_events()] == [("queued", new.id)]
    with pytest.raises(Conflict, match="in the queue already"):
        await desk.queue.reopen(cid, "Bob Jones")
    await desk.queue.claim(new.id, "Anna Smith")
    with pytest.raises(Conflict, match="Anna Smith has it now"):
        await desk.queue.reopen(cid, "Bob Jones")


async def test_not_when_the_customer_has_a_newer_conversation(desk: Desk) -> None:
    hid = await new_handoff(desk)
    h = await desk.queue.claim(hid, "Anna Smith")
    await desk.queue.resolve(hid, "Anna Smith")
    r = await desk.store.record_inbound(Inbound("webchat", "visitor-1", "visitor-1-m2", "hello again"))
    assert r.conversation.id != h.conversation_id
    with pytest.raises(Conflict, match=f"newer conversation \\({r.conversation.id}\\)"):
        await desk.queue.reopen(h.conversation_id, "Bob Jones")
    with pytest.raises(NotFound):
        await desk.queue.reopen("conv_nope", "Bob Jones")
