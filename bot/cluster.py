"""Several omnibot instances on one PostgreSQL database.

Each instance registers itself in the ``instances`` table and heartbeats every
second; one silent for ``ttl`` seconds is dead, and every instance's heartbeat
removes dead ones, whose claims then lapse. The database enforces the rest:

- **One writer per conversation.** Whoever answers a customer's message, sends a
  conversation's replies, acts for an agent or fires a timer first *claims* the
  conversation (its ``owner`` column, set in one statement), waits while a live
  instance holds it, and releases it afterwards. A turn's commit is fenced by
  the claim (:class:`bot.errors.ClaimLost`), so an instance taken for dead
  cannot write over the one that took over.
- **Named leases** elect one instance for a job (the Telegram poller).

With SQLite (one instance by design) none of this runs: :attr:`Cluster.enabled`
is False, claims cost nothing, and :class:`ClusterLocks` is the in-process lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from bot.aio import stop_tasks
from bot.errors import StorageUnavailable, StoreError
from bot.locks import KeyedLock
from bot.storage import Store

log = logging.getLogger(__name__)


class Cluster:
    """This instance's membership of the cluster.

    Args:
        store: the shared store; clustering is on when the backend is shared (PostgreSQL).
        heartbeat: seconds between heartbeats.
        ttl: seconds without a heartbeat after which an instance counts as dead.
        claim_timeout: the longest wait for a conversation another live instance holds.
        linger: seconds a released claim is kept before it is given back (see :meth:`claim`).
    """

    def __init__(self, store: Store, *, heartbeat: float = 1.0, ttl: float = 5.0, claim_timeout: float = 30.0,
                 linger: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.enabled = bool(getattr(store, "shared", False))
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.claim_timeout = claim_timeout
        self.linger = linger
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._held: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._on_peer_lost: list[Callable[[list[str]], None]] = []
        self.alive = True

    @property
    def owner(self) -> str | None:
        """What a fenced write passes as its owner: this instance's id, or None without clustering."""
        return self.id if self.enabled else None

    def on_peer_lost(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback(ids)`` when instances are found dead (their work is free to take over)."""
        self._on_peer_lost.append(callback)

    # -- membership -----------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.store.register_instance(self.id, host=socket.gethostname(), pid=os.getpid(), now=self.clock())
        log.info("instance %s joined the cluster", self.id)
        self._task = asyncio.create_task(self._beat(), name="omnibot-cluster-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task], "the cluster heartbeat")
            self._task = None
        if self.enabled:
            try:
                await self.store.forget_instance(self.id)
                log.info("instance %s left the cluster", self.id)
            except (StoreError, OSError) as exc:
                log.warning("instance %s could not sign off (%s); the others take over in %.0f s",
                            self.id, exc, self.ttl)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                now = self.clock()
                if not await self.store.heartbeat(self.id, now=now):
                    log.warning("instance %s was taken for dead by the others; joining again", self.id)
                    await self.store.register_instance(self.id, host=socket.gethostname(), pid=os.getpid(),
                                                       now=now)
                dead = await self.store.forget_dead_instances(now=now, ttl=self.ttl)
                if dead:
                    log.warning("instance(s) %s stopped answering; their conversations are taken over",
                                ", ".join(dead))
                    for callback in self._on_peer_lost:
                        callback(dead)
            except asyncio.CancelledError:
                raise
            except StorageUnavailable:
                continue
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any one bad round
                log.exception("cluster heartbeat failed")

    # -- conversation claims --------------------------------------------------------

    @asynccontextmanager
    async def claim(self, conversation_id: str) -> AsyncIterator[bool]:
        """Hold the conversation for this instance while the block runs; yields True if the claim
        was just taken from the database (another instance may have acted meanwhile).

        Re-entrant within the instance (the turn and the delivery of its replies may
        overlap); waits while another live instance holds it. A released claim lingers for
        ``linger`` seconds, so the delivery that follows a turn (or the customer's next
        message) reuses it without a round trip.

        Raises:
            StorageUnavailable: the claim could not be taken within ``claim_timeout``.
        """
        if not self.enabled:
            yield False
            return
        fresh = False
        releasing = self._releasing.get(conversation_id)
        if releasing is not None:
            await asyncio.shield(releasing)
        lingering = self._lingering.pop(conversation_id, None)
        held = self._held.get(conversation_id)
        if lingering is not None:
            lingering.cancel()                   # still ours in the database: keep it
            ready = asyncio.get_running_loop().create_future()
            ready.set_result(None)
            self._held[conversation_id] = (1, ready)
        elif held is not None:
            n, ready = held
            self._held[conversation_id] = (n + 1, ready)
            try:
                await asyncio.shield(ready)
            except BaseException:
                self._leave(conversation_id)
                raise
        else:
            ready = asyncio.get_running_loop().create_future()
            self._held[conversation_id] = (1, ready)
            try:
                await self._take(conversation_id)
            except BaseException as exc:
                ready.set_exception(exc if isinstance(exc, Exception) else StorageUnavailable("claim cancelled"))
                ready.exception()   # retrieved: no "never retrieved" warning when nobody else waits
                self._leave(conversation_id, release=False)
                raise
            ready.set_result(None)
            fresh = True
        try:
            yield fresh
        finally:
            self._leave(conversation_id)

    async def _take(self, conversation_id: str) -> None:
        deadline = time.monotonic() + self.claim_timeout
        delay = 0.005
        while not await self.store.claim_conversation(conversation_id, self.id, now=self.clock(), ttl=self.ttl):
            if time.monotonic() > deadline:
                raise StorageUnavailable(f"conversation {conversation_id} stayed claimed by another instance "
                                         f"for {self.claim_timeout:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _leave(self, conversation_id: str, *, release: bool = True) -> None:
        n, ready = self._held[conversation_id]
        if n > 1:
            self._held[conversation_id] = (n - 1, ready)
            return
        del self._held[conversation_id]
        if release:
            loop = asyncio.get_running_loop()
            self._lingering[conversation_id] = loop.call_later(self.linger, self._release_now, conversation_id)

    def _release_now(self, conversation_id: str) -> None:
        self._lingering.pop(conversation_id, None)
        task = asyncio.get_running_loop().create_task(self._release(conversation_id))
        self._releasing[conversation_id] = task

    async def _release(self, conversation_id: str) -> None:
        try:
            await self.store.release_conversation(conversation_id, self.id)
        except (StoreError, OSError) as exc:
            # the claim lapses when this instance's heartbeat stops, or at its next claim
            log.debug("release of %s failed: %s", conversation_id, exc)
        finally:
            self._releasing.pop(conversation_id, None)

    async def drain(self) -> None:
        """Release lingering claims now and wait for pending releases (shutdown, tests)."""
        for conversation_id, handle in list(self._lingering.items()):
            handle.cancel()
            self._release_now(conversation_id)
        while self._releasing:
            await asyncio.gather(*list(self._releasing.values()), return_exceptions=True)


class ClusterLocks(KeyedLock):
    """The per-conversation lock of every writer: in-process first, then the cluster claim."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self.cluster = cluster

    @asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        async with super().__call__(key):
            async with self.cluster.claim(key):
                yield
