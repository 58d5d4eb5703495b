"""Client CPU per small JSON POST: aiohttp's ClientSession, aiohttp "tuned", connectors/lean_http.py
and a bare asyncio protocol (the floor), A/B in one process (issue 20).

An aiohttp server in a child process answers ``{"ok":true,...}``; this process's CPU time
(``time.process_time``) per request is measured with ``--concurrency`` requests in flight, as the
outbox sends replies. Rounds interleave the variants (forwards, then backwards), medians are printed
with each one's ratio to the first:

    python bench/http_client.py [--rounds 6] [--requests 600] [--concurrency 16] [--variants aiohttp,lean]

``lean@REV`` is LeanHTTP as connectors/lean_http.py was at git revision REV (for an A/B of a change
to it, e.g. ``--variants lean@1524763,lean``: the hand-written answer parser against httptools).

Variants: ``aiohttp`` (a ClientSession as connectors/telegram_http.py had it: string URL, a
ClientTimeout with connect/sock_read, proxy arguments), ``aiohttp-tuned`` (DummyCookieJar, a prebuilt
``yarl.URL(encoded=True)``, a total-only timeout, no proxy arguments), ``lean`` (LeanHTTP as the
connectors use it) and ``raw`` (an asyncio.Protocol that writes the request and reads a
Content-Length answer: no checks, no timers; what a request costs at least).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PATH = "/bot123:abc/sendMessage"
BODY = json.dumps({"chat_id": 1, "text": "Your order ships tomorrow. " * 3, "parse_mode": "HTML"}).encode()
ANSWER = b'{"ok":true,"result":{"message_id":5}}'
HEADERS = {"Content-Type": "application/json"}


def serve() -> None:
    """Child process: the server; prints its port."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post(PATH, handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()
    asyncio.run(main())


class _Raw(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.fut: asyncio.Future[bytes] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if sep:
            i = head.lower().find(b"content-length:")
            n = int(head[i + 15:].split(b"\r\n", 1)[0])
            if len(rest) >= n and self.fut is not None:
                self.buf, fut, self.fut = b"", self.fut, None
                fut.set_result(rest[:n])


def lean_at(rev: str) -> Any:
    """LeanHTTP from connectors/lean_http.py at git revision ``rev``, as a module of its own."""
    import importlib.util
    import tempfile

    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:connectors/lean_http.py"],
                         check=True, capture_output=True).stdout
    name = "lean_http_at_" + "".join(c if c.isalnum() else "_" for c in rev)
    with tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(name, f.name)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses look their module up
    spec.loader.exec_module(mod)
    Path(f.name).unlink()
    return mod.LeanHTTP


async def variants(port: int, revs: list[str]) -> tuple[dict[str, Callable[[], Awaitable[bytes]]],
                                                         Callable[[], Awaitable[None]]]:
    import aiohttp
    from yarl import URL

    from connectors.lean_http import LeanHTTP

    url = f"http://127.0.0.1:{port}{PATH}"
    plain = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32), headers={"User-Agent": "bench"})
    tuned = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32), headers={"User-Agent": "bench"},
                                  cookie_jar=aiohttp.DummyCookieJar())
    lean = LeanHTTP(user_agent="bench")
    timeout = aiohttp.ClientTimeout(total=26, connect=6, sock_connect=5, sock_read=15)
    total_only = aiohttp.ClientTimeout(total=26)
    prebuilt = URL(url, encoded=True)
    pool: list[_Raw] = []
    raw_head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY

    async def with_aiohttp() -> bytes:
        async with plain.request("POST", url, data=BODY, headers=HEADERS, timeout=timeout, proxy=None,
                                 proxy_auth=None) as resp:
            return await resp.read()

    async def with_tuned() -> bytes:
        async with tuned.post(prebuilt, data=BODY, headers=HEADERS, timeout=total_only) as resp:
            return await resp.read()

    async def with_lean() -> bytes:
        return (await lean.request("POST", url, body=BODY, headers=HEADERS, timeout=26, connect=6, read=15)).body

    async def with_raw() -> bytes:
        loop = asyncio.get_running_loop()
        conn = pool.pop() if pool else (await loop.create_connection(_Raw, "127.0.0.1", port))[1]
        conn.fut = loop.create_future()
        conn.transport.write(raw_head)
        body = await conn.fut
        pool.append(conn)
        return body

    others = {rev: lean_at(rev)(user_agent="bench") for rev in revs}

    def with_lean_at(client: Any) -> Callable[[], Awaitable[bytes]]:
        async def call() -> bytes:
            return (await client.request("POST", url, body=BODY, headers=HEADERS, timeout=26, connect=6,
                                         read=15)).body
        return call

    async def close() -> None:
        await plain.close()
        await tuned.close()
        await lean.close()
        for client in others.values():
            await client.close()
        for c in pool:
            c.transport.close()

    calls = {"aiohttp": with_aiohttp, "aiohttp-tuned": with_tuned, "lean": with_lean, "raw": with_raw}
    calls.update({f"lean@{rev}": with_lean_at(client) for rev, client in others.items()})
    return calls, close


async def one_round(call: Callable[[], Awaitable[bytes]], requests: int, concurrency: int) -> float:
    """Microseconds of this process's CPU per request."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            assert await call() == ANSWER

    start = time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    return (time.process_time() - start) / requests * 1e6


async def run(args: argparse.Namespace, port: int) -> dict[str, float]:
    names = args.variants.split(",")
    calls, close = await variants(port, [n.split("@", 1)[1] for n in names if n.startswith("lean@")])
    try:
        for n in names:                       # connections open, code warm
            await one_round(calls[n], 100, args.concurrency)
        per: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                per[n].append(await one_round(calls[n], args.requests, args.concurrency))
    finally:
        await close()
    return {n: statistics.median(v) for n, v in per.items()}


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="rounds per variant, interleaved (default 6)")
    ap.add_argument("--requests", type=int, default=600, help="requests per round (default 600)")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    ap.add_argument("--variants", default="aiohttp,aiohttp-tuned,lean,raw",
                    help="comma-separated, the first is the baseline (default aiohttp,aiohttp-tuned,lean,raw); "
                         "lean@REV: connectors/lean_http.py at git revision REV")
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        medians = asyncio.run(run(args, port))
    finally:
        proc.terminate()
        proc.wait()
    base = next(iter(medians.values()))
    print(f"client CPU per POST ({args.rounds} interleaved rounds x {args.requests}, {args.concurrency} in flight):")
    for n, us in medians.items():
        print(f"  {n:14s} {us:7.1f} us   x{us / base:.2f}")


if __name__ == "__main__":
    main()
