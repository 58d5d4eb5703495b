"""Waiting with a time limit, and stopping background tasks, in bounded time.

Why not ``asyncio.wait_for``: on Python 3.11 it loses a cancellation that arrives while the
awaited thing has just finished (CPython gh-86296, fixed in 3.12 where ``wait_for`` is built on
``asyncio.timeout``). It returns the result instead of raising ``CancelledError``, and the task
that was cancelled runs on. A loop that only ends when cancelled, such as::

    while True:
        ev = await asyncio.wait_for(queue.get(), 10)

then never ends: it waits on ``queue.get()`` again, nobody cancels it a second time, and the
app's stop (which cancels the loop and awaits it) waits forever. It happened when two instances
on one PostgreSQL database stopped while the other one's events were still arriving: the
flow-versions follower took an event in the same loop iteration as its cancellation.

:func:`wait_for` below has ``asyncio.wait_for``'s interface and raises the same ``TimeoutError``,
but is built on ``asyncio.timeout``, which never loses a cancellation (the await is the task's
own, and a cancel that was asked for is delivered even if the awaited future is already done).
Code under ``bot/``, ``connectors/``, ``handoff/`` and ``flows/`` uses it instead of
``asyncio.wait_for`` (tests/bot/test_aio.py checks).

:func:`stop_tasks` is the second line of defence for a stop: it cancels tasks and waits for them
for a bounded time, cancels again what did not stop (a task that lost its first cancellation),
and logs (with where it is stuck) and leaves behind what still runs, so a stop always ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Iterable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a stop waits for the tasks it cancelled before it cancels them again, and again before
#: it leaves them behind. Cancelled tasks normally end at once; only a stuck one takes this long.
STOP_WAIT = 10.0


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """``await aw`` for at most ``timeout`` seconds (None: no limit).

    Raises:
        TimeoutError: the time ran out (``aw`` is cancelled).
        asyncio.CancelledError: the calling task was cancelled, even in the iteration where
            ``aw`` finished (its result is then dropped, as for any cancelled await).
    """
    async with asyncio.timeout(timeout):
        return await aw


def _where(task: asyncio.Task) -> str:
    """The innermost frame a task is suspended in, ``file:line in function``."""
    stack = task.get_stack()
    if not stack:
        return "no frame"
    frame = stack[-1]
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


async def stop_tasks(tasks: Iterable[asyncio.Task | None], what: str, *, timeout: float = STOP_WAIT) -> bool:
    """Cancel ``tasks`` and wait until they end, in bounded time; True if all ended.

    A task still running ``timeout`` seconds after its cancellation is logged (as an error: it is
    a bug) with where it waits, and cancelled again; one still running ``timeout`` seconds after
    that is left behind (logged again), so the stop goes on. Exceptions of the tasks are not
    raised (as ``gather(..., return_exceptions=True)``).
    """
    given = [t for t in tasks if t is not None]
    pending = {t for t in given if not t.done()}
    for t in pending:
        t.cancel()
    for attempt in (1, 2):
        if not pending:
            break
        _, pending = await asyncio.wait(pending, timeout=timeout)
        for t in pending:
            if attempt == 1:
                log.error("stopping %s: task %r still runs %.0f s after it was cancelled (at %s); "
                          "cancelling it again", what, t.get_name(), timeout, _where(t))
                t.cancel()
            else:
                log.error("stopping %s: task %r still runs after a second cancellation (at %s); "
                          "left behind so the stop can end", what, t.get_name(), _where(t))
    for t in given:
        if t.done() and not t.cancelled():
            t.exception()        # retrieved: no "exception was never retrieved" at exit
    return not pending
