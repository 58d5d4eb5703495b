"""The outbox worker: the one place where sending is retried.

Replies are rows in storage before anything is sent (see
:meth:`Store.commit_turn`); this worker sends the oldest pending message of
each conversation, marks it sent, and moves on. A crash at any point means a
resend at start-up, never a loss. Messages of one conversation go out one at a
time and in order; different conversations go out in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from contextlib import nullcontext
from typing import Any, AsyncContextManager, Awaitable, Callable, Mapping

from bot.aio import stop_tasks, wait_for
from bot.cluster import Cluster
from bot.config import DeliveryConfig
from bot.errors import PermanentSendError, StorageUnavailable, TransientSendError
from bot.events import Event, EventBus
from bot.storage import OutboxItem, Store
from connectors.base import BatchConnector, Connector

log = logging.getLogger(__name__)


class Delivery:
    """Sends the outbox through the connectors.

    Args:
        store: where the outbox lives.
        connectors: connector by channel name.
        config: retry policy.
        clock: seconds since the epoch (injectable for tests).
        events: where a message that could not be delivered is announced (``delivery_failed``),
            once its failure is recorded.
    """

    def __init__(self, store: Store, connectors: Mapping[str, Connector], config: DeliveryConfig, *,
                 clock: Callable[[], float] = time.time, events: EventBus | None = None,
                 cluster: Cluster | None = None) -> None:
        self.store = store
        # several instances: a conversation's replies are sent under its claim, by one instance
        self.cluster = cluster if cluster is not None and cluster.enabled else None
        self.events = events
        self.connectors = connectors
        self.config = config
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # per conversation in flight: its next due reply, read with the record of the last send
        self._following: dict[str, OutboxItem | None] = {}
        # whether each connector sends a turn as one message: a runtime_checkable Protocol's
        # isinstance walks its members every time (~90 us; was 4 % of a web-chat message's CPU)
        self._batching: dict[int, tuple[Connector, bool]] = {}
        self._sem = asyncio.Semaphore(config.concurrency)
        self._stopping = False
        # Fault injection for the crash test: hold every send this many seconds.
        self._fault_delay = float(os.environ.get("OMNIBOT_FAULT_SEND_DELAY", "0") or 0)
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="omnibot-delivery")
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        await stop_tasks([self._task], "delivery")
        await stop_tasks(list(self._inflight.values()), "delivery's sends")

    def wake(self) -> None:
        """New rows are in the outbox: look now instead of at the next due time."""
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, capped."""
        cap = min(self.config.max_delay, self.config.base_delay * (2 ** attempts))
        return random.uniform(cap / 2, cap)

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                timeout = await self._round()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker must outlive storage faults
                # Storage failing (StorageUnavailable: its health logs once a minute) or a bug:
                # wait before the next look, longer each time, never in a tight loop.
                failures += 1
                timeout = self.backoff(failures)
                if not isinstance(exc, StorageUnavailable):
                    log.exception("outbox round failed; next try in %.1f s", timeout)
                await asyncio.sleep(timeout)
                continue
            if timeout == 0.0:
                await asyncio.sleep(0)
                continue
            try:
                await wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _round(self) -> float | None:
        """Start a send task for each due conversation; how long to wait before the next round."""
        items = await self.store.due_outbox(self.clock(), limit=self.config.concurrency * 2,
                                            exclude=list(self._inflight), **self._claimable())
        for item in items:
            cid = item.message.conversation_id
            if cid not in self._inflight:
                self._inflight[cid] = asyncio.create_task(self._send(item))
        if items:
            return 0.0 if len(items) >= self.config.concurrency * 2 else None
        nxt = await self.store.next_outbox_due()
        timeout = None if nxt is None else max(0.0, nxt - self.clock())
        if timeout is not None and timeout == 0.0 and self._inflight:
            timeout = None  # the due head is in flight; its task wakes us
        return timeout

    def _claimable(self) -> dict[str, Any]:
        if self.cluster is None:
            return {}
        return {"owner": self.cluster.id, "live_since": self.clock() - self.cluster.ttl}

    def _claim(self, conversation_id: str) -> AsyncContextManager[bool]:
        return self.cluster.claim(conversation_id) if self.cluster is not None else nullcontext(False)

    async def _send(self, item: OutboxItem) -> None:
        cid = item.message.conversation_id
        try:
            async with self._sem, self._claim(cid) as fresh:
                # Work through this conversation's outbox in order while it has due messages,
                # without a round through the main loop for each.
                next_item: OutboxItem | None = item
                if fresh:
                    # claimed now: another instance may have sent the head while we waited
                    due = await self.store.due_outbox(self.clock(), limit=1, conversation_id=cid)
                    next_item = due[0] if due else None
                while next_item is not None and not self._stopping:
                    if not await self._attempt(next_item):
                        break
                    if cid in self._following:     # a send's record looked it up already
                        next_item = self._following.pop(cid)
                    else:
                        due = await self.store.due_outbox(self.clock(), limit=1, conversation_id=cid)
                        next_item = due[0] if due else None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, StorageUnavailable):
                log.exception("delivery of message %s failed unexpectedly", item.message.id)
            # Keep the conversation out of the rounds for a while: no hot retry.
            await asyncio.sleep(self.backoff(item.attempts + 1))
        finally:
            self._inflight.pop(cid, None)
            self._following.pop(cid, None)
            self.wake()

    async def _record(self, what: str, write: Callable[[], Awaitable[None]]) -> None:
        """Record a send's outcome, retrying with backoff while storage cannot write.

        The conversation stays in flight meanwhile, so the message is neither sent again nor
        overtaken. Only a stop (or a crash) before the record lands can mean one resend.
        """
        failures = 0
        while True:
            try:
                await write()
                return
            except StorageUnavailable:
                if self._stopping:
                    raise
                failures += 1
                delay = self.backoff(failures)
                log.debug("cannot record %s yet; retry in %.1f s", what, delay)
                await asyncio.sleep(delay)

    async def _attempt(self, item: OutboxItem) -> bool:
        """One send; True if the message left (sent, or failed for good) so the next may go."""
        msg = item.message
        connector = self.connectors.get(item.channel)
        if connector is None:
            await self._retry_or_fail(item, f"no connector for channel {item.channel!r} is running", None)
            return False
        if self._fault_delay:
            await asyncio.sleep(self._fault_delay)
        # A batch connector sends the turn's replies as one platform message; the outcome is
        # recorded for each of them. A retry is recorded on the head only (the rest wait behind it).
        batch = [item]
        known = self._batching.get(id(connector))
        if known is None or known[0] is not connector:
            known = self._batching[id(connector)] = (connector, isinstance(connector, BatchConnector))
        batching = known[1]
        if batching:
            batch = await self.store.outbox_turn(msg.id) or [item]
        try:
            if batching:
                platform_id = await connector.send_batch(batch)
            else:
                platform_id = await connector.send(item)
        except PermanentSendError as exc:
            log.warning("message %s to %s:%s failed permanently: %s", msg.id, item.channel,
                        item.external_id, exc)
            reason = str(exc)
            for one in batch:
                self.failed += 1
                await self._record(f"message {one.message.id} failed",
                                   lambda m=one.message.id: self.store.mark_failed(m, error=reason))
                await self._announce_failure(one, reason)
            return True
        except TransientSendError as exc:
            return await self._retry_or_fail(item, str(exc), exc.retry_after, batch)
        except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
            return await self._retry_or_fail(item, f"{type(exc).__name__}: {exc}", None, batch)
        for one in batch[:-1]:
            self.sent += 1
            await self._record(f"message {one.message.id} sent",
                               lambda m=one.message.id: self.store.mark_sent(m, platform_id))
        # the last one's record also reads what comes next (one operation, not two); a connector
        # with its own record of a send (WhatsApp: see connectors.base) makes it in that operation
        last, cid = batch[-1].message.id, msg.conversation_id
        record_sent = getattr(connector, "record_sent", None)
        failure: str | None = None

        async def mark_last() -> None:
            nonlocal failure
            if record_sent is None:
                self._following[cid] = await self.store.mark_sent_next(last, platform_id, conversation_id=cid,
                                                                       now=self.clock())
            else:
                self._following[cid], failure = await record_sent(batch[-1], platform_id, now=self.clock())
        await self._record(f"message {last} sent", mark_last)
        if failure is None:
            self.sent += 1
        else:       # the platform reported it failed before the send was recorded: recorded failed
            log.warning("message %s to %s:%s failed after sending: %s", last, item.channel, item.external_id,
                        failure)
            self.failed += 1
            await self._announce_failure(batch[-1], failure)
        return True

    async def _retry_or_fail(self, item: OutboxItem, error: str, retry_after: float | None,
                             batch: list[OutboxItem] | None = None) -> bool:
        """Schedule the head's next attempt, or give up on it (and on the rest of its batch)."""
        attempts = item.attempts + 1
        mid = item.message.id
        if attempts >= self.config.max_attempts:
            log.error("giving up on message %s to %s after %d attempts: %s", mid, item.channel,
                      attempts, error)
            reason = f"not delivered after {attempts} attempts: {error}"
            for one in batch or [item]:
                self.failed += 1
                await self._record(f"message {one.message.id} failed",
                                   lambda m=one.message.id: self.store.mark_failed(m, error=reason))
                await self._announce_failure(one, reason)
            return True
        delay = retry_after if retry_after is not None else self.backoff(item.attempts)
        log.warning("message %s to %s: %s; retry %d in %.1f s", mid, item.channel, error,
                    attempts, delay)
        await self._record(f"message {mid} retry", lambda: self.store.mark_retry(
            mid, next_attempt_at=self.clock() + delay, error=error))
        return False

    async def _announce_failure(self, item: OutboxItem, reason: str) -> None:
        await self.announce_failure(item.message.conversation_id, message_id=item.message.id, reason=reason,
                                    channel=item.channel, role=item.message.role,
                                    sender=item.message.sender_name)

    async def announce_failure(self, conversation_id: str, *, message_id: int, reason: str, channel: str,
                               role: str, sender: str) -> None:
        """Tell the desks at once that a message did not reach the customer.

        Called after the failure is recorded: the event is a hint, storage (status ``failed``
        plus the reason) stays the truth for a desk that missed it. Connectors call it too,
        when the platform reports a failure after the send (WhatsApp's ``failed`` status).
        """
        if self.events is None:
            return
        try:
            h = await self.store.active_handoff(conversation_id) or await self.store.latest_handoff(conversation_id)
        except StorageUnavailable:
            h = None        # still announce it; the desk re-reads storage anyway
        self.events.publish(Event("delivery_failed", conversation_id, h.id if h else None, {
            "message_id": message_id, "reason": reason, "channel": channel, "role": role, "sender": sender}))
