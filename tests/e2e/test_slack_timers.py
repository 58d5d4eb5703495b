"""The Slack desk's unclaimed-handoff ping races claims over a slow Slack, and failed
deliveries are told in the card's thread once.

Slack answers every call after 100 ms here, as the real one roughly does: the ping must be
decided on the handoff as it is when it fires (a claim committed before wins), and recorded in
the same step, so it fires once, also across a restart.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any


from bot.events import Event
from bot.model import Inbound
from bot.storage.rows import parse_iso
from conftest import Running, start_app, stop_app
from e2e.test_slack_desk import (click, complaint_to_slack, fake, slack_app,  # noqa: F401 (fixtures)
                                 slack_config, thread_message)
from fakes.slack_api import FakeSlack

PING = "nobody has claimed"


def card_ts(fake: FakeSlack) -> dict[str, str]:  # noqa: F811
    """handoff id -> ts of its card, from what Slack accepted."""
    out = {}
    for c in fake.calls_to("chat.postMessage"):
        if not (c.response or {}).get("ok") or c.args.get("thread_ts") or not c.args.get("blocks"):
            continue
        for b in c.args["blocks"]:
            for e in b.get("elements", []):
                if e.get("action_id") == "omnibot_claim":
                    out[e["value"]] = c.response["ts"]
    return out


def pings(fake: FakeSlack, ts: str) -> list[Any]:  # noqa: F811
    return [c for c in fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == ts
            and PING in c.args.get("text", "")]


async def test_claim_racing_the_unclaimed_ping(tmp_path: Path, fake: FakeSlack) -> None:  # noqa: F811
    fake.latency = 0.1
    alert_after = 2.0
    config = slack_config(tmp_path, fake, unclaimed_alert_after=alert_after, sync_interval=0.05,
                          posts_per_second=50, updates_per_second=50)
    r = await start_app(config)
    try:
        store, queue, events = r.services.store, r.services.queue, r.services.events
        hids = []
        for i in range(20):
            got = await store.record_inbound(Inbound(channel="webchat", external_id=f"race-{i}",
                                                     platform_message_id=f"race-{i}", text="a person please"))
            h = await store.create_handoff(got.conversation.id, team="complaints" if i % 2 else "support",
                                           reason="asked for a person")
            events.publish(Event("queued", got.conversation.id, h.id))
            hids.append(h)
        await fake.wait_for("chat.postMessage", count=20, timeout=alert_after - 0.2,
                            predicate=lambda c: not c.failed and not c.args.get("thread_ts"))
        # 16 claims spread from 0.4 s before the ping is due to 0.35 s after it; 4 never claimed
        claimed, unclaimed = hids[:16], hids[16:]
        due = max(h.created_at for h in hids).timestamp() + alert_after

        async def claim_at(h: Any, offset: float) -> None:
            await asyncio.sleep(max(0.0, due + offset - time.time()))
            await queue.claim(h.id, "Anna Smith")

        await asyncio.gather(*(claim_at(h, -0.4 + 0.05 * i) for i, h in enumerate(claimed)))
        await asyncio.sleep(1.0)            # many sweeps, each a chance to ping again
        tss = card_ts(fake)
        for i, h in enumerate(claimed):
            got_pings = pings(fake, tss[h.id])
            link = await store.desk_thread("slack", h.id)
            now = await store.get_handoff(h.id)
            assert len(got_pings) <= 1
            if got_pings:     # decided while still queued: the decision precedes the claim
                assert parse_iso(link["alerted_at"]) < now.claimed_at, (i, link["alerted_at"], now.claimed_at)
            if -0.4 + 0.05 * i < -0.15:      # claimed well before the ping was due: never pinged
                assert not got_pings and link["alerted_at"] is None, i
        for h in unclaimed:
            assert len(pings(fake, tss[h.id])) == 1
        total = sum(len(pings(fake, ts)) for ts in tss.values())
    finally:
        await stop_app(r)
    # a restart fires no timer again
    r = await start_app(config)
    try:
        await asyncio.sleep(0.8)
        assert sum(len(pings(fake, ts)) for ts in tss.values()) == total
    finally:
        await stop_app(r)


async def test_failed_delivery_is_told_in_the_thread_once(slack_app: Running, fake: FakeSlack) -> None:  # noqa: F811
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        await c.reply()
        assert await thread_message(r, "We will send a new lamp", "UANNA", ts, event_id="EvF1") == 200
        await c.reply()
        store = r.services.store
        h = await store.get_handoff(hid)
        [reply] = [m for m in await store.history(h.conversation_id) if m.role == "agent"]
        # what bot.delivery does when a send fails for good (until it is merged, by hand)
        reason = "403 Forbidden: bot was blocked by the user <x>"
        await store.mark_failed(reply.id, error=reason)
        r.services.events.publish(Event("delivery_failed", h.conversation_id, hid,
                                        {"message_id": reply.id, "reason": reason, "channel": "webchat"}))
        [warn] = await fake.wait_for("chat.postMessage", timeout=3.0, predicate=lambda x: x.args.get("thread_ts") == ts
                                     and "Not delivered" in x.args.get("text", ""))
        assert warn.args["text"] == ":warning: Not delivered to the customer: 403 Forbidden: bot was blocked " \
                                    "by the user &lt;x&gt;"
        # the same event again, and sweeps: still told once; the record survives a restart
        r.services.events.publish(Event("delivery_failed", h.conversation_id, hid,
                                        {"message_id": reply.id, "reason": reason, "channel": "webchat"}))
        # a failure nobody announced is found by the sweep
        joined = [m for m in await store.history(h.conversation_id) if "has joined" in m.text][-1]
        await store.mark_failed(joined.id, error="retries exhausted")
        await fake.wait_for("chat.postMessage", timeout=2.0, predicate=lambda x: x.args.get("thread_ts") == ts
                            and "retries exhausted" in x.args.get("text", ""))
        await asyncio.sleep(1.0)
        told = [x for x in fake.calls_to("chat.postMessage") if "Not delivered" in x.args.get("text", "")]
        assert len(told) == 2
        assert str(reply.id) in (await store.desk_thread("slack", hid))["warned"]
    finally:
        await c.close()
