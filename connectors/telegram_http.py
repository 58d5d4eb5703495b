"""python-telegram-bot's HTTP requests made with aiohttp instead of httpx.

PTB lets a ``Bot`` take any :class:`telegram.request.BaseRequest`; its default,
``HTTPXRequest``, spends more CPU per Bot API call than the whole rest of a Telegram
reply (issue 20: about 4 ms of 9.8 ms per answered message went to httpx/httpcore's
own per-request work, not to I/O). aiohttp is already the server and the WhatsApp and
Slack client here, and its client costs a fraction of that per request.

:class:`AiohttpRequest` behaves as ``HTTPXRequest`` does where PTB can tell:

- without a proxy, a POST that uploads nothing (``sendMessage``: one per reply; ``getMe``,
  ``getUpdates`` ...) goes over :class:`connectors.lean_http.LeanHTTP` instead, a keep-alive
  HTTP/1.1 client at under half aiohttp's client CPU per request (issue 20;
  ``python bench/http_client.py``); its transport errors read ``ConnectionRefusedError: ...``,
  ``ServerDisconnected: ...`` rather than ``aiohttp.ClientConnectorError: ...``. The timeouts below apply
  alike, except that ``read_timeout`` bounds the wait for the whole answer once the request is
  sent (for the Bot API's small answers, the same);
- one ``aiohttp.ClientSession`` per request object (PTB's ``Bot`` holds two: one for
  ``getUpdates``, one for everything else), created by ``initialize()`` (or by the first
  request), closed by ``shutdown()``; keep-alive connections are reused;
- proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY`` ...), as httpx honours them,
  looked up once per scheme and host while the session is open rather than on every request:
  aiohttp's ``trust_env=True`` looks up the proxy and reads ``~/.netrc`` in a worker thread for
  each request, two thread hops that cost about as much CPU as the request itself (issue 20).
  Bot API requests carry no HTTP auth, so ``.netrc`` is not read;
- the same parameters are sent, with PTB's User-Agent: as a JSON body
  (``application/json``, which the Bot API accepts for every method except uploads) or, when
  uploading files, as ``multipart/form-data`` with JSON-encoded values as httpx sends them.
  httpx's ``application/x-www-form-urlencoded`` body costs more to build (each value
  JSON-encoded, then percent-encoded, then aiohttp's form machinery) than the JSON one;
- timeouts: ``connect_timeout`` bounds establishing a connection, ``read_timeout`` each
  wait for response bytes, ``pool_timeout`` the wait for a free connection when
  ``connection_pool_size`` requests are already in flight (a separate "Pool timeout"
  message, as httpx's); aiohttp has no per-write timeout, so ``write_timeout`` (or
  ``media_write_timeout`` for uploads) bounds the whole request together with the others
  (total = pool + connect + write + read);
- errors: a timeout of any kind is ``telegram.error.TimedOut``, any other transport error
  ``telegram.error.NetworkError``; HTTP answers (4xx/5xx, ``retry_after``,
  ``migrate_to_chat_id``) are returned as status and body, and PTB's ``BaseRequest`` maps
  them to ``BadRequest``, ``Forbidden``, ``InvalidToken``, ``RetryAfter`` ... as it does for
  httpx.

Bot API URLs carry the bot token; error messages raised from here have the URL removed,
and the DEBUG log line per request names the Bot API method only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

from bot.aio import wait_for
from connectors.lean_http import LeanHTTP

log = logging.getLogger(__name__)

_POOL_TIMEOUT = ("Pool timeout: All connections in the connection pool are occupied. Request was *not* sent "
                 "to Telegram. Consider adjusting the connection pool size or the pool timeout.")


_JSON = {"Content-Type": "application/json"}


def _scrub(text: str, url: str) -> str:
    """``text`` without ``url`` or its path (where the token is)."""
    path = url.split("://", 1)[-1].partition("/")[2]
    text = text.replace(url, "<Bot API URL>")
    return text.replace(path, "<path>") if path else text


def _sum(*parts: float | None) -> float | None:
    return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]


class AiohttpRequest(BaseRequest):
    """A :class:`telegram.request.BaseRequest` backed by one shared ``aiohttp.ClientSession``.

    Args:
        connection_pool_size: requests in flight at once (connections kept open at most).
        read_timeout: default seconds to wait for response bytes (PTB adds the long-poll
            ``timeout`` to it for ``getUpdates``).
        write_timeout: default seconds for sending a request (see the module docstring).
        connect_timeout: default seconds to establish a connection.
        pool_timeout: default seconds to wait for a free connection.
        media_write_timeout: ``write_timeout`` for requests that upload files.

    Example::

        bot = Bot(token, request=AiohttpRequest(connection_pool_size=32, read_timeout=15))
    """

    def __init__(self, connection_pool_size: int = 256, *, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0, media_write_timeout: float | None = 20.0) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._lean: LeanHTTP | None = None
        self._proxies: dict[tuple[str, str], tuple[Any, Any]] = {}    # (scheme, host) -> (proxy, auth)
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        self._slots: asyncio.Semaphore | None = None
        self._shut = False

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout in seconds (PTB reads it to size long polls)."""
        return self._read_timeout

    def _open(self) -> aiohttp.ClientSession:
        # Built inside the running loop (aiohttp binds a session to it). No trust_env: see _proxy.
        connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
        self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT})
        self._lean = LeanHTTP(user_agent=self.USER_AGENT)
        self._proxies = {}       # the environment is read again for a new session
        self._slots = asyncio.Semaphore(self._pool_size)
        self._shut = False
        return self._session

    def _proxy(self, url: str) -> tuple[Any, Any]:
        """(proxy URL or None, its auth) for ``url`` from the environment, cached per scheme and host.

        The same answer as aiohttp's ``trust_env=True`` (``get_env_proxy_for_url``: ``*_PROXY``,
        ``NO_PROXY``), without its worker thread per request.
        """
        scheme, _, rest = url.partition("://")
        key = (scheme, rest.partition("/")[0])       # host[:port]: no URL parsing on a hit
        found = self._proxies.get(key)
        if found is None:
            try:
                found = get_env_proxy_for_url(URL(url))
            except LookupError:
                found = (None, None)
            self._proxies[key] = found
        return found

    async def initialize(self) -> None:
        """Open the session (again, after a shutdown)."""
        if self._session is None or self._session.closed:
            self._open()

    async def shutdown(self) -> None:
        """Close the session and its connections; idempotent."""
        self._shut = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
        if self._lean is not None:
            await self._lean.close()

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Any = BaseRequest.DEFAULT_NONE,
                         write_timeout: Any = BaseRequest.DEFAULT_NONE,
                         connect_timeout: Any = BaseRequest.DEFAULT_NONE,
                         pool_timeout: Any = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        """Send one request; (HTTP status, body). See :meth:`telegram.request.BaseRequest.do_request`.

        Raises:
            TimedOut: no connection, no free pool slot or no answer in time.
            NetworkError: any other transport failure.
            RuntimeError: used after ``shutdown()`` without a new ``initialize()``.
        """
        session = self._session
        if session is None or session.closed:
            if self._shut:
                raise RuntimeError("This AiohttpRequest is not initialized!")
            session = self._open()        # PTB initialises first; a request before that still works
        files = request_data.multipart_data if request_data else None
        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write_timeout = self._media_write_timeout if files else self._write_timeout
        data: Any = None
        headers = None
        if request_data is not None:
            if files:
                form = aiohttp.FormData(request_data.json_parameters)
                for name, (filename, content, mime) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mime)
                data = form
            else:
                params = request_data.parameters
                if params:
                    data = json.dumps(params, separators=(",", ":")).encode()
                    headers = _JSON
        key = (pool_timeout, connect_timeout, write_timeout, read_timeout)
        timeout = self._timeouts.get(key)
        if timeout is None:     # a handful of combinations in all: built once each
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=_sum(pool_timeout, connect_timeout, write_timeout, read_timeout),
                connect=_sum(pool_timeout, connect_timeout), sock_connect=connect_timeout, sock_read=read_timeout)
        slots = self._slots
        assert slots is not None
        if slots.locked():
            try:
                await wait_for(slots.acquire(), pool_timeout)
            except asyncio.TimeoutError:
                raise TimedOut(_POOL_TIMEOUT) from None
        else:
            await slots.acquire()        # free: returns at once
        try:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s", method, url.rsplit("/", 1)[-1])      # the method: the token sits before it
            proxy, proxy_auth = self._proxy(url)
            if proxy is None and method == "POST" and not files and self._lean is not None:
                # the per-message path (sendMessage): connectors/lean_http.py, a fraction of
                # aiohttp's CPU per request (issue 20); proxies and uploads stay on aiohttp
                resp = await self._lean.request("POST", url, body=data or b"", headers=headers,
                                                timeout=timeout.total, connect=timeout.connect,
                                                read=read_timeout)
                return resp.status, resp.body
            async with session.request(method, url, data=data, headers=headers, timeout=timeout, proxy=proxy,
                                       proxy_auth=proxy_auth) as resp:
                return resp.status, await resp.read()
        except asyncio.TimeoutError as exc:          # aiohttp's ServerTimeoutError is one too
            raise TimedOut(_scrub(f"Timed out ({type(exc).__name__})", url)) from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(_scrub(f"aiohttp.{type(exc).__name__}: {exc}", url)) from exc
        except OSError as exc:       # incl. lean_http's ServerDisconnected and BadResponse
            raise NetworkError(_scrub(f"{type(exc).__name__}: {exc}", url)) from exc
        finally:
            slots.release()
