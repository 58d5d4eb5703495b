"""Outbound Slack writes, paced the way Slack limits them.

Slack allows about one chat.postMessage per second per channel (and answers 429 with
``Retry-After`` above that); chat.update has its own, workspace-wide budget. So every write
goes into a *lane*: one per channel for chat.postMessage, one for chat.update. Each lane has
its own worker, its own pace and its own priority queue:

- a 429 delays that lane only, for its ``Retry-After``, and the call is put back at its place;
  no other channel or method waits (nothing sleeps in a shared worker);
- a lane sends one call at a time, the next one interval (plus a 3 % margin for network jitter)
  after the previous one was *sent*, and never before Slack answered it: at 100 ms of latency
  that is one post per 1.03 s rather than 1.1 s if the pace ran from the answer, and a request
  delayed on its way still cannot bunch up with the next one (a rare 429 costs that lane its
  ``Retry-After``, nothing more);
- within a lane, lower ``priority`` goes first (customer messages before new cards), and equal
  priorities keep their order, so one conversation's thread messages arrive in order.

Callers await the result; the SDK's own 429 retry handler is not used here, because it would
sleep inside the lane without letting a more urgent call go first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# Priorities within a lane (lower first).
URGENT = 0      # what the customer wrote, failed deliveries, pings, replies to agents
CARD = 1        # the card of a new handoff
REFRESH = 2     # a card update

POST = "chat.postMessage"
UPDATE = "chat.update"


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    kwargs: dict[str, Any] = field(compare=False)
    future: asyncio.Future[dict[str, Any]] = field(compare=False)


class _Lane:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.jobs: list[_Job] = []
        self.wake = asyncio.Event()
        self.not_before = 0.0
        self.task: asyncio.Task[None] | None = None


class SlackPoster:
    """Paced chat.postMessage (per channel) and chat.update (one lane).

    Args:
        client: a Web API client without a rate-limit retry handler (429s come back here).
        posts_per_second: chat.postMessage calls per second per channel.
        updates_per_second: chat.update calls per second, all channels together.
    """

    def __init__(self, client: AsyncWebClient, *, posts_per_second: float, updates_per_second: float) -> None:
        self.client = client
        self.rates = {POST: posts_per_second, UPDATE: updates_per_second}
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._seq = itertools.count()
        self.rate_limited = 0          # 429s seen (each one delayed its lane)

    async def post(self, channel: str, text: str, *, priority: int = URGENT, **kwargs: Any) -> dict[str, Any]:
        """chat.postMessage; returns Slack's answer. Raises SlackApiError (not 429) or a network error."""
        return await self._call(POST, channel, priority, {"channel": channel, "text": text, **kwargs})

    async def update(self, channel: str, ts: str, text: str, *, priority: int = REFRESH,
                     **kwargs: Any) -> dict[str, Any]:
        """chat.update; returns Slack's answer."""
        return await self._call(UPDATE, "", priority, {"channel": channel, "ts": ts, "text": text, **kwargs})

    def pending(self) -> int:
        return sum(len(lane.jobs) for lane in self._lanes.values())

    async def stop(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            for job in lane.jobs:
                job.future.cancel()
        self._lanes.clear()

    async def _call(self, method: str, key: str, priority: int, kwargs: dict[str, Any]) -> dict[str, Any]:
        lane = self._lanes.get((method, key))
        if lane is None:
            lane = self._lanes[(method, key)] = _Lane(1.0 / self.rates[method])
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._run(method, key, lane), name=f"slack-{method}-{key or 'all'}")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        heapq.heappush(lane.jobs, _Job(priority, next(self._seq), kwargs, future))
        lane.wake.set()
        return await future

    async def _run(self, method: str, key: str, lane: _Lane) -> None:
        call = getattr(self.client, method.replace(".", "_"))
        while True:
            if not lane.jobs:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            delay = lane.not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)    # this lane's pace only; re-pick afterwards (priorities)
                continue
            job = heapq.heappop(lane.jobs)
            if job.future.done():             # the caller went away
                continue
            sent = time.monotonic()
            paced = sent + lane.interval * 1.03
            try:
                resp = await call(**job.kwargs)
            except SlackApiError as exc:
                if exc.response.status_code == 429:
                    wait = _retry_after(exc.response.headers)
                    self.rate_limited += 1
                    log.info("Slack rate-limited %s in %s; that lane waits %.1f s", method, key or "all", wait)
                    lane.not_before = time.monotonic() + wait
                    heapq.heappush(lane.jobs, job)     # same place in the queue
                    continue
                lane.not_before = paced
                _settle(job, exc=exc)
            except asyncio.CancelledError:
                _settle(job, exc=ConnectionError("Slack desk stopping"))
                raise
            except Exception as exc:           # network: the caller's sync retries later
                lane.not_before = paced
                _settle(job, exc=exc)
            else:
                lane.not_before = paced
                _settle(job, result=resp.data)  # type: ignore[arg-type]


def _settle(job: _Job, *, result: dict[str, Any] | None = None, exc: BaseException | None = None) -> None:
    if job.future.done():
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result or {})


def _retry_after(headers: Any) -> float:
    for name in ("Retry-After", "retry-after"):
        value = (headers or {}).get(name)
        if value is not None:
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except ValueError:
                break
    return 1.0
