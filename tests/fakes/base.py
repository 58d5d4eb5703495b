"""What every fake platform server shares: an aiohttp app on 127.0.0.1, a free port, a life cycle."""

from __future__ import annotations

import socket
from typing import Any, Optional

from aiohttp import web


class FakeServer:
    """Subclasses add their routes in :meth:`routes` and may close things in :meth:`before_stop`."""

    _runner: Optional[web.AppRunner] = None
    _port: Optional[int] = None

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
