"""The business's systems as a conversation test gives them (``endpoints:``; README "Testing your flows").

A test that says ``endpoints: {shop: {"GET /orders/AB123456": {status: 200, json: {...}}}}`` gets,
for the length of the test, a tiny HTTP server on 127.0.0.1 (a free port) that answers those
requests, and the endpoint ``shop`` is pointed at it. The flow's ``call:`` steps go through the real
:class:`bot.integrations.Integrations` client over real HTTP, so retries, timeouts and the flow's
branches (``on_not_found``, ``on_status``, ``on_failure``) run as in production.

``endpoints: {shop: demo}`` points the endpoint at the demo shop's orders API (:mod:`bot.demo_shop`)
instead, served the same way for the test.

A request no entry answers gets a 404 and is remembered (:attr:`FakeServer.unmatched`), so a
failing test can name it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.aio import wait_for

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
FAILS = ("timeout",)
ANSWER_KEYS = ("status", "json", "fail")
TEST_TIMEOUT = 0.5      # seconds an endpoint waits for an answer in a test (a timeout costs no real time)


@dataclass(frozen=True)
class FakeAnswer:
    status: int = 200
    json: Any = None
    has_json: bool = False
    fail: str | None = None          # "timeout": no answer at all


@dataclass(frozen=True)
class FakeEndpoint:
    """What one endpoint answers in a test: ``demo`` (the demo shop), or answers by "METHOD /path"."""

    line: int
    demo: bool = False
    answers: dict[tuple[str, str], FakeAnswer] = field(default_factory=dict)

    def merged(self, more: "FakeEndpoint") -> "FakeEndpoint":
        """The file's defaults with a test's own answers on top (the test's win)."""
        if self.demo or more.demo:
            return more
        return FakeEndpoint(more.line, answers={**self.answers, **more.answers})


class FakeServer:
    """One test's HTTP server for one endpoint, on 127.0.0.1 and a free port."""

    def __init__(self, name: str, spec: FakeEndpoint, demo_api: Any = None) -> None:
        self.name = name
        self.spec = spec
        self.demo_api = demo_api
        self.requests: list[tuple[str, str]] = []     # (method, path), every request in order
        self.unmatched: list[tuple[str, str]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def start(self) -> str:
        app = web.Application()
        if self.spec.demo:
            from bot.demo_shop import PREFIX, DemoShop

            DemoShop(self.demo_api).add_routes(app)
            prefix = PREFIX
        else:
            app.router.add_route("*", "/{tail:.*}", self._answer)
            prefix = ""
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}{prefix}"
        return self.base_url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        self.requests.append((method, path))
        answer = self.spec.answers.get((method, request.path_qs)) or self.spec.answers.get((method, path))
        if answer is None:
            self.unmatched.append((method, request.path_qs))
            return web.json_response({"error": f"the test gives no answer to {method} {request.path_qs}"},
                                     status=404)
        if answer.fail == "timeout":
            try:
                await wait_for(self._closing.wait(), 30)
            except asyncio.TimeoutError:
                pass
            return web.Response(status=504)
        if answer.has_json:
            return web.Response(status=answer.status, body=json.dumps(answer.json).encode(),
                                content_type="application/json")
        return web.Response(status=answer.status)
