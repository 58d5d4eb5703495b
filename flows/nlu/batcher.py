"""Micro-batching of model calls across concurrent conversations.

A message that arrives while the model is idle is encoded at once, alone (no
waiting for company). Messages that arrive while a call is running queue up
and go together in the next call, so under load one model call serves many
conversations and throughput does not collapse to one call per message.
The model runs in one dedicated worker thread (onnxruntime releases the GIL),
never on the event loop.
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
    """Runs ``fn(batch) -> results`` (same length, same order) on a worker thread.

    Args:
        fn: the batch function; called with at most ``max_batch`` items.
        max_batch: the largest batch (bounds the latency a batch adds).
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 32,
                 name: str = "nlu") -> None:
        self._fn = fn
        self.max_batch = max(1, max_batch)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.calls = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        if self._loop is not loop:
            # A new event loop (a restarted app, another test): whatever the old one left is void.
            self._loop, self._pending, self._running = loop, [], False
        self._pending.append((item, fut))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if not batch:
                    continue
                items = [item for item, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self._fn, items)
                except Exception as e:  # noqa: BLE001 - each waiter gets the error
                    log.exception("batched model call failed (%d items)", len(items))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                self.calls += 1
                self.items += len(items)
                for (_, fut), res in zip(batch, results):
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._running = False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
