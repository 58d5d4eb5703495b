"""Micro-batching of model calls across concurrent conversations.

A message that arrives while a worker is free is classified at once, alone (no
waiting for company). Messages that arrive while every worker is busy queue up
and go together in the next call, so under load one call serves many
conversations and per-call overhead (thread hand-off, classifier set-up) is
shared. ``workers`` calls run side by side on their own threads (onnxruntime
releases the GIL), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Sequence, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs ``fn(batch) -> results`` (same length, same order) on worker threads.

    Args:
        fn: the batch function; called with at most ``max_batch`` items, possibly from
            ``workers`` threads at once.
        max_batch: the largest batch (bounds the latency a batch adds).
        workers: how many batches may run at the same time.
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 32,
                 workers: int = 1, name: str = "nlu") -> None:
        self._fn = fn
        self.max_batch = max(1, max_batch)
        self.workers = max(1, workers)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)
        self.calls = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        if self._loop is not loop:
            # A new event loop (a restarted app, another test): whatever the old one left is void.
            self._loop, self._pending, self._active = loop, [], 0
        self._pending.append((item, fut))
        self._dispatch(loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending and self._active < self.workers:
            batch = [(item, fut) for item, fut in self._pending[: self.max_batch] if not fut.cancelled()]
            del self._pending[: self.max_batch]
            if batch:
                self._active += 1
                loop.create_task(self._run(loop, batch))

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._fn, items)
        except Exception as e:  # noqa: BLE001 - each waiter gets the error
            log.exception("batched model call failed (%d items)", len(items))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        else:
            self.calls += 1
            self.items += len(items)
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)
        finally:
            if self._loop is loop:
                self._active -= 1
                self._dispatch(loop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
