"""The review and communicate SLA clocks (handoff.sla), driven by a hand-moved clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.config import ComplaintsConfig
from bot.events import EventBus
from bot.model import Inbound
from bot.storage import Store
from conftest import FakeClock
from flows.engine import ActionContext
from handoff.sla import SlaWatch
from handoff.tickets import Tickets

CFG = ComplaintsConfig.model_validate({"sla": {"acknowledge": "2h", "resolve": "48h", "review": "4h",
                                               "communicate": "2h", "warn_at": 0.75}})


async def _ticket(store: Store, clock: FakeClock) -> str:
    r = await store.record_inbound(Inbound("webchat", "ada", "m1", "my parcel never came"))
    t = await Tickets(store, CFG, clock=clock).open(
        ActionContext(r.conversation.id, "webchat", {"id": r.customer.id}, {"category": "shipping"}))
    return t.reference


async def test_review_clock_runs_from_the_proposal_until_a_decision(memory_store: Store) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
    ref = await _ticket(memory_store, clock)
    watch = SlaWatch(store=memory_store, events=EventBus(), cfg=CFG, clock=clock)
    clock.now += timedelta(hours=1)
    await memory_store.propose_review(ref, result="refund", by="Anna", at=clock.now)
    clock.now += timedelta(hours=2, minutes=59)
    assert await watch.check() == []                                   # < 75% of 4 h
    clock.now += timedelta(minutes=2)
    [near] = await watch.check()
    assert (near.step, near.level) == ("review", "near")
    assert near.text(clock.now) == f"SLA warning: complaint {ref} (normal) is due to be reviewed by a supervisor in 59 min."
    clock.now += timedelta(hours=1, minutes=1)
    [late] = await watch.check()
    assert (late.step, late.level) == ("review", "breached") and late.due == datetime(2026, 12, 1, 14, 0,
                                                                                       tzinfo=timezone.utc)
    assert await watch.check() == []                                    # once


async def test_communicate_clock_runs_from_the_approval_until_told(memory_store: Store) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
    ref = await _ticket(memory_store, clock)
    watch = SlaWatch(store=memory_store, events=EventBus(), cfg=CFG, clock=clock)
    await memory_store.propose_review(ref, result="refund", by="Anna", at=clock.now)
    clock.now += timedelta(hours=1)
    await memory_store.decide_review(ref, approve=True, by="Sue", at=clock.now)   # in time: no review alert
    clock.now += timedelta(hours=1, minutes=31)
    [near] = await watch.check()
    assert (near.step, near.level) == ("communicate", "near")
    clock.now += timedelta(hours=1)
    [late] = await watch.check()
    assert (late.step, late.level) == ("communicate", "breached")
    assert "to be told to the customer after its approval" in late.text(clock.now)


async def test_told_in_time_raises_nothing(memory_store: Store) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
    ref = await _ticket(memory_store, clock)
    watch = SlaWatch(store=memory_store, events=EventBus(), cfg=CFG, clock=clock)
    await memory_store.propose_review(ref, result="refund", by="Anna", at=clock.now)
    clock.now += timedelta(hours=3)
    await memory_store.decide_review(ref, approve=True, by="Sue", at=clock.now)
    clock.now += timedelta(minutes=10)
    assert await memory_store.mark_communicated(ref, at=clock.now)
    clock.now += timedelta(hours=10)
    assert await watch.check() == []
