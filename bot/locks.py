"""One lock per conversation, shared by every writer (inbound, agents, timers)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager


class KeyedLock:
    """``async with locks(key):`` serializes work per key; keys run in parallel.

    Locks are dropped when nobody holds or waits for them, so memory stays
    bounded by the number of conversations in flight.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __call__(self, key: str) -> AbstractAsyncContextManager[None]:
        # a plain async context manager, not @asynccontextmanager: every message takes one, and
        # the generator machinery cost about as much as the lock itself
        return _Held(self, key)

    def _leave(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class _Held:
    """``key``'s lock, held inside ``async with``; counted among its users from the moment it is waited for."""

    __slots__ = ("_key", "_lock", "_owner")

    def __init__(self, owner: KeyedLock, key: str) -> None:
        self._owner = owner
        self._key = key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        locks = self._owner._locks
        lock, users = locks.get(self._key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        locks[self._key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._owner._leave(self._key)
            raise
        self._lock = lock

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()
        self._owner._leave(self._key)
