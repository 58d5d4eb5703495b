"""connectors/lean_http.py against real servers on 127.0.0.1: aiohttp's, and raw asyncio ones
that answer byte for byte what a test needs (chunked with trailers, to the connection's end,
100 Continue, gzip, a hang-up, garbage), plus TLS with a throwaway certificate."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from connectors.lean_http import BadResponse, LeanHTTP, ServerDisconnected

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """An aiohttp server echoing the body; the requests it saw and their bodies."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        body = await request.read()
        bodies.append(body)
        if request.path == "/chunked":
            resp = web.StreamResponse(status=201)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for part in (b'{"a":', b' 1', b"}"):
                await resp.write(part)
            await resp.write_eof()
            return resp
        if request.path == "/slow":
            await asyncio.sleep(1.0)
        return web.Response(body=b"echo:" + body, status=200 if request.path != "/missing" else 404,
                            headers={"Retry-After": "7"} if request.path == "/missing" else None)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen, bodies
    finally:
        await runner.cleanup()


async def raw_server(answer: Answer) -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def canned(*answers: bytes, close: bool = False) -> Answer:
    """A server that answers each request on a connection with the next of ``answers``."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for a in answers:
                await read_request(reader)
                for i in range(0, len(a), 7):        # in small pieces: framing across reads
                    writer.write(a[i:i + 7])
                    await writer.drain()
            if close:
                writer.close()
            else:
                await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return serve


async def test_keep_alive_one_connection_for_many_requests(echo) -> None:
    url, seen, bodies = echo
    http = LeanHTTP(user_agent="omnibot-test")
    try:
        for i in range(5):
            resp = await http.request("POST", f"{url}/x?i={i}", body=b'{"n":%d}' % i,
                                      headers={"Content-Type": "application/json"}, timeout=5)
            assert (resp.status, resp.body) == (200, b'echo:{"n":%d}' % i)
        results = await asyncio.gather(*(http.request("POST", f"{url}/y", body=b"p", timeout=5) for _ in range(4)))
        assert all(r.body == b"echo:p" for r in results)
    finally:
        await http.close()
    assert http.connections_made == 4              # reused: one, then four at once
    assert [r.query_string for r in seen[:5]] == [f"i={i}" for i in range(5)]
    assert seen[0].headers["User-Agent"] == "omnibot-test"
    assert seen[0].headers["Content-Type"] == "application/json"
    assert seen[0].headers["Host"] == url.removeprefix("http://")
    assert bodies[:5] == [b'{"n":%d}' % i for i in range(5)]


async def test_status_headers_and_chunked_answer(echo) -> None:
    url, _, _ = echo
    http = LeanHTTP()
    try:
        missing = await http.request("POST", f"{url}/missing", body=b"", timeout=5)
        assert missing.status == 404 and missing.reason == "Not Found" and missing.headers["retry-after"] == "7"
        chunked = await http.request("POST", f"{url}/chunked", body=b"{}", timeout=5)
        assert chunked.status == 201 and chunked.body == b'{"a": 1}'
        again = await http.request("POST", f"{url}/after", body=b"z", timeout=5)
        assert again.body == b"echo:z"
    finally:
        await http.close()
    assert http.connections_made == 1


async def test_framings_byte_by_byte() -> None:
    gz = gzip.compress(b'{"zipped":true}')
    server, url = await raw_server(canned(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(gz)).encode() + b"\r\nContent-Encoding: gzip\r\n\r\n" + gz,
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ))
    eof_server, eof_url = await raw_server(canned(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close=True))
    http = LeanHTTP()
    try:
        assert (await http.request("POST", url, body=b"1", timeout=5)).body == b"abcdefg"
        assert (await http.request("POST", url, body=b"2", timeout=5)).body == b'{"zipped":true}'
        nothing = await http.request("POST", url, body=b"3", timeout=5)
        assert nothing.status == 204 and nothing.body == b""
        assert (await http.request("POST", url, body=b"4", timeout=5)).body == b"ok"
        assert http.connections_made == 1          # all on one connection; the last one closed it
        assert (await http.request("POST", eof_url, body=b"x", timeout=5)).body == b"until the end"
    finally:
        await http.close()
        for s in (server, eof_server):
            s.close()
            await s.wait_closed()


async def test_a_connection_the_server_closed_is_not_reused_nor_an_old_one() -> None:
    # answers once per connection, then closes it without saying so (no Connection: close)
    server, url = await raw_server(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", close=True))
    http = LeanHTTP()
    try:
        assert (await http.request("POST", url, body=b"a", timeout=5)).body == b"1"
        await asyncio.sleep(0.05)                  # the close arrives
        assert (await http.request("POST", url, body=b"b", timeout=5)).body == b"1"
        assert http.connections_made == 2
    finally:
        await http.close()
        server.close()
        await server.wait_closed()


async def test_an_idle_connection_is_reused_for_keepalive_seconds_only(echo) -> None:
    url, _, _ = echo
    http = LeanHTTP(keepalive=0.3)
    try:
        await http.request("POST", url, body=b"a", timeout=5)
        await http.request("POST", url, body=b"b", timeout=5)
        assert http.connections_made == 1
        await asyncio.sleep(0.4)
        assert (await http.request("POST", url, body=b"c", timeout=5)).body == b"echo:c"
        assert http.connections_made == 2
    finally:
        await http.close()


async def test_failures_are_os_errors_or_timeouts(echo) -> None:
    url, _, _ = echo

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SPDY/9 what\r\n\r\n")
        await writer.drain()
        await reader.read()

    hung, hung_url = await raw_server(hang_up)
    bad, bad_url = await raw_server(garbage)
    closed_port = hung.sockets[0].getsockname()[1]
    http = LeanHTTP()
    try:
        with pytest.raises(ServerDisconnected):
            await http.request("POST", hung_url, body=b"x", timeout=5)
        with pytest.raises(BadResponse):
            await http.request("POST", bad_url, body=b"x", timeout=5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await http.request("POST", f"{url}/slow", body=b"x", timeout=5, read=0.2)
        assert loop.time() - t0 < 0.9
        with pytest.raises(TimeoutError):
            await http.request("POST", f"{url}/slow", body=b"x", timeout=0.2)
        # cancelled mid-request: that connection is dropped, the next request works
        task = asyncio.create_task(http.request("POST", f"{url}/slow", body=b"x", timeout=5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await http.request("POST", f"{url}/fine", body=b"y", timeout=5)).body == b"echo:y"
        hung.close()
        await hung.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await http.request("POST", f"http://127.0.0.1:{closed_port}/", body=b"x", timeout=5)
        with pytest.raises(ValueError):
            await http.request("POST", f"{url}/a b", body=b"x")
        with pytest.raises(ValueError):
            await http.request("POST", url, body=b"x", headers={"X-Bad": "a\r\nInjected: 1"})
        with pytest.raises(ValueError):
            await http.request("POST", "ftp://127.0.0.1/x", body=b"x")
    finally:
        await http.close()
        bad.close()
        await bad.wait_closed()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a throwaway certificate")
async def test_tls_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"),
                                        "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    trusting = LeanHTTP(ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = LeanHTTP()
    try:
        assert (await trusting.request("POST", url, body=b"{}", timeout=5)).body == b"secret"
        with pytest.raises(ssl.SSLCertVerificationError):     # an OSError: unknown issuer
            await default.request("POST", url, body=b"{}", timeout=5)
    finally:
        await trusting.close()
        await default.close()
        server.close()
        await server.wait_closed()


async def test_close_lets_a_request_in_flight_finish_then_refuses(echo) -> None:
    url, _, _ = echo
    http = LeanHTTP()
    task = asyncio.create_task(http.request("POST", f"{url}/slow", body=b"late", timeout=5))
    await asyncio.sleep(0.1)
    await http.close()
    assert (await task).body == b"echo:late"
    assert http._idle == {}                 # its connection did not go back to a pool
    with pytest.raises(RuntimeError):
        await http.request("POST", url, body=b"x", timeout=5)


@pytest.mark.parametrize("answer", [
    # bad status lines: a code that is not three ASCII digits (superscript digits pass str.isdigit),
    # too short, not HTTP at all
    b"HTTP/1.1 2\xb2\xb2 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1200 OK\r\nContent-Length: 0\r\n\r\n",
    # bad chunk sizes: Python's int() would take "0x2" and "1_0", llhttp takes hex digits only
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    # conflicting framing: two Content-Lengths, Content-Length with chunked (request smuggling's shape)
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    # a header line without a name, folded header lines
    b"HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
    # headers without end
    b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"b" * (70 * 1024) + b"\r\n",
], ids=["status-superscript", "status-short", "status-no-space", "chunk-0x", "chunk-underscore", "chunk-letters",
        "two-lengths", "length-and-chunked", "length-plus", "no-name", "folded", "headers-too-large"])
async def test_malformed_answers_are_bad_responses(answer: bytes) -> None:
    bad, good = canned(answer), canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    connections = 0

    async def first_bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await (bad if connections == 1 else good)(reader, writer)

    server, url = await raw_server(first_bad)
    http = LeanHTTP()
    try:
        with pytest.raises(BadResponse):
            await http.request("POST", url, body=b"x", timeout=3)
        # that connection is dropped; a new one answers
        assert (await http.request("POST", url, body=b"y", timeout=3)).status == 200
        assert http.connections_made == 2
    finally:
        await http.close()
        server.close()
        await server.wait_closed()


async def test_an_answer_with_bytes_after_it_does_not_go_back_to_the_pool() -> None:
    # the first answer comes with the start of another (never asked for); the connection would be out of step
    server, url = await raw_server(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
                                          b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    http = LeanHTTP()
    try:
        assert (await http.request("POST", url, body=b"x", timeout=3)).body == b"ok"
        assert (await http.request("POST", url, body=b"y", timeout=3)).body == b"ok"
        assert http.connections_made == 2
    finally:
        await http.close()
        server.close()
        await server.wait_closed()


async def test_head_is_refused(echo) -> None:
    url, seen, _ = echo
    http = LeanHTTP()
    try:
        with pytest.raises(ValueError, match="HEAD"):
            await http.request("HEAD", url, timeout=3)
    finally:
        await http.close()
    assert seen == [] and http.connections_made == 0
