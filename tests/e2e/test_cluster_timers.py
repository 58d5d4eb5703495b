"""Timers fire once in the cluster: two instances on one PostgreSQL watch the same clocks.

Both instances check due follow-ups and SLA clocks at the same moment (as their periodic jobs
do); the customer is asked once and each SLA alert is raised once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator

import pytest

from bot.config import Config
from bot.events import Event
from conftest import FakeClock, Running, make_config, start_app, stop_app
from e2e.chat import ChatClient
from e2e.test_followup_e2e import T0, _resolved_complaint, _use_clock
from e2e.test_tickets_e2e import _file_complaint


def cluster_config(tmp_path: Path, pg_url: str) -> Config:
    config = make_config(tmp_path)
    return config.model_copy(update={"storage": config.storage.model_copy(update={"url": pg_url})})


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Running, Running]]:
    config = cluster_config(tmp_path, pg_url)
    a = await start_app(config)
    b = await start_app(config)
    try:
        assert a.services.cluster.enabled and b.services.cluster.id != a.services.cluster.id
        yield a, b
    finally:
        await stop_app(b)
        await stop_app(a)


async def test_a_follow_up_is_asked_once_by_two_instances(pair: tuple[Running, Running]) -> None:
    a, b = pair
    clock = FakeClock(T0)
    _use_clock(a, clock)
    _use_clock(b, clock)
    c = ChatClient(a.http, a.ws_url)
    await c.connect()
    try:
        ref = await _resolved_complaint(a, c)
        clock.now = T0 + timedelta(days=3, hours=1)
        fa, fb = a.services.followups, b.services.followups
        assert fa is not None and fb is not None
        for _ in range(3):   # both look at the same moment, again and again
            await asyncio.gather(fa.run_due(), fb.run_due())
        assert fa.asked + fb.asked == 1
        [m] = await c.replies_until(lambda m: "Has the problem stayed solved?" in m["text"])
        assert ref in m["text"]
        await asyncio.sleep(0.3)
        store = a.services.store
        ticket = await store.get_ticket(ref)
        assert ticket is not None
        conv = await store.latest_customer_conversation(ticket.customer_id)
        assert conv is not None
        history = await store.history(conv.id)
        assert len([x for x in history if "Has the problem stayed solved?" in x.text]) == 1
    finally:
        await c.close()


async def test_each_sla_alert_is_raised_once_by_two_instances(pair: tuple[Running, Running]) -> None:
    a, b = pair
    clock = FakeClock(T0)
    _use_clock(a, clock)
    _use_clock(b, clock)
    c = ChatClient(a.http, a.ws_url)
    await c.connect()
    qa, qb = a.services.events.subscribe(), b.services.events.subscribe()
    try:
        ref = await _file_complaint(c, "shipping", "AB123456", "The parcel never came.")
        sa, sb = a.services.sla, b.services.sla
        assert sa is not None and sb is not None
        sa.clock = sb.clock = clock
        clock.now = T0 + timedelta(days=2)         # past every limit of the complaint
        raised = []
        for _ in range(3):
            got = await asyncio.gather(sa.check(), sb.check())
            raised += [x for alerts in got for x in alerts]
        kinds = sorted(f"{x.step}:{x.level}" for x in raised)
        assert kinds == sorted(set(kinds)) and kinds, kinds      # each alert once, across both
        await asyncio.sleep(0.5)                                  # remote copies arrive meanwhile

        def local(q: asyncio.Queue[Event]) -> list[str]:
            out = []
            while not q.empty():
                ev = q.get_nowait()
                if ev.kind == "sla" and not ev.remote and ev.data["reference"] == ref:
                    out.append(f"{ev.data['step']}:{ev.data['level']}")
            return out
        assert sorted(local(qa) + local(qb)) == kinds
    finally:
        await c.close()
