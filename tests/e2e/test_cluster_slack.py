"""The Slack desk with two instances on one PostgreSQL database: one card per handoff, one
mirrored message, one relayed agent reply, whichever instance does what."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from bot.events import Event
from cluster import on_pg
from conftest import Running, start_app, stop_app, until
from e2e.slack_config import slack_config
from e2e.test_slack_desk import card_posts, click, complaint_to_slack, fake, thread_message  # noqa: F401
from fakes.slack_api import FakeSlack


@pytest.fixture
async def pair(tmp_path: Path, fake: FakeSlack, pg_url: str) -> AsyncIterator[tuple[Running, Running]]:  # noqa: F811
    config = on_pg(slack_config(tmp_path, fake), pg_url)
    a = await start_app(config)
    b = await start_app(config)
    try:
        yield a, b
    finally:
        await stop_app(a)
        await stop_app(b)


def thread_posts(fake: FakeSlack, ts: str, text: str) -> list:  # noqa: F811
    return [c for c in fake.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == ts and text in (c.args.get("text") or "")]


async def test_one_card_one_mirror_one_reply_across_instances(pair: tuple[Running, Running],
                                                              fake: FakeSlack) -> None:  # noqa: F811
    a, b = pair
    await until(lambda: [a.services.slack.sweeper, b.services.slack.sweeper].count(True) == 1, 5,
                "one instance sweeping")
    c, hid, ts = await complaint_to_slack(a, fake)          # the handoff is created through A
    try:
        await asyncio.sleep(1.5)                              # several sweeps on both instances
        assert len([x for x in fake.calls_to("chat.postMessage") if card_posts(fake, "CCOMP")(x)]) == 1

        ack = await c.send("Also the cable is frayed")
        assert ack["type"] == "ack"
        await until(lambda: thread_posts(fake, ts, "cable is frayed"), 5, "the mirrored message")
        await asyncio.sleep(1.0)
        assert len(thread_posts(fake, ts, "cable is frayed")) == 1

        # Slack sends the agent's click and reply to one instance only: B
        assert await click(b, "omnibot_claim", hid, "UANNA", ts) == 200
        await until(lambda: _claimed(b, hid), 5, "the claim")
        assert await thread_message(b, "Sorry about that, a new lamp is on its way", "UANNA", ts,
                                    event_id="Ev-cluster-1") == 200
        await until(lambda: [m for m in c.messages.values() if "new lamp is on its way" in m["text"]], 5,
                    "the agent's reply at the customer")
        await asyncio.sleep(1.5)
        assert len([m for m in c.messages.values() if "new lamp is on its way" in m["text"]]) == 1
        # not mirrored back into the thread as if written on another desk
        assert thread_posts(fake, ts, "new lamp") == []
        assert len([x for x in fake.calls_to("chat.postMessage") if card_posts(fake, "CCOMP")(x)]) == 1
    finally:
        await c.close()


async def _claimed(r: Running, hid: str) -> bool:
    h = await r.services.store.get_handoff(hid)
    return h is not None and h.state == "claimed"


async def test_resync_sweeps_and_the_periodic_sweep_runs_on_one_instance(
        pair: tuple[Running, Running], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    await until(lambda: [a.services.slack.sweeper, b.services.slack.sweeper].count(True) == 1, 5,
                "one instance sweeping")
    idle = a if not a.services.slack.sweeper else b
    sweeps: list[int] = []
    real = idle.services.slack.sync.sweep

    async def counted() -> None:
        sweeps.append(1)
        await real()

    monkeypatch.setattr(idle.services.slack.sync, "sweep", counted)
    await asyncio.sleep(1.0)                     # ~3 sync intervals: the sweeper sweeps, not this one
    assert sweeps == []
    idle.services.events.publish(Event("resync", ""))   # what PgEventBus says after a reconnection
    await until(lambda: sweeps, 3, "a sweep on resync")
