"""A lean keep-alive HTTP/1.1 client for the per-message platform calls (issue 20).

Each answered Telegram or WhatsApp message costs one POST to the platform (``sendMessage``,
Graph ``/messages``). aiohttp's client spends about 190 us of CPU on such a request (request
and response objects, cookie jar, three timers, a write task, a payload registry, stream
readers); the socket work itself is about 70 us (bench/http_client.py measures both, A/B).
Switching aiohttp's features off (``DummyCookieJar``, a prebuilt ``yarl.URL``, a total-only
timeout, no proxy lookup) saves nothing measurable, so the hot POSTs use this instead:

- HTTP/1.1 keep-alive, a pool of idle connections per (scheme, host, port); an idle
  connection is reused for at most ``keepalive`` seconds (aiohttp's 15 s default), so a
  server's own idle timeout rarely closes one under a request; one the server has closed is
  never reused;
- TLS with ``ssl.create_default_context()`` (certificate and host name checked), as aiohttp;
- answers parsed by httptools (MagicStack's binding of llhttp, Node's HTTP parser, the one
  uvicorn uses): framed by ``Content-Length``, ``Transfer-Encoding: chunked`` (extensions and
  trailers) or the connection's end, 1xx answers skipped, keep-alive as llhttp decides it; an
  answer llhttp refuses (a bad status line or chunk size, two Content-Lengths, Content-Length
  with chunked ...) is a :class:`BadResponse`; ``gzip``/``deflate`` bodies decoded (none is asked
  for: no ``Accept-Encoding``, but a server may send one anyway);
- one timer per request: ``connect`` bounds establishing a connection, ``read`` the wait for
  the whole answer once the request is sent (aiohttp's ``sock_read`` bounds each wait for
  bytes; for a small JSON answer that is the same), ``timeout`` the whole request;
- failures are ``OSError``s (``ConnectionRefusedError`` ..., :class:`ServerDisconnected`,
  :class:`BadResponse`) or ``TimeoutError``; a request is never sent twice.

What it does not do, and the callers keep aiohttp for: proxies, uploads (multipart), redirects,
cookies, downloads, ``HEAD`` (refused with ValueError: httptools cannot tell llhttp that a HEAD
answer has no body, and no caller sends one). Callers use it only for a request without a proxy (see
connectors/telegram_http.py and connectors/whatsapp.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import httptools

MAX_HEAD = 64 * 1024             # status line and headers
MAX_BODY = 16 * 1024 * 1024      # a platform API's JSON answer is far smaller


class ServerDisconnected(ConnectionError):
    """The server closed the connection before its answer was complete."""


class BadResponse(ConnectionError):
    """The answer is not HTTP/1.x as this client reads it (or larger than it accepts)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: Mapping[str, str]     # names in lower case; a repeated header's values joined with ", "
    body: bytes


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    head: bytes       # "METHOD path HTTP/1.1\r\nHost: ...\r\n" without the method


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only http:// and https:// URLs with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname
    hostport = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        hostport += f":{parts.port}"
    if any(c in "\r\n \t" or not 32 < ord(c) < 127 for c in path + hostport):
        raise ValueError("the URL must be encoded (no spaces, line breaks or non-ASCII characters)")
    line = f" {path} HTTP/1.1\r\nHost: {hostport}\r\n"
    return _Target(parts.scheme, host, port, line.encode("ascii"))


class _Conn(asyncio.Protocol):
    """One connection; reads one answer at a time. httptools (llhttp) parses the answer: the status
    line, headers, the framing (Content-Length, chunked with extensions and trailers, to the
    connection's end), 1xx answers before the final one and the keep-alive decision; this class
    collects what its callbacks hand over and maps its errors to :class:`BadResponse`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._fut: asyncio.Future[Response] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._reason = b""
        self._headers: dict[str, str] = {}
        self._status = 0           # of the final answer, once its headers are complete
        self._to_eof = False       # its body ends with the connection
        self._done = False         # the final answer is complete
        self._keep = False
        self._head_bytes = 0
        self._body = bytearray()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        fut = self._fut
        if fut is None or fut.done():
            return
        if self._status and self._to_eof and not self._done:
            # the body ran to the connection's end, as announced (httptools has no "finish" call:
            # llhttp's framing decision is mirrored in on_headers_complete)
            self._done, self._keep = True, False
            try:
                self._finish()
            except BadResponse as err:
                self._fail(err)
        else:
            self._fail(ServerDisconnected("the server closed the connection before answering in full"))

    def data_received(self, data: bytes) -> None:
        if self._fut is None or self._fut.done():
            self.closed = True       # bytes nobody asked for: this connection is not reusable
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self._done:
                self._fail(BadResponse("the server switched protocols"))
                return
            self.closed = True
        except httptools.HttpParserError as exc:
            if not self._done:      # a callback's own BadResponse comes as the error's context
                own = exc.__context__
                if not isinstance(own, BadResponse):
                    own = BadResponse(f"a malformed answer: {exc}")
                    own.__cause__ = exc
                self._fail(own)
                return
            self.closed = True       # bytes after a complete answer: the connection is not reusable
        if self._done:
            try:
                self._finish()
            except BadResponse as err:
                self._fail(err)
        elif not self._status:        # llhttp sets no limit: the headers get MAX_HEAD (and one read)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(BadResponse("the answer's headers are too large"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._done:
            self.closed = True       # a second answer to one request: the connection is not reusable

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= 256:
            raise BadResponse("too many headers")
        k, v = name.decode("latin-1").lower(), value.decode("latin-1").strip()
        h = self._headers
        h[k] = f"{h[k]}, {v}" if k in h else v

    def on_headers_complete(self) -> None:
        p = self._parser
        status = p.get_status_code()
        if status < 200:             # 100 Continue and the like: the answer follows
            self._reason, self._headers = b"", {}
            return
        if p.get_http_version() not in ("1.1", "1.0"):
            raise BadResponse("not an HTTP/1.x answer")
        self._status = status
        h = self._headers
        # llhttp reads a body to the connection's end when neither length nor chunked frames it
        self._to_eof = status not in (204, 304) and "content-length" not in h and not (
            "transfer-encoding" in h and h["transfer-encoding"].lower().rstrip().endswith("chunked"))

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > MAX_BODY:
            raise BadResponse("the answer is too large")

    def on_message_complete(self) -> None:
        if self._status and not self._done:
            self._done = True
            self._keep = self._parser.should_keep_alive()

    # requests
    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        self._fut = loop.create_future()
        self._reset()
        return self._fut

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self._fut is not None and not self._fut.done():
            self._fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        assert self._fut is not None
        headers = self._headers
        body = bytes(self._body)
        coding = headers.get("content-encoding", "identity").lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            try:
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS if "gzip" in coding else zlib.MAX_WBITS)
            except zlib.error as exc:
                raise BadResponse(f"the {coding} body does not decode") from exc
        elif coding != "identity":
            raise BadResponse(f"unsupported Content-Encoding {coding!r}")
        if not self._keep:
            self.closed = True
        if self.closed and self.transport is not None:
            self.transport.close()
        self._fut.set_result(Response(self._status, self._reason.decode("latin-1"), headers, body))


class LeanHTTP:
    """Keep-alive HTTP/1.1 requests with small bodies, no proxy (see the module docstring).

    Args:
        user_agent: sent with every request.
        keepalive: seconds an idle connection may be reused.
        ssl_context: for https:// URLs; default ``ssl.create_default_context()``, made on first use.

    Example::

        http = LeanHTTP(user_agent="omnibot")
        resp = await http.request("POST", "https://api.example/v1/x", body=b"{}",
                                  headers={"Content-Type": "application/json"}, timeout=30)
        await http.close()
    """

    def __init__(self, *, user_agent: str = "", keepalive: float = 15.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._extra = f"User-Agent: {user_agent}\r\n".encode() if user_agent else b""
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False
        self.connections_made = 0       # for tests: keep-alive at work

    def _tgt(self, url: str) -> _Target:
        t = self._targets.get(url)
        if t is None:
            t = _target(url)
            if len(self._targets) >= 256:
                self._targets.clear()
            self._targets[url] = t
        return t

    async def _connect(self, t: _Target, loop: asyncio.AbstractEventLoop) -> _Conn:
        ctx = None
        if t.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        _, conn = await loop.create_connection(_Conn, t.host, t.port, ssl=ctx,
                                               server_hostname=t.host if ctx else None)
        self.connections_made += 1
        return conn

    async def request(self, method: str, url: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None,
                      timeout: float | None = None, connect: float | None = None,
                      read: float | None = None) -> Response:
        """Send one request and read its whole answer.

        Raises:
            TimeoutError: no connection within ``connect`` seconds, no complete answer within
                ``read`` seconds of sending the request, or none within ``timeout`` seconds of the call.
            OSError: the connection failed (refused, reset, closed early: :class:`ServerDisconnected`)
                or the answer is not one this client reads (:class:`BadResponse`).
            ValueError: the URL or a header cannot be sent as they are, or the method is HEAD.
        """
        if self._closed:
            raise RuntimeError("this LeanHTTP is closed")
        if method == "HEAD":      # its answer has no body; httptools cannot tell llhttp so
            raise ValueError("HEAD is not supported (no caller sends it)")
        t = self._tgt(url)
        head = bytearray(method.encode("ascii"))
        head += t.head
        head += self._extra
        if headers:
            for k, v in headers.items():
                line = f"{k}: {v}\r\n"
                if "\n" in line[:-2] or "\r" in line[:-2]:
                    raise ValueError("a header with a line break")
                head += line.encode("latin-1")
        if body or method != "GET":
            head += b"Content-Length: %d\r\n" % len(body)
        head += b"\r\n"
        loop = asyncio.get_running_loop()
        key = (t.scheme, t.host, t.port)
        conn: _Conn | None = None
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            c = idle.pop()
            if not c.closed and now - c.idle_since < self.keepalive:
                conn = c
                break
            c.abort()
        deadline = None if timeout is None else loop.time() + timeout
        if conn is None:
            limit = connect if timeout is None else (timeout if connect is None else min(connect, timeout))
            try:
                if limit is None:
                    conn = await self._connect(t, loop)
                else:
                    async with asyncio.timeout(limit):
                        conn = await self._connect(t, loop)
            except TimeoutError:
                raise TimeoutError("no connection in time") from None
        fut = conn.start(loop)
        if read is not None:       # the request goes out at once (a small body): read from now
            deadline = loop.time() + read if deadline is None else min(deadline, loop.time() + read)
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, _expire, conn, fut)
        try:
            assert conn.transport is not None
            conn.transport.write(bytes(head) + body if body else bytes(head))
            resp = await fut
        except BaseException:
            conn.abort()          # cancelled or failed: the connection's state is unknown
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if self._closed:
            conn.abort()            # closed while this request was in flight: no pool to go back to
        elif not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        return resp

    async def close(self) -> None:
        """Close the idle connections; one in use closes when its request ends. New requests
        raise RuntimeError."""
        self._closed = True
        for conns in self._idle.values():
            for c in conns:
                c.abort()
        self._idle.clear()


def _expire(conn: _Conn, fut: asyncio.Future[Response]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("no complete answer in time"))
    conn.abort()
