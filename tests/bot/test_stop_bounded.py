"""An app's stop ends in bounded time: the loops it cancels stop even when cancelled in the loop
iteration where what they wait for arrives (bot/aio.py), and the PostgreSQL store's close ends
even when a connection never answers, without losing what was committed before."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.errors import StorageUnavailable
from bot.events_pg import PgEventBus
from bot.storage import open_store
from bot.storage.postgres import CLOSE_WAITS, PostgresStore
from conftest import Running


async def test_the_recovery_sweep_stops_when_cancelled_as_it_is_woken(running: Running) -> None:
    runtime = running.services.runtime
    sweeper = runtime._sweeper
    assert sweeper is not None
    await asyncio.sleep(0.05)           # the sweep waits for its wake-up
    runtime._wake_sweep()
    await asyncio.sleep(0)              # the wait ends; the sweep has not resumed yet
    async with asyncio.timeout(5):      # cancels the stop (and the sweep once more) if it hangs
        await runtime.stop()
    assert sweeper.cancelled()


async def test_the_live_events_supervisor_stops_when_cancelled_as_the_connection_is_lost(pg_url: str) -> None:
    bus = PgEventBus(check_interval=30, retry_delay=0.05)
    await bus.start(pg_url)
    await asyncio.sleep(0.05)           # the supervisor waits for a lost connection
    bus._connection_lost("the test")
    await asyncio.sleep(0)              # the wait ends; the supervisor has not resumed yet
    async with asyncio.timeout(5):
        await bus.close()
    assert bus._tasks == [] and bus._conn is None


class Relay:
    """A TCP relay to PostgreSQL on 127.0.0.1 that can lose every byte, as a network partition
    does: a connection whose statements never reach the server (so its statement_timeout never
    fires) and never get an answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.partitioned = False
        self._pumps: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.listen_port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        for r, w in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(r, w))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.partitioned:
                    continue                    # lost on the way
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[tuple[Relay, str]]:
    parts = urlsplit(pg_url)
    r = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await r.start()
    netloc = f"{parts.username}@127.0.0.1:{r.listen_port}"
    try:
        yield r, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await r.close()


async def test_store_close_ends_when_a_connection_never_answers(relay: tuple[Relay, str], pg_url: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    gate, url = relay
    store = PostgresStore(url, pool_size=2, timeout=0.5)
    await store.open()
    await store.set_meta("accepted", "before the stop")       # committed: must outlive the close
    gate.partitioned = True                                   # the database stops answering
    unanswered = asyncio.create_task(store.set_meta("late", "never reaches the server"))
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.ERROR):
        async with asyncio.timeout(10):                       # before the fix: waits forever
            await store.close()
    assert loop.time() - began < CLOSE_WAITS * 0.5 + 2
    assert "cutting the connections" in caplog.text
    done, _ = await asyncio.wait({unanswered}, timeout=2)
    assert done, "the caller of an operation cut off at close is answered (with an error), not left waiting"
    assert unanswered.cancelled() or isinstance(unanswered.exception(), (StorageUnavailable, OSError))
    again = await open_store(pg_url)
    try:
        assert await again.get_meta("accepted") == "before the stop"
        assert await again.get_meta("late") is None           # rolled back, never half-written
    finally:
        await again.close()
