"""bot.aio: a time-limited wait that never loses a cancellation, and stops that end in bounded time.

The race (CPython gh-86296, Python 3.11's ``asyncio.wait_for``): a task waits on ``wait_for(q.get(),
10)``; an item arrives and the inner get finishes; in that same loop iteration, before the task
resumes, it is cancelled. ``asyncio.wait_for`` then returns the item instead of raising, the loop
waits again, and the stop that cancelled it waits forever. The steps below make that happen every
time: ``put_nowait`` schedules the getter, one ``sleep(0)`` lets it finish, then ``cancel``.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from bot.aio import stop_tasks, wait_for
from bot.events import Event, EventBus
from bot.flow_versions import FlowVersions

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("bot", "connectors", "handoff", "flows")


async def cancelled_as_the_wait_ends(waiter: Callable[[Awaitable[Any], float], Awaitable[Any]]) -> bool:
    """Whether a ``while True: waiter(q.get(), 10)`` loop ends when cancelled as its get finishes."""
    q: asyncio.Queue[int] = asyncio.Queue()

    async def loop() -> None:
        while True:
            try:
                await waiter(q.get(), 10)
            except TimeoutError:
                pass

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)           # the loop waits in q.get()
    q.put_nowait(1)
    await asyncio.sleep(0)           # the get finishes; the loop has not resumed yet
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()                # clean up after a failure
        await asyncio.wait({task}, timeout=1.0)
    return bool(done) and task.cancelled()


async def test_a_cancellation_as_the_wait_ends_stops_the_loop() -> None:
    assert await cancelled_as_the_wait_ends(wait_for)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12 rebuilt asyncio.wait_for on asyncio.timeout")
async def test_asyncio_wait_for_loses_that_cancellation_on_python_311() -> None:
    # the trap bot.aio avoids; also shows the steps above do hit the race
    assert not await cancelled_as_the_wait_ends(asyncio.wait_for)


async def test_wait_for_returns_the_result_or_times_out() -> None:
    assert await wait_for(asyncio.sleep(0, "done"), 1) == "done"
    assert await wait_for(asyncio.sleep(0, "no limit"), None) == "no limit"
    gate = asyncio.Event()
    with pytest.raises(TimeoutError):
        await wait_for(gate.wait(), 0.01)


async def test_the_flow_versions_follower_stops_when_cancelled_as_an_event_arrives(tmp_path: Path) -> None:
    # the hang seen when two instances on PostgreSQL stopped while the other's events still came in
    events = EventBus()
    versions = FlowVersions(store=None, path=tmp_path, build=lambda fs: None, teams=None,  # type: ignore[arg-type]
                            events=events, shared=False)
    task = asyncio.create_task(versions.run())
    await asyncio.sleep(0)                              # subscribed, waiting for an event
    events.publish(Event("message", "c1", None, {}))
    await asyncio.sleep(0)                              # the follower's get finishes...
    task.cancel()                                       # ...and the app stops in the same iteration
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    assert done, "the follower lost its cancellation and kept running: the app's stop would wait forever"
    assert not events._subs, "unsubscribed on the way out"


async def test_stop_tasks_cancels_again_a_task_that_lost_its_cancellation(caplog: pytest.LogCaptureFixture) -> None:
    async def loses_the_first() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass                                        # as asyncio.wait_for did on 3.11
        await asyncio.sleep(60)

    task = asyncio.create_task(loses_the_first(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="bot.aio"):
        assert await stop_tasks([task, None], "the test", timeout=0.1)
    assert task.cancelled()
    assert "task 'stubborn' still runs" in caplog.text and "cancelling it again" in caplog.text
    assert "test_aio.py" in caplog.text                 # where it was stuck


async def test_stop_tasks_ends_even_when_a_task_never_stops(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def never_stops() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    async def fails() -> None:
        raise RuntimeError("boom")

    stuck = asyncio.create_task(never_stops(), name="never")
    failing = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="bot.aio"):
        assert not await stop_tasks([stuck, failing], "the test", timeout=0.05)
    assert "left behind" in caplog.text
    assert not stuck.done()
    release.set()
    await asyncio.wait({stuck}, timeout=1.0)


def test_app_code_does_not_use_asyncio_wait_for() -> None:
    found = []
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for" \
                        and isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"use bot.aio.wait_for (asyncio.wait_for loses cancellations on 3.11): {found}"
