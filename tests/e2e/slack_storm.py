"""A storm of handoffs against a fake Slack that enforces per-channel limits.

Used by tests/e2e/test_slack_load.py (time-scaled: 10 posts/s) and bench/slack_storm.py
(real scale: 1 post/s). The fake answers 429 + Retry-After above ``rate`` chat.postMessage
per second per channel and above ``update_rate`` chat.update per second per channel; the
desk is configured with the same rates.

The storm's handoffs are created through storage (customer, conversation, handoff) and
announced on the event bus, as the runtime does, all within well under a second. One more
conversation, opened before the storm by a web-chat customer through the real runtime, has
its card posted first; during the storm that customer writes every ``probe_every`` seconds,
and each message's way into the card's thread is timed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.events import Event
from bot.model import Inbound
from conftest import start_app, stop_app
from e2e.chat import ChatClient
from e2e.slack_config import slack_config
from fakes.slack_api import FakeSlack

@dataclass
class StormResult:
    handoffs: int
    channels: int
    rate: float
    last_card_s: float                 # from the storm's start to the last card Slack accepted
    cards: int
    calls: int                         # chat.postMessage + chat.update calls Slack received
    rate_limited: int                  # of them answered 429
    probe_latencies: list[float] = field(default_factory=list)

    @property
    def rate_limited_pct(self) -> float:
        return 100.0 * self.rate_limited / max(1, self.calls)

    def lines(self) -> list[str]:
        lat = self.probe_latencies
        return [
            f"storm: {self.handoffs} handoffs over {self.channels} channel(s); Slack enforces {self.rate:g} "
            f"post/s/channel; desk paced at the same rate",
            f"time to last card: {self.last_card_s:.1f} s ({self.cards} cards posted once each)",
            f"429s: {self.rate_limited} of {self.calls} chat.* calls ({self.rate_limited_pct:.1f} %)",
            f"thread message latency during the storm: n={len(lat)} p50={statistics.median(lat) if lat else 0:.3f} s "
            f"max={max(lat, default=0):.3f} s",
        ]


def storm_config(tmp_path: Path, fake: FakeSlack, *, rate: float, update_rate: float, channels: int,
                 sync_interval: float) -> Any:
    return slack_config(tmp_path, fake, team_channels={"complaints": "CCOMP" if channels == 2 else "CSUP"},
                        agents=["UANNA"], sync_interval=sync_interval, posts_per_second=rate,
                        updates_per_second=update_rate, messages_per_minute=100000)


def _is_card(c: Any) -> bool:
    # answered (the fake records a call before its latency), accepted, a card and not a thread message
    return c.method == "chat.postMessage" and (c.response or {}).get("ok") is True \
        and bool(c.args.get("blocks")) and not c.args.get("thread_ts")


async def run_storm(tmp_path: Path, *, handoffs: int = 100, channels: int = 1, rate: float = 10,
                    update_rate: float | None = None, probe_every: float = 0.5, latency: float = 0.0,
                    sync_interval: float = 0.5, timeout: float = 60) -> StormResult:
    fake = FakeSlack()
    await fake.start()
    fake.latency = latency
    fake.limit("chat.postMessage", per_second=rate)
    fake.limit("chat.update", per_second=update_rate or rate)
    r = await start_app(storm_config(tmp_path, fake, rate=rate, update_rate=update_rate or rate,
                                     channels=channels, sync_interval=sync_interval))
    c = ChatClient(r.http, r.ws_url)
    try:
        store, events = r.services.store, r.services.events
        await c.connect()
        await c.say("agent")
        [probe_card] = await fake.wait_for("chat.postMessage", predicate=_is_card, timeout=10)
        probe_ts = probe_card.response["ts"]
        fake.reset_calls()
        fake.rate_limited = 0

        t0 = time.time()
        for i in range(handoffs):
            got = await store.record_inbound(Inbound(channel="webchat", external_id=f"storm-{i}",
                                                     platform_message_id=f"storm-{i}", text="I need a person"))
            team = "complaints" if i % 2 else "support"
            h = await store.create_handoff(got.conversation.id, team=team, reason="asked for a person")
            events.publish(Event("queued", got.conversation.id, h.id))
        created = time.time() - t0

        latencies: list[float] = []
        k = 0
        deadline = time.monotonic() + timeout
        while len([x for x in fake.calls if _is_card(x)]) < handoffs and time.monotonic() < deadline:
            k += 1
            text = f"probe {k}"
            sent = time.time()
            await c.send(text)
            [relayed] = await fake.wait_for(
                "chat.postMessage", timeout=timeout, predicate=lambda x, text=text: (x.response or {}).get("ok")
                and x.args.get("thread_ts") == probe_ts and text in x.args.get("text", ""))
            latencies.append(relayed.time - sent)
            await asyncio.sleep(max(0.0, probe_every - (time.time() - sent)))
        cards = [x for x in fake.calls if _is_card(x)]
        await asyncio.sleep(2 * sync_interval)          # a later sweep must post nothing again
        cards_after = [x for x in fake.calls if _is_card(x)]
        assert len(cards_after) == len(cards), "a card was posted twice"
        keys = [_handoff_of(x) for x in cards_after]
        assert len(set(keys)) == len(keys), "a handoff got two cards"
        writes = [x for x in fake.calls if x.method in ("chat.postMessage", "chat.update")]
        assert created < 5, f"creating the storm took {created:.1f} s"
        return StormResult(handoffs=handoffs, channels=channels, rate=rate,
                           last_card_s=max((x.time for x in cards), default=t0) - t0, cards=len(cards),
                           calls=len(writes), rate_limited=fake.rate_limited, probe_latencies=latencies)
    finally:
        await c.close()
        await stop_app(r)
        await fake.stop()


def _handoff_of(call: Any) -> str:
    for b in call.args.get("blocks", []):
        for e in b.get("elements", []):
            if e.get("action_id") == "omnibot_claim":
                return str(e.get("value"))
    return ""
