"""SLA clocks: warned near the limit, alerted past it, each once, across restarts (clock injected);
one rule for deadlines and breaches, shared by the alerts, the customer, the report and /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot import report as rep
from bot.config import ComplaintsConfig
from bot.events import EventBus
from bot.metrics import Live, MetricsWeb
from bot.model import Inbound
from bot.storage import Store, open_store
from conftest import FakeClock, make_config
from flows.engine import ActionContext
from handoff.sla import SlaAlert, SlaWatch
from handoff.tickets import Tickets

CFG = ComplaintsConfig.model_validate({"sla": {"acknowledge": "2h", "resolve": "24h", "warn_at": 0.75}})


async def _setup(store: Store, *, handoff: bool) -> tuple[FakeClock, str, list[tuple[SlaAlert, datetime]], EventBus,
                                                          SlaWatch]:
    now = datetime.now(timezone.utc).replace(microsecond=0)   # handoffs are stamped with the real time
    clock = FakeClock(now)
    r = await store.record_inbound(Inbound("webchat", "ada", "m1", "my parcel never came"))
    t = await Tickets(store, CFG, clock=clock).open(
        ActionContext(r.conversation.id, "webchat", {"id": r.customer.id}, {"category": "shipping"}))
    if handoff:
        await store.create_handoff(r.conversation.id, team="complaints", reason="complaint")
    sent: list[tuple[SlaAlert, datetime]] = []

    async def notify(alert: SlaAlert, at: datetime) -> None:
        sent.append((alert, at))

    events = EventBus()
    return clock, t.reference, sent, events, SlaWatch(store=store, events=events, cfg=CFG, clock=clock,
                                                      notify=[notify])


async def test_resolve_clock_warns_then_breaches_once_each(memory_store: Store) -> None:
    clock, ref, sent, events, watch = await _setup(memory_store, handoff=False)
    inbox = events.subscribe()
    start = clock.now
    clock.now = start + timedelta(hours=17)
    assert await watch.check() == []                                   # < 75% of 24 h
    clock.now = start + timedelta(hours=18, minutes=30)
    [near] = await watch.check()
    assert (near.reference, near.step, near.level) == (ref, "resolve", "near")
    assert near.text(clock.now) == f"SLA warning: complaint {ref} (normal) is due to be resolved in 5 h 30 min."
    assert await watch.check() == []                                   # once
    clock.now = start + timedelta(hours=25)
    [late] = await watch.check()
    assert late.level == "breached" and late.text(clock.now).endswith("was due to be resolved 1 h 0 min ago.")
    assert [a.level for a, _ in sent] == ["near", "breached"]
    ev = inbox.get_nowait()
    assert ev.kind == "sla" and ev.data["reference"] == ref and ev.data["level"] == "near"

    # a restart: a new watch on the same database raises nothing again
    again = SlaWatch(store=memory_store, events=EventBus(), cfg=CFG, clock=clock)
    assert await again.check() == []


async def test_acknowledge_clock_runs_while_queued_and_breach_skips_the_warning(memory_store: Store) -> None:
    clock, ref, sent, _, watch = await _setup(memory_store, handoff=True)
    clock.now += timedelta(hours=3)                                     # past 2 h at once
    [ack] = await watch.check()
    assert (ack.step, ack.level, ack.handoff_id is not None) == ("acknowledge", "breached", True)
    clock.now += timedelta(minutes=1)
    assert await watch.check() == []                                    # no late "near" after the breach
    t = await memory_store.get_ticket(ref)
    assert t is not None and set(t.sla_alerts) == {"acknowledge:near", "acknowledge:breached"}


async def test_resolved_and_claimed_complaints_raise_nothing(memory_store: Store) -> None:
    clock, ref, sent, _, watch = await _setup(memory_store, handoff=True)
    h = await memory_store.active_handoff((await memory_store.get_ticket(ref)).conversation_id)  # type: ignore[union-attr]
    assert h is not None
    assert await memory_store.transition_handoff(h.id, expected="queued", new="claimed", agent="Anna Smith")
    await memory_store.resolve_ticket(ref, at=clock.now, agent="Anna Smith", result=None)
    clock.now += timedelta(days=3)
    assert await watch.check() == [] and sent == []


# -- one rule: report, /metrics, alerts and the customer's "resolve by" agree ---------------------

BERLIN = ZoneInfo("Europe/Berlin")
FRIDAY_1630 = datetime(2026, 11, 27, 16, 30, tzinfo=BERLIN)
MONDAY = datetime(2026, 11, 30, tzinfo=BERLIN)
BUSINESS_4H = """
complaints:
  sla: {acknowledge: 2h, resolve: 4h, warn_at: 0.75}
  business_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00", timezone: Europe/Berlin}
"""


@pytest.mark.parametrize(("resolved", "late"), [
    # 30 min on Friday + 1 h on Monday: in time (65.5 h on the wall clock)
    (MONDAY.replace(hour=10), False),
    # the deadline itself (30 min Friday + 3.5 h Monday): still in time
    (MONDAY.replace(hour=12, minute=30), False),
    # the reverse: half an hour past the business-hours deadline, a breach for everyone
    (MONDAY.replace(hour=13), True),
])
async def test_report_metrics_alerts_and_customer_deadline_agree_in_business_hours(
        tmp_path: Path, resolved: datetime, late: bool) -> None:
    config = make_config(tmp_path, BUSINESS_4H)
    cfg = config.complaints
    store = await open_store(config.storage_url())
    try:
        clock = FakeClock(FRIDAY_1630.astimezone(timezone.utc))
        r = await store.record_inbound(Inbound("webchat", "ada", "m1", "my parcel never came"))
        tickets = Tickets(store, cfg, clock=clock)
        t = await tickets.open(ActionContext(r.conversation.id, "webchat", {"id": r.customer.id},
                                             {"category": "shipping"}))
        assert tickets.due(t) == MONDAY.replace(hour=12, minute=30)          # what the customer is told
        sent: list[tuple[SlaAlert, datetime]] = []

        async def notify(alert: SlaAlert, at: datetime) -> None:
            sent.append((alert, at))

        watch = SlaWatch(store=store, events=EventBus(), cfg=cfg, clock=clock, notify=[notify])
        while clock.now < resolved:                   # the team's clock, every 30 min until resolved
            clock.now = min(clock.now + timedelta(minutes=30), resolved)
            await watch.check()
        await tickets.resolve(r.conversation.id, agent="Anna Smith", result="refunded")
    finally:
        await store.close()
    alerted = [a.level for a, _ in sent if a.step == "resolve"]
    assert ("breached" in alerted) is late
    assert ("near" in alerted) is (resolved >= MONDAY.replace(hour=11, minute=30))   # 3 h of the 4 h run
    done = await _ticket(config.storage_url(), t.reference)
    assert done.resolved_at == resolved and tickets.overdue(done, resolved + timedelta(days=9)) is late
    reader = await rep.open_store_for_report(config.storage_url())
    try:
        figures = await rep.report(reader, complaints=cfg, now=resolved + timedelta(days=9))
    finally:
        await reader.close()
    assert (figures["tickets"], figures["sla_breaches"]) == (1, int(late))
    web = await MetricsWeb(config=config, live=Live(), is_agent=None).figures(
        since=datetime(2026, 11, 1, tzinfo=BERLIN))
    assert web["groups"]["shipping"]["sla_breaches"] == int(late)   # the omnibot_sla_breaches gauge


async def _ticket(url: str, reference: str):  # type: ignore[no-untyped-def]
    store = await open_store(url)
    try:
        t = await store.get_ticket(reference)
    finally:
        await store.close()
    assert t is not None
    return t
