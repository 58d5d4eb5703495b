"""What every fake platform server shares: an aiohttp app on 127.0.0.1, a free port, a life cycle."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, Optional

from aiohttp import web


class FakeServer:
    """Subclasses add their routes in :meth:`routes`, may close things in :meth:`before_stop`,
    and record what clients asked in ``self.calls`` (objects with ``method`` and ``failed``)."""

    _runner: Optional[web.AppRunner] = None
    _port: Optional[int] = None
    calls: list[Any]

    # -- inspection -----------------------------------------------------------

    def calls_to(self, method: str) -> list[Any]:
        return [c for c in self.calls if c.method == method]

    def describe_call(self, call: Any) -> str:
        """One call, as listed when :meth:`wait_for` gives up."""
        return f"{call.method}{'(failed)' if call.failed else ''}"

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0,
                       predicate: Optional[Callable[[Any], bool]] = None) -> list[Any]:
        """Wait until ``count`` calls to ``method`` (matching ``predicate``) were received; return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [c for c in self.calls_to(method) if predicate is None or predicate(c)]
            if len(found) >= count:
                return found
            if loop.time() >= deadline:
                seen = ", ".join(self.describe_call(c) for c in self.calls) or "nothing"
                raise AssertionError(
                    f"expected {count} call(s) to {method!r}"
                    f"{' matching predicate' if predicate else ''} within {timeout}s, "
                    f"got {len(found)}; calls so far: {seen}")
            await asyncio.sleep(0.01)

    def reset_calls(self) -> None:
        self.calls.clear()

    # -- life cycle -------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def before_stop(self) -> None:
        """Close long-lived connections (sockets, long polls) before the server goes."""

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        await self.before_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"
