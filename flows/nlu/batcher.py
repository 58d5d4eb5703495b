"""Micro-batching of model calls across concurrent conversations.

A message that arrives while a worker is free is classified at once, alone (no
waiting for company). Messages that arrive while every worker is busy queue up
and go together in the next call, so under load one call serves many
conversations and per-call overhead (thread hand-off, classifier set-up) is
shared. ``workers`` calls run side by side on their own threads (onnxruntime
releases the GIL), never on the event loop.

With ``cache`` > 0 the batcher also remembers the last ``cache`` results by item (a bounded
LRU): an item seen recently is answered from memory without a model call, and an item that is
already queued or running is not queued again but waits for that same call. For this the
function must be deterministic per item, as the NLU is: each message runs through the model
alone (see :mod:`flows.nlu.encoder`), so its result does not depend on the batch it came in.
:meth:`clear` forgets everything (call it when the model changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
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
        cache: how many results to remember by item (0: none); items must be hashable and
            ``fn`` deterministic per item.
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 32,
                 workers: int = 1, name: str = "nlu", cache: int = 0) -> None:
        self._fn = fn
        self.max_batch = max(1, max_batch)
        self.workers = max(1, workers)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)
        self.calls = 0
        self.items = 0
        self.cache_size = max(0, cache)
        self._cache: OrderedDict[T, R] = OrderedDict()
        self._running: dict[T, asyncio.Future[R]] = {}   # queued or running: later askers wait for it
        self._generation = 0     # bumped by clear(): results of calls started before are not kept
        self.hits = 0            # answered from the cache or by a call already under way

    def clear(self) -> None:
        """Forget every remembered result (the model changed)."""
        self._cache.clear()
        self._running = {}
        self._generation += 1

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a restarted app, another test): whatever the old one left is void.
            self._loop, self._pending, self._active, self._running = loop, [], 0, {}
        if self.cache_size:
            if item in self._cache:
                self._cache.move_to_end(item)
                self.hits += 1
                return self._cache[item]
            same = self._running.get(item)
            if same is not None:
                self.hits += 1
                return await asyncio.shield(same)
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        if self.cache_size:
            self._running[item] = fut
            self._dispatch(loop)
            # shielded: one asker giving up must not cancel the call the others wait for
            return await asyncio.shield(fut)
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
        generation = self._generation
        try:
            results = await loop.run_in_executor(self._executor, self._fn, items)
        except Exception as e:  # noqa: BLE001 - each waiter gets the error
            log.exception("batched model call failed (%d items)", len(items))
            for item, fut in batch:
                self._forget_running(item, fut)
                if not fut.done():
                    fut.set_exception(e)
        else:
            self.calls += 1
            self.items += len(items)
            for (item, fut), res in zip(batch, results):
                self._forget_running(item, fut)
                if self.cache_size and generation == self._generation:
                    self._cache[item] = res
                    self._cache.move_to_end(item)
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
                if not fut.done():
                    fut.set_result(res)
        finally:
            if self._loop is loop:
                self._active -= 1
                self._dispatch(loop)

    def _forget_running(self, item: T, fut: asyncio.Future[R]) -> None:
        if self.cache_size and self._running.get(item) is fut:
            del self._running[item]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
