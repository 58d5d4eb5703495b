"""The Slack poster paces each lane on its own: a 429 delays only its channel, urgent messages
go ahead of queued cards, and one channel's messages keep their order. Real slack_sdk client,
fake Slack on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from fakes.slack_api import FakeSlack
from handoff.slack_poster import CARD, URGENT, SlackPoster


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    f = FakeSlack()
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


async def test_429_delays_only_its_channel_and_urgent_goes_first(fake: FakeSlack) -> None:
    fake.limit("chat.postMessage", per_second=20)
    poster = SlackPoster(AsyncWebClient(token=fake.bot_token, base_url=fake.base_url),
                         posts_per_second=20, updates_per_second=20)
    try:
        fake.fail_next("chat.postMessage", status=429, retry_after=1)     # the first call: C1's
        t0 = time.monotonic()
        slow = asyncio.create_task(poster.post("C1", "card 0", priority=CARD))
        await fake.wait_for("chat.postMessage")
        cards = [asyncio.create_task(poster.post("C1", f"card {i}", priority=CARD)) for i in range(1, 4)]
        await asyncio.sleep(0)
        urgent = asyncio.create_task(poster.post("C1", "customer wrote", priority=URGENT))
        other = await poster.post("C2", "other channel")
        assert other["ok"] and time.monotonic() - t0 < 0.5                # C2 did not wait for C1's Retry-After
        await asyncio.gather(slow, urgent, *cards)
        c1 = [c.args["text"] for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "C1"
              and not c.failed]
        # the customer's message went first; the rate-limited card kept its place among the cards
        assert c1 == ["customer wrote", "card 0", "card 1", "card 2", "card 3"]
        assert time.monotonic() - t0 >= 1.0 and poster.rate_limited == 1
        await poster.update("C1", (await slow)["ts"], "updated")           # its own lane
        assert fake.calls_to("chat.update")[0].args["text"] == "updated"
    finally:
        await poster.stop()
