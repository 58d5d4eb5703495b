"""Live events across instances, over PostgreSQL LISTEN/NOTIFY.

Several omnibot instances on one database each run a :class:`PgEventBus`. An
event published on one instance is delivered to its own subscribers at once
(as :class:`~bot.events.EventBus` does) and NOTIFYed to the others, which fan
it out to theirs. Events stay hints to re-read storage, never the only copy:
NOTIFY has no replay, so after the connection was lost and re-established the
bus publishes a local ``Event("resync", "")`` and subscribers re-read state.
Each instance numbers what it publishes; a receiver that sees a gap (an event
too big to send, or dropped during a long outage) also publishes ``resync``.
The numbers also keep identical events apart: PostgreSQL folds identical
payloads NOTIFYed in one transaction into one.

One dedicated asyncpg connection per instance (not a pooled one: releasing a
pooled connection runs ``UNLISTEN *``) both LISTENs and NOTIFYs. asyncpg does
not reconnect it, and may not notice that it died until a query runs on it,
hence the termination listener plus a periodic ``SELECT 1``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
import uuid
from collections import deque
from typing import Any

import asyncpg

from bot.aio import stop_tasks, wait_for
from bot.events import Event, EventBus

log = logging.getLogger(__name__)

CHANNEL = "omnibot_events"
PAYLOAD_LIMIT = 8000          # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
BATCH = 100                   # notifications sent per round trip, at most

# NOTIFY one batch, in order (unnest returns the array's elements in order).
_NOTIFY_SQL = "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p"

# The connection is gone (or unusable), as opposed to the server rejecting a statement.
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError,
                      asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)


def _dumps(obj: Any) -> str:
    """Compact ASCII JSON (so length in bytes == length in characters); never fails on odd values."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, default=str)


class PgEventBus(EventBus):
    """An :class:`EventBus` whose events also reach the other instances on the same database.

    Events from other instances arrive with ``remote=True``.

    Args:
        maxsize: each local subscriber's queue size (as for :class:`EventBus`).
        channel: the LISTEN/NOTIFY channel shared by the instances.
        check_interval: seconds between liveness checks of the connection.
        check_timeout: seconds a liveness check or a NOTIFY may take before the
            connection is considered lost.
        retry_delay: first delay before reconnecting; doubles up to ``max_retry_delay``.
        max_retry_delay: longest delay between reconnection attempts.
        outbox_size: events kept for sending while the database is unreachable;
            the oldest are dropped beyond that.

    Usage::

        bus = PgEventBus()
        await bus.start("postgresql://omnibot@db/omnibot")
        bus.publish(Event("queued", cid, hid))   # local subscribers now, other instances soon
        ...
        await bus.close()
    """

    def __init__(self, *, maxsize: int = 1000, channel: str = CHANNEL, check_interval: float = 2.0,
                 check_timeout: float = 3.0, retry_delay: float = 0.2, max_retry_delay: float = 5.0,
                 outbox_size: int = 10_000) -> None:
        super().__init__(maxsize=maxsize)
        self.shared = True
        self.channel = channel
        self.origin = uuid.uuid4().hex          # marks this instance's own notifications
        self._seq = itertools.count(1)          # numbers this instance's events
        self._last_seq: dict[str, int] = {}     # last number seen from each other instance
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._outbox_size = outbox_size
        self._dsn: str | None = None
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()             # one statement at a time on the connection
        self._outbox: deque[str] = deque()      # encoded payloads not yet NOTIFYed
        self._sending = 0                       # payloads in the statement being sent
        self._wake = asyncio.Event()            # the sender has something to do
        self._lost = asyncio.Event()            # the connection is gone: reconnect
        self._lost_reason = ""
        self._dropped = 0                       # outbox overflow during the current outage
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the bus currently has a live-looking connection to the database."""
        return self._conn is not None and not self._conn.is_closed() and not self._lost.is_set()

    async def start(self, dsn: str) -> None:
        """Connect, LISTEN, and start the sender and the connection supervisor.

        Raises what asyncpg raises if the database cannot be reached now; later
        outages are survived (see the module docstring).
        """
        if self._dsn is not None:
            raise RuntimeError("PgEventBus already started")
        self._dsn = dsn
        try:
            self._conn = await self._connect()
        except BaseException:
            self._dsn = None
            raise
        self._tasks = [asyncio.create_task(self._supervise(), name="pg-events-supervise"),
                       asyncio.create_task(self._send_loop(), name="pg-events-send")]

    async def close(self, *, flush_timeout: float = 1.0) -> None:
        """Send what is queued (for up to ``flush_timeout`` s), stop the tasks, close the connection."""
        if self._closing:
            return
        deadline = time.monotonic() + flush_timeout
        while (self._outbox or self._sending) and self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._outbox:
            log.debug("live events: %d event(s) not sent to other instances at close", len(self._outbox))
        self._closing = True
        await stop_tasks(self._tasks, "live events")
        self._tasks = []
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await wait_for(conn.close(timeout=2), 3)
            except Exception:  # noqa: BLE001 - it is going away either way
                conn.terminate()

    def publish(self, event: Event) -> None:
        """Deliver to local subscribers now, and queue the event for the other instances."""
        super().publish(event)
        if self._dsn is None or self._closing:
            return  # not started (or closing): local only, like EventBus
        payload = self._encode(event, next(self._seq))
        if payload is None:
            return
        if len(self._outbox) >= self._outbox_size:
            self._outbox.popleft()
            if not self._dropped:
                log.warning("live events: %d events waiting for PostgreSQL; dropping the oldest",
                            self._outbox_size)
            self._dropped += 1
        self._outbox.append(payload)
        self._wake.set()

    # -- encoding ---------------------------------------------------------------

    def _encode(self, event: Event, seq: int) -> str | None:
        """The NOTIFY payload for ``event``: under :data:`PAYLOAD_LIMIT` bytes, dropping
        the largest ``data`` fields if need be; None if even that is too big."""
        msg: dict[str, Any] = {"origin": self.origin, "seq": seq, "kind": event.kind,
                               "conversation_id": event.conversation_id,
                               "handoff_id": event.handoff_id, "data": dict(event.data)}
        text = _dumps(msg)
        if len(text) < PAYLOAD_LIMIT:
            return text
        data: dict[str, Any] = msg["data"]
        dropped: list[str] = []
        for key in sorted(data, key=lambda k: len(_dumps(data[k])), reverse=True):
            del data[key]
            dropped.append(key)
            text = _dumps(msg)
            if len(text) < PAYLOAD_LIMIT:
                log.debug("live events: %s event for %s too big to notify; dropped data fields %s",
                          event.kind, event.conversation_id, dropped)
                return text
        log.debug("live events: %s event for %s too big to notify even without data; "
                  "other instances will not see it", event.kind, event.conversation_id[:100])
        return None

    def _decode(self, payload: str) -> tuple[str, int, Event] | None:
        """(origin, seq, event) from a payload; None (logged) if it is not one of ours."""
        try:
            msg = json.loads(payload)
            data = msg.get("data") or {}
            if not isinstance(data, dict):
                raise ValueError("data is not an object")
            handoff_id = msg.get("handoff_id")
            event = Event(str(msg["kind"]), str(msg["conversation_id"]),
                          None if handoff_id is None else str(handoff_id), data, remote=True)
            return str(msg["origin"]), int(msg["seq"]), event
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            log.warning("live events: ignoring a malformed notification on %s (%s): %.200s",
                        self.channel, e, payload)
            return None

    # -- the connection -----------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        """A new dedicated connection, LISTENing on the channel."""
        assert self._dsn is not None
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": "omnibot-events"})
        try:
            await conn.add_listener(self.channel, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """asyncpg's callback: fan a notification from another instance out locally."""
        decoded = self._decode(payload)
        if decoded is None:
            return
        origin, seq, event = decoded
        if origin == self.origin:
            return  # ours: delivered locally at publish time
        last = self._last_seq.get(origin)
        if len(self._last_seq) > 1000 and last is None:
            self._last_seq.clear()  # instances come and go; forget the old ones
        self._last_seq[origin] = seq
        if last is not None and seq != last + 1:
            log.debug("live events: %d event(s) from %s never arrived; resyncing", seq - last - 1, origin)
            EventBus.publish(self, Event("resync", ""))
        EventBus.publish(self, event)

    def _on_terminated(self, conn: Any) -> None:
        """asyncpg's callback: the connection closed (by the server, the network, or us)."""
        if conn is self._conn and not self._closing:
            self._connection_lost("connection closed")

    def _connection_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _alive(self) -> bool:
        """One liveness check: ``SELECT 1`` answered within ``check_timeout``."""
        conn = self._conn
        if conn is None or conn.is_closed():
            self._connection_lost("connection closed")
            return False
        try:
            async with asyncio.timeout(self._check_timeout):
                async with self._lock:
                    await conn.fetchval("SELECT 1")
            return True
        except Exception as e:  # noqa: BLE001 - any failure means: reconnect
            self._connection_lost(f"liveness check failed: {type(e).__name__}: {e}".rstrip(": "))
            return False

    async def _supervise(self) -> None:
        """Check the connection every ``check_interval`` s; reconnect when it is lost."""
        while True:
            try:
                await wait_for(self._lost.wait(), self._check_interval)
            except TimeoutError:
                if await self._alive():
                    continue
            await self._reconnect()

    async def _reconnect(self) -> None:
        """Replace the lost connection (with backoff), then tell local subscribers to resync.

        Logged once when the outage starts and once when it ends, not per attempt.
        """
        old, self._conn = self._conn, None
        if old is not None:
            old.terminate()
        log.warning("live events: lost the PostgreSQL connection (%s); reconnecting", self._lost_reason)
        began = time.monotonic()
        delay = self._retry_delay
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = await self._connect()
                break
            except Exception as e:  # noqa: BLE001 - retried until it works or we close
                log.debug("live events: reconnection attempt %d failed: %s: %s", attempt, type(e).__name__, e)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._max_retry_delay)
        self._conn = conn
        self._lost.clear()
        self._last_seq.clear()  # we missed events anyway: the resync below covers them
        dropped, self._dropped = self._dropped, 0
        log.warning("live events: reconnected to PostgreSQL after %.1f s (%d attempt(s)%s); resyncing",
                    time.monotonic() - began, attempt,
                    f", {dropped} event(s) not sent to other instances" if dropped else "")
        EventBus.publish(self, Event("resync", ""))
        self._wake.set()

    async def _send_loop(self) -> None:
        """NOTIFY queued events in order, a batch per statement; keep them through an outage."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                conn = self._conn
                if conn is None or self._lost.is_set():
                    break  # _reconnect wakes us up again
                batch = [self._outbox.popleft() for _ in range(min(BATCH, len(self._outbox)))]
                self._sending = len(batch)
                try:
                    async with asyncio.timeout(self._check_timeout):
                        async with self._lock:
                            await conn.fetchval(_NOTIFY_SQL, self.channel, batch)
                except Exception as e:  # noqa: BLE001 - sorted out below
                    if isinstance(e, _CONNECTION_ERRORS) or conn.is_closed():
                        self._outbox.extendleft(reversed(batch))  # resent after reconnecting
                        self._connection_lost(f"NOTIFY failed: {type(e).__name__}: {e}")
                        break
                    log.warning("live events: NOTIFY of %d event(s) refused: %s: %s",
                                len(batch), type(e).__name__, e)
                finally:
                    self._sending = 0
