"""A fake Slack for tests: a real aiohttp server on 127.0.0.1 that answers like Slack.

The Web API half lets the real ``slack_sdk`` ``AsyncWebClient`` (and so slack-bolt's
``AsyncApp``) talk to it over HTTP::

    fake = FakeSlack()
    await fake.start()
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)
    await client.chat_postMessage(channel="C1", text="hi")
    [call] = await fake.wait_for("chat.postMessage")
    await fake.stop()

It also serves a minimal Socket Mode WebSocket (``/socket``), the upload URLs that
``files_upload_v2`` posts bytes to (``/upload/<file_id>``) and ``response_url``
targets (``/response/<key>``).

The second half of the module builds the requests Slack makes TO an app over HTTP
(signed headers plus Events API / block_actions / slash command bodies), shaped so
that slack-bolt parses them like the real ones.

What Slack does and this fake copies:
- Every answer to a Web API method is HTTP 200 with ``{"ok": true|false, ...}``;
  errors are ``ok: false`` with an ``error`` code, not HTTP errors. Only rate limits
  (429 + ``Retry-After``) and outages (5xx) use other statuses.
- ``slack_sdk``'s async client sends ``params=`` (users.info, files.*, apps.*) as the
  URL query string even on POST, and ``json=`` (chat.*) as a JSON body; both are read.
- No token -> ``not_authed``; a wrong token -> ``invalid_auth``; an app-level token on a
  bot method (or a bot token on ``apps.connections.open``) -> ``not_allowed_token_type``.
- Rate limits per channel (``limit("chat.postMessage", per_second=1)``): more than N calls to
  that method for one channel within any one second are answered 429 + ``Retry-After``, as
  Slack does for chat.postMessage (about one message per second per channel); ``limit`` on
  chat.update is a separate budget. ``rate_limited`` counts the 429s so answered.
- Latency: ``latency`` seconds (or ``latency_for[method]``) before every Web API answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Union
from urllib.parse import parse_qsl, urlencode

from aiohttp import WSMsgType, web

from fakes.base import FakeServer

__all__ = [
    "Call",
    "FakeSlack",
    "signed_headers",
    "event_payload",
    "event_body",
    "url_verification_body",
    "action_payload",
    "action_body",
    "command_payload",
    "command_body",
]

TEAM_ID = "T0001"
TEAM_NAME = "Omnibot Test"
TEAM_DOMAIN = "omnibot-test"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
BOT_NAME = "omnibot"
APP_ID = "A0001"

# Form fields that slack_sdk sends as JSON strings; decoded in Call.args.
_JSON_FIELDS = frozenset(
    {
        "blocks",
        "attachments",
        "files",
        "metadata",
        "view",
        "outputs",
        "unfurls",
        "user_auth_blocks",
        "chunks",
    }
)

# Methods answered without a token (as Slack does for api.test).
_NO_AUTH_METHODS = frozenset({"api.test"})
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

_DEFAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


@dataclass
class Call:
    """One request the fake received.

    ``args`` merges the query string and the body (JSON or form-encoded); JSON-string
    form fields such as ``blocks`` or ``files`` are decoded to Python. ``headers`` has
    lower-cased names. ``failed`` is True when the fake answered with an injected
    fault (see ``FakeSlack.fail_next``). ``method`` is the Web API method name, or
    ``"upload"`` (file bytes posted to an upload URL), ``"response_url"`` (a POST to
    ``fake.response_url(...)``) or ``"socket_ack"`` (a Socket Mode ack).
    """

    method: str
    args: dict
    headers: dict
    time: float
    failed: bool = False
    status: int = 200
    token: Optional[str] = None
    response: Optional[dict] = None
    path: str = ""


Handler = Callable[[Call], Union[dict, Awaitable[dict]]]


@dataclass
class _Fault:
    status: int
    retry_after: Optional[int]
    error: str
    remaining: int


@dataclass
class _Upload:
    filename: str
    length: Optional[int]
    uploaded: bool = False
    meta: dict = field(default_factory=dict)


class FakeSlack(FakeServer):
    """A Slack Web API + Socket Mode look-alike on 127.0.0.1:<random port>.

    ``strict=True`` makes chat.update/chat.delete of a ts the fake never issued answer
    ``message_not_found`` and conversations.info of an unregistered channel answer
    ``channel_not_found``; by default both are lenient.
    """

    def __init__(
        self,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        *,
        strict: bool = False,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.strict = strict
        self.calls: list[Call] = []
        self.users: dict[str, dict] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, dict] = {}
        # (channel, ts) -> message dict as returned by chat.postMessage / chat.update
        self.messages: dict[tuple[str, str], dict] = {}
        self.files: dict[str, bytes] = {}
        self.file_info: dict[str, dict] = {}
        self.acks: dict[str, dict] = {}
        self._uploads: dict[str, _Upload] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._handlers: dict[str, Handler] = {}
        self._ts_counter = itertools.count(1_700_000_000_000_100, 100)
        self._file_counter = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()
        self._ack_events: dict[str, asyncio.Event] = {}
        self.latency = 0.0                          # seconds before every Web API answer
        self.latency_for: dict[str, float] = {}     # per method, instead of ``latency``
        self.rate_limited = 0                       # 429s answered by the per-channel limits
        self._limits: dict[str, float] = {}         # method -> calls per second per channel
        self._accepted: dict[tuple[str, str], list[float]] = {}

    # ------------------------------------------------------------------ lifecycle

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_post("/response/{key}", self._handle_response_url)
        app.router.add_get("/socket", self._handle_socket)

    async def before_stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server stopping")
        self._sockets.clear()

    @property
    def base_url(self) -> str:
        """What to pass as ``AsyncWebClient(base_url=...)`` (slack_sdk urljoins method names on it)."""
        return f"{self.url}/api/"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    def response_url(self, key: str = "r1") -> str:
        """A ``response_url`` pointing back at the fake; POSTs to it are recorded as ``"response_url"`` calls."""
        return f"{self.url}/response/{key}"

    # ------------------------------------------------------------------ registries

    def add_user(self, user_id: str, real_name: str, display_name: Optional[str] = None, **profile: Any) -> dict:
        first, _, last = real_name.partition(" ")
        name = (display_name or real_name).lower().replace(" ", ".")
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Europe/Berlin",
            "is_bot": False,
            "is_admin": False,
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": display_name or "",
                "display_name_normalized": display_name or "",
                "first_name": first,
                "last_name": last,
                "team": TEAM_ID,
                **profile,
            },
        }
        self.users[user_id] = user
        return user

    def add_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        self.usergroups[group_id] = list(user_ids)

    def add_channel(self, channel_id: str, name: str, **extra: Any) -> dict:
        channel = {
            "id": channel_id,
            "name": name,
            "is_channel": True,
            "is_private": False,
            "is_im": channel_id.startswith("D"),
            "is_member": True,
            **extra,
        }
        self.channels[channel_id] = channel
        return channel

    def set_handler(self, method: str, handler: Handler) -> None:
        """Answer ``method`` with ``handler(call)`` (sync or async) -> response dict.

        Overrides built-in methods too; ``"ok": True`` is added when the dict has no ``ok``.
        Token checks and injected faults still apply before the handler runs.
        """
        self._handlers[method] = handler

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: Optional[int] = 1,
        error: Optional[str] = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``method`` answer HTTP ``status`` + ``{"ok": false, "error": error}``.

        ``error`` defaults to ``ratelimited`` (429), ``internal_error`` (500),
        ``service_unavailable`` (503), else ``fatal_error``. ``Retry-After`` is only sent
        for 429. ``status=200`` gives a plain Slack API error (e.g. ``channel_not_found``).
        ``method`` may also be ``"upload"`` (the file-bytes POST) or ``"response_url"``.
        """
        if error is None:
            error = _DEFAULT_ERRORS.get(status, "fatal_error")
        self._faults.setdefault(method, []).append(
            _Fault(status=status, retry_after=retry_after if status == 429 else None, error=error, remaining=times)
        )

    def limit(self, method: str, *, per_second: float) -> None:
        """Allow at most ``per_second`` calls to ``method`` per channel in any one second
        (a sliding window); more are answered 429 ``ratelimited`` with ``Retry-After`` set to
        the whole seconds until the window has room, at least 1, as Slack does."""
        self._limits[method] = per_second

    def _over_limit(self, method: str, channel: Any, now: float) -> Optional[int]:
        """Seconds to wait if this call is over ``method``'s per-channel limit, else None (and it counts)."""
        rate = self._limits.get(method)
        if rate is None or not isinstance(channel, str):
            return None
        window = 1.0
        allowed = max(1, int(rate * window))
        times = self._accepted.setdefault((method, channel), [])
        while times and times[0] <= now - window:
            times.pop(0)
        if len(times) >= allowed:
            return max(1, int(-(-(times[0] + window - now) // 1)))
        times.append(now)
        return None

    def _take_fault(self, method: str) -> Optional[_Fault]:
        faults = self._faults.get(method)
        while faults:
            fault = faults[0]
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    faults.pop(0)
                return fault
            faults.pop(0)
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return web.json_response({"ok": False, "error": fault.error}, status=fault.status, headers=headers)

    # ------------------------------------------------------------------ inspection

    # calls_to, wait_for and reset_calls come from FakeServer.

    # ------------------------------------------------------------------ HTTP: Web API

    def next_ts(self) -> str:
        n = next(self._ts_counter)
        return f"{n // 1_000_000}.{n % 1_000_000:06d}"

    async def _parse_args(self, request: web.Request) -> dict:
        args: dict[str, Any] = dict(request.query)
        if request.content_type.startswith("multipart/"):
            args.update(await _read_multipart(request))
            raw = b""
        else:
            raw = await request.read()
        if raw:
            ctype = request.content_type
            text = raw.decode("utf-8", errors="replace")
            if ctype == "application/json" or (ctype != "application/x-www-form-urlencoded" and text.lstrip().startswith("{")):
                try:
                    body = json.loads(text)
                except json.JSONDecodeError:
                    body = {"_raw": text}
                if isinstance(body, dict):
                    args.update(body)
            else:
                args.update(dict(parse_qsl(text, keep_blank_values=True)))
        for key in _JSON_FIELDS & args.keys():
            value = args[key]
            if isinstance(value, str) and value[:1] in ("[", "{"):
                try:
                    args[key] = json.loads(value)
                except json.JSONDecodeError:
                    pass
        return args

    @staticmethod
    def _token_of(request: web.Request, args: dict) -> Optional[str]:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        token = args.get("token")
        return token if isinstance(token, str) and token else None

    def _auth_error(self, method: str, token: Optional[str]) -> Optional[str]:
        if method in _NO_AUTH_METHODS:
            return None
        if not token:
            return "not_authed"
        expected = self.app_token if method in _APP_TOKEN_METHODS else self.bot_token
        if token == expected:
            return None
        if method in _APP_TOKEN_METHODS and token == self.bot_token:
            return "not_allowed_token_type"
        if method not in _APP_TOKEN_METHODS and token == self.app_token:
            return "not_allowed_token_type"
        return "invalid_auth"

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await self._parse_args(request)
        token = self._token_of(request, args)
        call = Call(
            method=method,
            args=args,
            headers={k.lower(): v for k, v in request.headers.items()},
            time=time.time(),
            token=token,
            path=request.path,
        )
        self.calls.append(call)
        delay = self.latency_for.get(method, self.latency)
        if delay:
            await asyncio.sleep(delay)

        fault = self._take_fault(method)
        if fault is None:
            wait = self._over_limit(method, args.get("channel"), time.monotonic())
            if wait is not None:
                self.rate_limited += 1
                fault = _Fault(status=429, retry_after=wait, error="ratelimited", remaining=0)
        if fault is not None:
            call.failed = True
            call.status = fault.status
            call.response = {"ok": False, "error": fault.error}
            return self._fault_response(fault)

        builtin = getattr(self, "_m_" + method.replace(".", "_"), None)
        handler = self._handlers.get(method)
        if handler is None and builtin is None:
            body: dict = {"ok": False, "error": "unknown_method", "req_method": method}
        else:
            err = self._auth_error(method, token)
            if err is not None:
                body = {"ok": False, "error": err}
            elif handler is not None:
                result = handler(call)
                if inspect.isawaitable(result):
                    result = await result
                body = {"ok": True, **(result or {})}
            else:
                body = builtin(call)
        call.response = body
        headers = {"X-OAuth-Scopes": "chat:write,users:read,usergroups:read,channels:read,files:write"}
        return web.json_response(body, headers=headers)

    # --- methods (one _m_<name> per Slack method; return the JSON body) ---

    def _m_api_test(self, call: Call) -> dict:
        return {"ok": True, "args": {k: v for k, v in call.args.items() if k != "token"}}

    def _m_auth_test(self, call: Call) -> dict:
        if call.token == self.app_token:
            return {"ok": True, "app_name": BOT_NAME, "app_id": APP_ID}
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _message(self, args: dict, ts: str) -> dict:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": args.get("text", ""),
            "ts": ts,
        }
        if args.get("blocks") is not None:
            msg["blocks"] = args["blocks"]
        if args.get("attachments") is not None:
            msg["attachments"] = args["attachments"]
        if args.get("thread_ts"):
            msg["thread_ts"] = args["thread_ts"]
        if args.get("metadata") is not None:
            msg["metadata"] = args["metadata"]
        return msg

    def _m_chat_postMessage(self, call: Call) -> dict:
        a = call.args
        channel = a.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not a.get("text") and not a.get("blocks") and not a.get("attachments"):
            return {"ok": False, "error": "no_text"}
        ts = self.next_ts()
        msg = self._message(a, ts)
        self.messages[(channel, ts)] = msg
        return {"ok": True, "channel": channel, "ts": ts, "message": msg}

    def _m_chat_update(self, call: Call) -> dict:
        a = call.args
        channel, ts = a.get("channel"), a.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts or (self.strict and (channel, ts) not in self.messages):
            return {"ok": False, "error": "message_not_found"}
        old = self.messages.get((channel, ts), {})
        msg = {**old, **self._message({**old, **a}, ts)}
        if old.get("thread_ts"):
            msg["thread_ts"] = old["thread_ts"]
        self.messages[(channel, ts)] = msg
        return {"ok": True, "channel": channel, "ts": ts, "text": a.get("text", msg.get("text", "")), "message": msg}

    def _m_chat_delete(self, call: Call) -> dict:
        a = call.args
        channel, ts = a.get("channel"), a.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts or (self.strict and (channel, ts) not in self.messages):
            return {"ok": False, "error": "message_not_found"}
        self.messages.pop((channel, ts), None)
        return {"ok": True, "channel": channel, "ts": ts}

    def _m_conversations_replies(self, call: Call) -> dict:
        a = call.args
        channel, ts = a.get("channel"), a.get("ts")
        found = sorted((m for (c, t), m in self.messages.items()
                        if c == channel and (t == ts or m.get("thread_ts") == ts)), key=lambda m: m["ts"])
        if not found:
            return {"ok": False, "error": "thread_not_found"}
        return {"ok": True, "messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _m_chat_postEphemeral(self, call: Call) -> dict:
        a = call.args
        if not a.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not a.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        if not a.get("text") and not a.get("blocks") and not a.get("attachments"):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "message_ts": self.next_ts()}

    def _m_users_info(self, call: Call) -> dict:
        user = self.users.get(call.args.get("user", ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _m_usergroups_users_list(self, call: Call) -> dict:
        group = call.args.get("usergroup", "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _m_conversations_info(self, call: Call) -> dict:
        channel_id = call.args.get("channel", "")
        channel = self.channels.get(channel_id)
        if channel is None:
            if self.strict or not channel_id:
                return {"ok": False, "error": "channel_not_found"}
            channel = {"id": channel_id, "name": f"channel-{channel_id.lower()}", "is_channel": True}
        return {"ok": True, "channel": channel}

    def _m_files_getUploadURLExternal(self, call: Call) -> dict:
        a = call.args
        filename, length = a.get("filename"), a.get("length")
        if not filename or length in (None, ""):
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._file_counter):06d}"
        self._uploads[file_id] = _Upload(filename=str(filename), length=int(length))
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, call: Call) -> dict:
        a = call.args
        entries = a.get("files")
        if not isinstance(entries, list) or not entries:
            return {"ok": False, "error": "invalid_arguments"}
        out = []
        for entry in entries:
            file_id = entry.get("id") if isinstance(entry, dict) else None
            upload = self._uploads.get(file_id or "")
            if upload is None or not upload.uploaded:
                return {"ok": False, "error": "file_not_found"}
        for entry in entries:
            file_id = entry["id"]
            upload = self._uploads[file_id]
            info = {
                "id": file_id,
                "name": upload.filename,
                "title": entry.get("title") or upload.filename,
                "size": len(self.files.get(file_id, b"")),
                "channel_id": a.get("channel_id"),
                "channels": a.get("channels"),
                "thread_ts": a.get("thread_ts"),
                "initial_comment": a.get("initial_comment"),
            }
            self.file_info[file_id] = info
            out.append({"id": file_id, "title": info["title"], "name": info["name"], "size": info["size"]})
        channel = a.get("channel_id")
        if channel and out:
            # Slack shares the files as one message of the bot (in the thread, with thread_ts)
            ts = self.next_ts()
            msg = self._message({"text": a.get("initial_comment") or "", "thread_ts": a.get("thread_ts")}, ts)
            msg["files"] = [{"id": f["id"], "name": f["name"], "user": BOT_USER_ID} for f in out]
            self.messages[(channel, ts)] = msg
        return {"ok": True, "files": out}

    def _m_files_delete(self, call: Call) -> dict:
        file_id = call.args.get("file", "")
        if file_id not in self.file_info:
            return {"ok": False, "error": "file_not_found"}
        self.file_info.pop(file_id)
        self.files.pop(file_id, None)
        for key, msg in list(self.messages.items()):      # the share message shows the file as deleted
            if any(f.get("id") == file_id for f in msg.get("files") or []):
                msg["files"] = [f for f in msg["files"] if f.get("id") != file_id]
        return {"ok": True}

    def _m_apps_connections_open(self, call: Call) -> dict:
        return {"ok": True, "url": self.socket_url}

    # ------------------------------------------------------------------ HTTP: uploads & response_url

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        if request.content_type.startswith("multipart/"):
            parts = await _read_multipart(request)
            data = parts.get("file") or parts.get("filename") or next(iter(parts.values()), b"")
            if isinstance(data, str):
                data = data.encode()
        else:
            data = await request.read()
        call = Call(
            method="upload",
            args={"file_id": file_id, "length": len(data)},
            headers={k.lower(): v for k, v in request.headers.items()},
            time=time.time(),
            path=request.path,
        )
        self.calls.append(call)
        fault = self._take_fault("upload")
        if fault is not None:
            call.failed, call.status = True, fault.status
            return self._fault_response(fault)
        upload = self._uploads.get(file_id)
        if upload is None:
            call.status = 404
            return web.Response(status=404, text="not found", content_type="text/plain")
        upload.uploaded = True
        self.files[file_id] = bytes(data)
        # files.slack.com answers plain text; slack_sdk reads it as such.
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        args = await self._parse_args(request)
        args["_key"] = request.match_info["key"]
        call = Call(
            method="response_url",
            args=args,
            headers={k.lower(): v for k, v in request.headers.items()},
            time=time.time(),
            path=request.path,
        )
        self.calls.append(call)
        fault = self._take_fault("response_url")
        if fault is not None:
            call.failed, call.status = True, fault.status
            return self._fault_response(fault)
        # hooks.slack.com answers "ok" as text/plain (or JSON {"ok": true} for some apps).
        return web.Response(text="ok", content_type="text/plain")

    # ------------------------------------------------------------------ Socket Mode

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self._socket_connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                if not isinstance(data, dict):
                    continue
                envelope_id = data.get("envelope_id")
                self.calls.append(
                    Call(method="socket_ack", args=data, headers={}, time=time.time(), path=request.path)
                )
                if envelope_id:
                    self.acks[envelope_id] = data
                    self._ack_events.setdefault(envelope_id, asyncio.Event()).set()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            if not self._sockets:
                self._socket_connected.clear()
        return ws

    @property
    def socket_connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def wait_socket_connected(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self._socket_connected.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no Socket Mode client connected within {timeout}s") from None

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> str:
        """Push an envelope (``events_api`` | ``interactive`` | ``slash_commands``) to the newest connection.

        Waits up to ``timeout`` for a client to connect. Returns the envelope_id.
        """
        await self.wait_socket_connected(timeout)
        ws = [w for w in self._sockets if not w.closed][-1]
        envelope_id = str(uuid.uuid4())
        self._ack_events.setdefault(envelope_id, asyncio.Event())
        await ws.send_json(
            {
                "envelope_id": envelope_id,
                "type": envelope_type,
                "payload": payload,
                "accepts_response_payload": accepts_response_payload,
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            }
        )
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict:
        """Wait for the client's ``{"envelope_id": ...}`` ack; returns it (with ``payload`` if any)."""
        event = self._ack_events.setdefault(envelope_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"envelope {envelope_id} not acked within {timeout}s") from None
        return self.acks[envelope_id]

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``{"type": "disconnect"}`` to every connection (clients then reconnect)."""
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})


async def _read_multipart(request: web.Request) -> dict:
    """Multipart form fields as str, file parts as bytes."""
    out: dict[str, Any] = {}
    form = await request.post()
    for name, value in form.items():
        if isinstance(value, web.FileField):
            out[name] = value.file.read()
        else:
            out[name] = value
    return out


# ====================================================================== requests FROM Slack


def signed_headers(
    signing_secret: str,
    body: Union[bytes, str],
    timestamp: Optional[int] = None,
    *,
    content_type: Optional[str] = None,
) -> dict:
    """Headers Slack sends with a request to an app: timestamp, ``v0=`` HMAC-SHA256 signature, content type.

    ``content_type`` defaults to JSON for bodies starting with ``{``, else form-encoded.
    """
    if isinstance(body, bytes):
        text = body.decode("utf-8")
    else:
        text = body
    ts = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(signing_secret.encode(), f"v0:{ts}:{text}".encode(), hashlib.sha256).hexdigest()
    if content_type is None:
        content_type = "application/json" if text.lstrip().startswith("{") else "application/x-www-form-urlencoded"
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type,
    }


def event_payload(
    event: dict,
    *,
    event_id: str,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    event_time: Optional[int] = None,
) -> dict:
    """The Events API ``event_callback`` envelope as a dict (also the Socket Mode ``events_api`` payload)."""
    return {
        "token": "verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{event_id}",
    }


def event_body(event: dict, *, event_id: str, team_id: str = TEAM_ID, api_app_id: str = APP_ID) -> bytes:
    """JSON body of an Events API request (POST to the app's events URL)."""
    return json.dumps(event_payload(event, event_id=event_id, team_id=team_id, api_app_id=api_app_id)).encode()


def url_verification_body(challenge: str = "challenge-token") -> bytes:
    return json.dumps({"token": "verification-token", "challenge": challenge, "type": "url_verification"}).encode()


def action_payload(
    action_id: str,
    value: Optional[str],
    *,
    user_id: str,
    channel_id: str,
    message_ts: str,
    thread_ts: Optional[str] = None,
    response_url: Optional[str] = None,
    trigger_id: str = "t",
    selected_option: Union[None, str, dict] = None,
    block_id: str = "actions",
    team_id: str = TEAM_ID,
    message_text: str = "",
    message_blocks: Optional[list] = None,
    api_app_id: str = APP_ID,
) -> dict:
    """A ``block_actions`` interaction payload for a button (or a static_select when ``selected_option`` is given).

    ``selected_option`` may be the option value (its text is the same string) or a full
    ``{"value": ..., "text": {...}}`` dict.
    """
    action_ts = f"{time.time():.6f}"
    if selected_option is None:
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "text": {"type": "plain_text", "text": value or "", "emoji": True},
            "value": value,
            "type": "button",
            "action_ts": action_ts,
        }
    else:
        if isinstance(selected_option, str):
            selected_option = {
                "text": {"type": "plain_text", "text": selected_option, "emoji": True},
                "value": selected_option,
            }
        action = {
            "type": "static_select",
            "action_id": action_id,
            "block_id": block_id,
            "selected_option": selected_option,
            "placeholder": {"type": "plain_text", "text": "Choose", "emoji": True},
            "action_ts": action_ts,
        }
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": api_app_id,
        "team": team_id,
        "text": message_text,
        "ts": message_ts,
        "blocks": message_blocks or [],
    }
    if thread_ts:
        message["thread_ts"] = thread_ts
    name = user_id.lower()
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": name, "name": name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": f"channel-{channel_id.lower()}"},
        "message": message,
        "state": {"values": {}},
        "actions": [action],
    }
    if thread_ts:
        payload["container"]["thread_ts"] = thread_ts
    if response_url is not None:
        payload["response_url"] = response_url
    return payload


def action_body(
    action_id: str,
    value: Optional[str],
    *,
    user_id: str,
    channel_id: str,
    message_ts: str,
    thread_ts: Optional[str] = None,
    response_url: Optional[str] = None,
    trigger_id: str = "t",
    selected_option: Union[None, str, dict] = None,
    block_id: str = "actions",
    team_id: str = TEAM_ID,
) -> bytes:
    """Form-encoded ``payload=<json>`` body of a block_actions request (POST to the app's interactivity URL)."""
    payload = action_payload(
        action_id,
        value,
        user_id=user_id,
        channel_id=channel_id,
        message_ts=message_ts,
        thread_ts=thread_ts,
        response_url=response_url,
        trigger_id=trigger_id,
        selected_option=selected_option,
        block_id=block_id,
        team_id=team_id,
    )
    return urlencode({"payload": json.dumps(payload)}).encode()


def command_payload(
    command: str,
    text: str,
    *,
    user_id: str,
    channel_id: str,
    trigger_id: str = "t",
    response_url: Optional[str] = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
) -> dict:
    """Slash-command fields (all strings) as Slack sends them; also the Socket Mode ``slash_commands`` payload."""
    fields = {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": f"channel-{channel_id.lower()}",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "trigger_id": trigger_id,
    }
    if response_url is not None:
        fields["response_url"] = response_url
    return fields


def command_body(
    command: str,
    text: str,
    *,
    user_id: str,
    channel_id: str,
    trigger_id: str = "t",
    response_url: Optional[str] = None,
    team_id: str = TEAM_ID,
) -> bytes:
    """Form-encoded slash command body (POST to the app's command URL).

    Bolt quirk: bolt's parse_body treats ANY form body containing the substring
    ``payload`` as an interaction and looks for a ``payload=`` field; a command whose
    encoded body contains "payload" anywhere (text "show payload", or a response_url
    with "payload" in it) parses to ``{}`` and matches no listener.
    """
    return urlencode(
        command_payload(
            command,
            text,
            user_id=user_id,
            channel_id=channel_id,
            trigger_id=trigger_id,
            response_url=response_url,
            team_id=team_id,
        )
    ).encode()
