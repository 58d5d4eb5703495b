"""The real app served on 127.0.0.1 from a config, with a client session: for the tests (tests/conftest.py
re-exports it) and the benchmarks under bench/ (``sys.path.insert(0, ROOT / "tests")``). No pytest here."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from bot.app import SERVICES, Services, build_app
from bot.config import Config


@dataclass
class Running:
    """An app served on 127.0.0.1 with a client session."""

    app: web.Application
    runner: web.AppRunner
    url: str
    http: aiohttp.ClientSession

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def ws_url(self) -> str:
        return self.url + "/webchat/ws"


async def start_app(config: Config) -> Running:
    app = await build_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    # unsafe=True: keep cookies set by an IP-address host (the agent login cookie).
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Running(app, runner, f"http://127.0.0.1:{port}", http)


async def stop_app(r: Running) -> None:
    await r.http.close()
    await r.runner.cleanup()


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[Running]:
    """``async with serving(config) as r:``: the app runs for the block, and is stopped however it ends."""
    r = await start_app(config)
    try:
        yield r
    finally:
        await stop_app(r)
