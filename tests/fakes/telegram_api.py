"""A fake Telegram for tests: a real aiohttp server on 127.0.0.1 that answers like the Bot API.

The real python-telegram-bot ``Bot`` talks to it over HTTP::

    fake = FakeTelegram()
    await fake.start()
    bot = Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url)
    async with bot:                                   # initialize(): one getMe
        await bot.send_message(chat_id=1, text="hi")
    [call] = await fake.wait_for("sendMessage")
    await fake.stop()

PTB joins the URLs as ``base_url + token + "/" + method`` and, for downloads,
``base_file_url + token + "/" + file_path`` (``getFile`` answers a relative
``file_path``; PTB prefixes it). So ``base_url`` is ``http://127.0.0.1:P/bot`` and
``base_file_url`` is ``http://127.0.0.1:P/file/bot``.

Updates reach the bot either by ``getUpdates`` (``fake.push_update(...)`` queues one)
or by a webhook (``deliver_webhook(...)`` posts one to the app). The second half of
the module builds update dicts shaped like the ones Telegram sends.

What Telegram does and this fake copies:
- Success is HTTP 200 ``{"ok": true, "result": ...}`` with complete objects (a Message
  has message_id, an integer date, chat{id,type} and ``from``).
- Errors use the HTTP status of ``error_code``: ``{"ok": false, "error_code": 400,
  "description": "Bad Request: ..."}``; flood control is 429 with
  ``"parameters": {"retry_after": N}`` (no Retry-After header needed: PTB reads the body).
- PTB sends form fields (multipart when uploading); non-string values are JSON-encoded
  strings (``chat_id`` "42", ``reply_markup`` '{"inline_keyboard": ...}'). ``Call.args``
  holds them decoded: ints, bools and JSON objects/arrays as Python values.
- A wrong token answers 401 Unauthorized (PTB: ``InvalidToken``); an unknown method
  404 Not Found. Method names are case-insensitive (recorded in canonical spelling).
- getUpdates: updates stay queued until confirmed by a later ``offset``; a negative
  offset keeps only the last ``-offset`` updates; ``allowed_updates`` is remembered
  between calls; 409 Conflict while a webhook is set, and a second concurrent
  getUpdates terminates the first with 409 ("terminated by other getUpdates request").
- sendMessage with ``parse_mode=HTML`` is parsed: unsupported or unbalanced tags
  (e.g. an unescaped ``<``) give 400 "can't parse entities"; the result's ``text`` is the
  plain text plus ``entities``. Texts over 4096 UTF-16 units (after parsing) or empty
  give 400. Only inline keyboards are echoed in the result's ``reply_markup``.
- setWebhook wants an https URL on port 443, 80, 88 or 8443 and a secret_token of
  1-256 ``A-Za-z0-9_-`` characters.
- A request the client gave up on (see ``delay_next``) still takes effect: the message
  is "sent" once the delay ends, as on the real server.

Message ids: one increasing sequence per chat, shared by the update builders (the
customer's messages) and the fake's sends (the bot's messages), as in a real private
chat. Update ids: one module sequence used by the builders and by ``push_update`` for
updates without one. Creating a ``FakeTelegram`` while no other one is running restarts
both sequences, so each test sees update ids 1, 2, ...
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import mimetypes
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Union
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

from fakes.base import FakeServer

__all__ = [
    "ApiError",
    "Call",
    "FakeTelegram",
    "DEFAULT_TOKEN",
    "BOT_ID",
    "BOT_USERNAME",
    "NGINX_502",
    "deliver_webhook",
    "text_update",
    "command_update",
    "photo_update",
    "document_update",
    "callback_update",
]

DEFAULT_TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuv"
BOT_ID = 123456
BOT_FIRST_NAME = "Omnibot"
BOT_USERNAME = "omnibot_test_bot"

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_DOWNLOAD = 20 * 1024 * 1024

# What nginx in front of api.telegram.org answers during an outage (not JSON).
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)

_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Form fields whose value is JSON (objects/arrays) in the Bot API; decoded in Call.args.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "allowed_updates",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "media",
        "commands",
        "scope",
        "results",
        "options",
        "explanation_entities",
        "question_entities",
        "reaction",
        "permissions",
        "message_ids",
        "prices",
    }
)
# Integer fields (chat_id only when numeric: it may be "@channelname").
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "user_id",
        "offset",
        "limit",
        "timeout",
        "message_thread_id",
        "reply_to_message_id",
        "cache_time",
        "max_connections",
        "duration",
        "width",
        "height",
        "until_date",
    }
)
# Free-text fields never decoded, whatever they look like.
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "secret_token",
        "url",
        "ip_address",
        "callback_query_id",
        "inline_message_id",
        "file_id",
        "action",
        "data",
        "description",
        "short_description",
        "name",
        "query",
        "photo",
        "document",
        "video",
        "audio",
        "voice",
        "sticker",
        "animation",
        "business_connection_id",
    }
)
_BOOL_PREFIXES = ("disable_", "is_", "allow_", "show_", "has_", "protect_", "drop_", "can_", "only_")

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_DEFAULT_ALLOWED = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)  # Telegram's default: everything except chat_member, message_reaction(_count)

_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_INT_RE = re.compile(r"^-?\d+$")


# ====================================================================== id sequences

_last_update_id = 0
_last_message_ids: dict[str, int] = {}
_running_fakes = 0


def _reset_sequences() -> None:
    global _last_update_id
    _last_update_id = 0
    _last_message_ids.clear()


def _next_update_id() -> int:
    global _last_update_id
    _last_update_id += 1
    return _last_update_id


def _saw_update_id(update_id: int) -> None:
    global _last_update_id
    _last_update_id = max(_last_update_id, update_id)


def _next_message_id(chat_id: Any) -> int:
    key = str(chat_id)
    _last_message_ids[key] = _last_message_ids.get(key, 0) + 1
    return _last_message_ids[key]


def _saw_message_id(chat_id: Any, message_id: int) -> None:
    key = str(chat_id)
    _last_message_ids[key] = max(_last_message_ids.get(key, 0), int(message_id))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# ====================================================================== data types


@dataclass
class Call:
    """One request the fake received.

    ``method`` is the Bot API method (canonical spelling, e.g. ``"sendMessage"``) or
    ``"download"`` for a GET of a file under ``base_file_url`` (args ``{"file_path"}``).
    ``args`` merges the query string and the body with values decoded (see module doc);
    uploaded file parts are ``bytes`` (their name and type in ``files``). ``failed`` is
    True when the answer was ``ok: false`` (injected or not; ``injected`` tells which),
    ``status`` its HTTP status, ``error`` its description. ``response`` is the
    ``result`` of a successful answer (e.g. the Message dict for sendMessage).
    ``delayed`` is the seconds ``delay_next`` held the answer back.
    """

    method: str
    args: dict
    time: float
    failed: bool = False
    status: int = 200
    headers: dict = field(default_factory=dict)
    response: Any = None
    error: Optional[str] = None
    injected: bool = False
    delayed: float = 0.0
    files: dict = field(default_factory=dict)
    path: str = ""


class ApiError(Exception):
    """Raise from a handler (see ``FakeTelegram.set_handler``) to answer ``ok: false``."""

    def __init__(self, error_code: int, description: str, parameters: Optional[dict] = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters or {}


Handler = Callable[[Call], Union[Any, Awaitable[Any]]]


@dataclass
class _Fault:
    status: int
    description: str
    parameters: dict
    body: Optional[Union[str, bytes]]
    chat_id: Optional[str]
    remaining: int


@dataclass
class _Delay:
    seconds: float
    chat_id: Optional[str]
    remaining: int


@dataclass
class _Poll:
    event: asyncio.Event = field(default_factory=asyncio.Event)
    terminated: bool = False


def _matches_chat(chat_filter: Optional[str], args: dict) -> bool:
    return chat_filter is None or str(args.get("chat_id")) == chat_filter


def _take(queue: list, args: dict) -> Any:
    """First entry of a fault/delay queue whose chat filter matches; consumes one use."""
    for entry in list(queue):
        if entry.remaining <= 0:
            queue.remove(entry)
            continue
        if _matches_chat(entry.chat_id, args):
            entry.remaining -= 1
            if entry.remaining == 0:
                queue.remove(entry)
            return entry
    return None


# ====================================================================== the server


class FakeTelegram(FakeServer):
    """A Telegram Bot API look-alike on 127.0.0.1:<random port>.

    ``strict=True`` adds the errors a lenient fake skips by default: sendMessage to a chat
    no pushed update came from ("chat not found"), editing a message the fake never sent
    ("message to edit not found") or with identical content ("message is not modified"),
    and answerCallbackQuery for an id no pushed update carried ("query is too old").
    ``max_poll_wait`` caps how long a getUpdates long poll waits (``min(timeout, cap)``).
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        strict: bool = False,
        max_poll_wait: float = 1.0,
        bot_username: str = BOT_USERNAME,
        bot_first_name: str = BOT_FIRST_NAME,
    ) -> None:
        if _running_fakes == 0:
            _reset_sequences()
        self.token = token
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else BOT_ID
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict = strict
        self.max_poll_wait = max_poll_wait
        self.calls: list[Call] = []
        self.updates: list[dict] = []          # queued, not yet confirmed
        self.confirmed_offset = 0              # highest getUpdates offset seen (0: none yet)
        self.confirmed: list[dict] = []        # updates dropped by an offset
        self.allowed_updates: Optional[list[str]] = None
        self.webhook: Optional[dict] = None    # setWebhook args while a webhook is set
        self.files: dict[str, dict] = {}       # file_id -> {"content", "file_path", "file_unique_id"}
        self.messages: dict[tuple[str, int], dict] = {}   # (str(chat_id), message_id) -> Message the bot sent
        self.chats: dict[str, dict] = {}       # str(chat_id) -> Chat seen in pushed updates
        self.callback_ids: set[str] = set()
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, list[_Delay]] = {}
        self._handlers: dict[str, Handler] = {}
        self._file_counter = itertools.count(1)
        self._polls: list[_Poll] = []
        self._stopping: Optional[asyncio.Event] = None
        self._methods = {name.lower(): name for name in self._builtin_methods()}

    # ------------------------------------------------------------------ lifecycle

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def start(self) -> None:
        global _running_fakes
        self._stopping = asyncio.Event()
        await super().start()
        _running_fakes += 1

    async def before_stop(self) -> None:
        global _running_fakes
        if self._stopping is not None:
            self._stopping.set()
        for poll in self._polls:
            poll.event.set()
        if self._runner is not None:
            _running_fakes = max(0, _running_fakes - 1)

    @property
    def base_url(self) -> str:
        """``Bot(base_url=...)``: PTB appends the token, then ``/<method>``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """``Bot(base_file_url=...)``: PTB appends the token, then ``/<file_path>``."""
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> dict:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name, "username": self.bot_username}

    # ------------------------------------------------------------------ registries & updates

    def add_file(
        self,
        file_id: str,
        content: bytes,
        file_path: Optional[str] = None,
        *,
        file_unique_id: Optional[str] = None,
    ) -> dict:
        """Register a file for getFile + download. ``file_path`` defaults to ``photos/file_<n>.jpg``
        (n counts from 1 per fake). Returns the File object getFile answers."""
        if file_path is None:
            file_path = f"photos/file_{next(self._file_counter)}.jpg"
        self.files[file_id] = {
            "content": bytes(content),
            "file_path": file_path.lstrip("/"),
            "file_unique_id": file_unique_id or _unique_id(file_id),
        }
        return self._file_object(file_id)

    def _file_object(self, file_id: str) -> dict:
        f = self.files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f["file_unique_id"],
            "file_size": len(f["content"]),
            "file_path": f["file_path"],
        }

    def push_update(self, update: dict) -> int:
        """Queue an update for getUpdates; gives it the next update_id if it has none. Returns the id.

        The chat (and, for private chats, the user's name) is remembered for the fake's answers.
        A callback_query whose message is one the fake sent gets that message (text, keyboard)
        as Telegram would include it.
        """
        update = dict(update)
        if not isinstance(update.get("update_id"), int):
            update["update_id"] = _next_update_id()
        else:
            _saw_update_id(update["update_id"])
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            msg = update.get(key)
            if isinstance(msg, dict):
                self._remember_chat(msg.get("chat"))
                if isinstance(msg.get("chat"), dict) and isinstance(msg.get("message_id"), int):
                    _saw_message_id(msg["chat"].get("id"), msg["message_id"])
        cq = update.get("callback_query")
        if isinstance(cq, dict):
            self.callback_ids.add(str(cq.get("id")))
            msg = cq.get("message")
            if isinstance(msg, dict) and isinstance(msg.get("chat"), dict):
                self._remember_chat(msg["chat"])
                sent = self.messages.get((str(msg["chat"].get("id")), msg.get("message_id")))
                if sent is not None:
                    update["callback_query"] = {**cq, "message": json.loads(json.dumps(sent))}
        self.updates.append(update)
        for poll in self._polls:
            poll.event.set()
        return update["update_id"]

    def _remember_chat(self, chat: Any) -> None:
        if isinstance(chat, dict) and "id" in chat:
            self.chats[str(chat["id"])] = dict(chat)

    def set_handler(self, method: str, handler: Handler) -> None:
        """Answer ``method`` with ``handler(call)`` (sync or async) -> the ``result`` value.

        Raise ``ApiError(code, description)`` for an ``ok: false`` answer. Overrides built-in
        methods too and adds new ones; injected faults and delays still apply first.
        """
        self._handlers[method] = handler
        self._methods[method.lower()] = method

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: Optional[int] = None,
        description: Optional[str] = None,
        times: int = 1,
        chat_id: Union[int, str, None] = None,
        parameters: Optional[dict] = None,
        body: Union[str, bytes, None] = None,
    ) -> None:
        """Make the next ``times`` calls to ``method`` (only those with this ``chat_id``, if given) fail.

        The answer is HTTP ``status`` with ``{"ok": false, "error_code": status, "description": ...}``.
        For 429 ``parameters.retry_after`` is ``retry_after`` (default 1; Telegram always sends
        it; pass 0 to leave it out, which PTB then reports as a plain NetworkError) and the
        description "Too Many Requests: retry after N". ``parameters`` adds more (e.g.
        ``{"migrate_to_chat_id": -100123}``). ``body`` replaces the JSON body entirely, e.g.
        ``NGINX_502``. ``method`` may be ``"download"`` (file GETs).
        PTB maps: 400 BadRequest, 401/404 InvalidToken, 403 Forbidden, 409 Conflict, any
        retry_after RetryAfter, everything else NetworkError.
        """
        params = dict(parameters or {})
        if status == 429:
            ra = 1 if retry_after is None else retry_after
            if ra:
                params["retry_after"] = ra
            if description is None:
                description = f"Too Many Requests: retry after {ra}"
        if description is None:
            description = _DESCRIPTIONS.get(status, "Internal Server Error")
        self._faults.setdefault(self._canonical(method), []).append(
            _Fault(
                status=status,
                description=description,
                parameters=params,
                body=body,
                chat_id=None if chat_id is None else str(chat_id),
                remaining=times,
            )
        )

    def delay_next(
        self, method: str, seconds: float, *, times: int = 1, chat_id: Union[int, str, None] = None
    ) -> None:
        """Hold the answer to the next ``times`` calls to ``method`` back ``seconds`` (to make the client time out).

        The call is recorded on arrival and still takes effect when the delay ends (a message
        is sent even though the client saw a timeout), as with the real Bot API.
        """
        self._delays.setdefault(self._canonical(method), []).append(
            _Delay(seconds=seconds, chat_id=None if chat_id is None else str(chat_id), remaining=times)
        )

    def _canonical(self, method: str) -> str:
        return self._methods.get(method.lower(), method)

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        method = self._canonical(method)
        return [c for c in self.calls if c.method == method]

    def describe_call(self, call: Call) -> str:
        return f"{call.method}({_short_args(call.args)}){f' -> {call.status}' if call.failed else ''}"


    def sent_to(self, chat_id: Union[int, str]) -> list[dict]:
        """Messages the bot sent to a chat (results of sendMessage/sendPhoto/...), oldest first."""
        key = str(chat_id)
        return [m for (c, _), m in sorted(self.messages.items(), key=lambda kv: kv[0][1]) if c == key]

    # ------------------------------------------------------------------ HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return await self._handle_download(request, path[len("/file/bot"):])
        if path.startswith("/bot"):
            token, sep, method = path[len("/bot"):].partition("/")
            if sep and method and "/" not in method:
                return await self._handle_api(request, token, method)
        return _error_response(404, "Not Found")

    async def _parse_args(self, request: web.Request) -> tuple[dict, dict]:
        args: dict[str, Any] = dict(request.query)
        files: dict[str, dict] = {}
        ctype = request.content_type
        if ctype.startswith("multipart/") or ctype == "application/x-www-form-urlencoded":
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    content = value.file.read()
                    files[name] = {"filename": value.filename, "content_type": value.content_type, "content": content}
                    args[name] = content
                else:
                    args[name] = value
        else:
            raw = await request.read()
            if raw:
                text = raw.decode("utf-8", errors="replace")
                if ctype == "application/json" or text.lstrip().startswith("{"):
                    try:
                        body = json.loads(text)
                    except json.JSONDecodeError:
                        body = {"_raw": text}
                    if isinstance(body, dict):
                        args.update(body)
                else:
                    args.update(dict(parse_qsl(text, keep_blank_values=True)))
        return _decode_args(args), files

    async def _handle_api(self, request: web.Request, token: str, method_raw: str) -> web.StreamResponse:
        args, files = await self._parse_args(request)
        method = self._canonical(method_raw)
        call = Call(
            method=method,
            args=args,
            time=time.time(),
            headers={k.lower(): v for k, v in request.headers.items()},
            files=files,
            path=request.path.replace(token, "<token>") if token else request.path,
        )
        self.calls.append(call)
        if token != self.token:
            return self._fail(call, 401, "Unauthorized")
        known = method in self._handlers or method in self._builtin_methods()
        if not known:
            return self._fail(call, 404, "Not Found")

        delay = _take(self._delays.get(method, []), args)
        if delay is not None:
            call.delayed = delay.seconds
            await self._sleep(delay.seconds)
        fault = _take(self._faults.get(method, []), args)
        if fault is not None:
            return self._fail(call, fault.status, fault.description, fault.parameters, fault.body, injected=True)

        try:
            handler = self._handlers.get(method)
            if handler is not None:
                result = handler(call)
                if inspect.isawaitable(result):
                    result = await result
            else:
                result = getattr(self, f"_m_{method}")(call)
                if inspect.isawaitable(result):
                    result = await result
        except ApiError as exc:
            return self._fail(call, exc.error_code, exc.description, exc.parameters)
        call.response = result
        return web.json_response({"ok": True, "result": result})

    def _fail(
        self,
        call: Call,
        status: int,
        description: str,
        parameters: Optional[dict] = None,
        body: Union[str, bytes, None] = None,
        *,
        injected: bool = False,
    ) -> web.Response:
        call.failed, call.status, call.error, call.injected = True, status, description, injected
        if body is not None:
            data = body.encode() if isinstance(body, str) else body
            ctype = "text/html" if data.lstrip().startswith(b"<") else "text/plain"
            return web.Response(body=data, status=status, content_type=ctype)
        return _error_response(status, description, parameters)

    async def _sleep(self, seconds: float) -> None:
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _handle_download(self, request: web.Request, rest: str) -> web.StreamResponse:
        token, _, file_path = rest.partition("/")
        call = Call(
            method="download",
            args={"file_path": file_path},
            time=time.time(),
            headers={k.lower(): v for k, v in request.headers.items()},
            path=request.path.replace(token, "<token>") if token else request.path,
        )
        self.calls.append(call)
        if token != self.token:
            return self._fail(call, 401, "Unauthorized")
        delay = _take(self._delays.get("download", []), call.args)
        if delay is not None:
            call.delayed = delay.seconds
            await self._sleep(delay.seconds)
        fault = _take(self._faults.get("download", []), call.args)
        if fault is not None:
            return self._fail(call, fault.status, fault.description, fault.parameters, fault.body, injected=True)
        for f in self.files.values():
            if f["file_path"] == file_path:
                ctype = mimetypes.guess_type(file_path)[0] or "application/octet-stream"
                call.response = len(f["content"])
                return web.Response(body=f["content"], content_type=ctype)
        return self._fail(call, 404, "Not Found")

    # ------------------------------------------------------------------ Bot API methods

    @classmethod
    def _builtin_methods(cls) -> list[str]:
        return [name[3:] for name in dir(cls) if name.startswith("_m_")]

    def _chat_object(self, chat_id: Any) -> dict:
        known = self.chats.get(str(chat_id))
        if known is not None:
            return dict(known)
        if self.strict:
            raise ApiError(400, "Bad Request: chat not found")
        if isinstance(chat_id, int):
            if chat_id > 0:
                return {"id": chat_id, "type": "private"}
            if str(chat_id).startswith("-100"):
                return {"id": chat_id, "type": "supergroup", "title": "Test supergroup"}
            return {"id": chat_id, "type": "group", "title": "Test group"}
        name = str(chat_id or "").lstrip("@")
        if not name:
            raise ApiError(400, "Bad Request: chat_id is empty")
        cid = -1_001_000_000_000 - zlib.crc32(name.encode()) % 1_000_000
        return {"id": cid, "type": "channel", "title": name, "username": name}

    def _new_bot_message(self, call: Call, **content: Any) -> dict:
        chat = self._chat_object(call.args.get("chat_id"))
        msg: dict[str, Any] = {
            "message_id": _next_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
        }
        msg.update({k: v for k, v in content.items() if v is not None})
        markup = call.args.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup
        self.messages[(str(chat["id"]), msg["message_id"])] = msg
        return msg

    def _text_and_entities(self, text: Any, parse_mode: Any, entities: Any, limit: int, what: str) -> tuple[str, list]:
        text = "" if text is None else str(text)
        mode = str(parse_mode or "").lower()
        if mode == "html":
            plain, ents = _parse_html(text)
        else:
            plain, ents = text, (entities if isinstance(entities, list) else [])
        if _utf16_len(plain) > limit:
            raise ApiError(400, f"Bad Request: {what} is too long")
        return plain, ents

    def _m_getMe(self, call: Call) -> dict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _m_sendMessage(self, call: Call) -> dict:
        a = call.args
        plain, ents = self._text_and_entities(a.get("text"), a.get("parse_mode"), a.get("entities"), MAX_TEXT, "message")
        if not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        return self._new_bot_message(call, text=plain, entities=ents or None)

    def _media_message(self, call: Call, field_name: str) -> dict:
        a = call.args
        caption, ents = self._text_and_entities(
            a.get("caption"), a.get("parse_mode"), a.get("caption_entities"), MAX_CAPTION, "message caption"
        )
        value = a.get(field_name)
        upload = call.files.get(field_name)
        if isinstance(value, (bytes, bytearray)):
            file_id = f"{field_name.upper()}-{len(self.files) + 1}"
            folder = "photos" if field_name == "photo" else "documents"
            name = (upload or {}).get("filename") or f"file_{len(self.files) + 1}"
            self.add_file(file_id, bytes(value), f"{folder}/{name}")
        elif isinstance(value, str) and value in self.files:
            file_id = value
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            file_id = f"{field_name.upper()}-{len(self.files) + 1}"
            self.add_file(file_id, b"", f"{field_name}s/{urlsplit(value).path.rsplit('/', 1)[-1] or 'file'}")
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        f = self._file_object(file_id)
        if field_name == "photo":
            media: Any = [
                {"file_id": file_id, "file_unique_id": f["file_unique_id"], "width": 800, "height": 600,
                 "file_size": f["file_size"]}
            ]
        else:
            media = {
                "file_id": file_id,
                "file_unique_id": f["file_unique_id"],
                "file_name": ((upload or {}).get("filename") or f["file_path"].rsplit("/", 1)[-1]),
                "mime_type": (upload or {}).get("content_type") or "application/octet-stream",
                "file_size": f["file_size"],
            }
        return self._new_bot_message(call, **{field_name: media}, caption=caption or None, caption_entities=ents or None)

    def _m_sendPhoto(self, call: Call) -> dict:
        return self._media_message(call, "photo")

    def _m_sendDocument(self, call: Call) -> dict:
        return self._media_message(call, "document")

    def _edited(self, call: Call, **changes: Any) -> Union[dict, bool]:
        a = call.args
        if a.get("inline_message_id"):
            return True
        chat_id, message_id = a.get("chat_id"), a.get("message_id")
        if chat_id is None or message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        key = (str(chat_id), message_id)
        old = self.messages.get(key)
        if old is None:
            if self.strict:
                raise ApiError(400, "Bad Request: message to edit not found")
            old = {"message_id": message_id, "from": self.bot_user, "chat": self._chat_object(chat_id),
                   "date": int(time.time()), "text": ""}
        new = {**old, **{k: v for k, v in changes.items() if v is not None}}
        if "entities" in changes and not changes["entities"]:
            new.pop("entities", None)
        markup = a.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            new["reply_markup"] = markup
        else:
            new.pop("reply_markup", None)
        if self.strict and {k: v for k, v in new.items() if k != "edit_date"} == {
            k: v for k, v in old.items() if k != "edit_date"
        }:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message",
            )
        new["edit_date"] = int(time.time())
        self.messages[key] = new
        return new

    def _m_editMessageText(self, call: Call) -> Union[dict, bool]:
        a = call.args
        plain, ents = self._text_and_entities(a.get("text"), a.get("parse_mode"), a.get("entities"), MAX_TEXT, "message")
        if not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        return self._edited(call, text=plain, entities=ents)

    def _m_editMessageReplyMarkup(self, call: Call) -> Union[dict, bool]:
        return self._edited(call)

    def _m_deleteMessage(self, call: Call) -> bool:
        key = (str(call.args.get("chat_id")), call.args.get("message_id"))
        if key not in self.messages and self.strict:
            raise ApiError(400, "Bad Request: message to delete not found")
        self.messages.pop(key, None)
        return True

    def _m_answerCallbackQuery(self, call: Call) -> bool:
        cid = str(call.args.get("callback_query_id") or "")
        if not cid or (self.strict and cid not in self.callback_ids):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        return True

    def _m_sendChatAction(self, call: Call) -> bool:
        if call.args.get("action") not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        self._chat_object(call.args.get("chat_id"))
        return True

    def _m_setMyCommands(self, call: Call) -> bool:
        return True

    def _m_getFile(self, call: Call) -> dict:
        file_id = str(call.args.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(self.files[file_id]["content"]) > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        return self._file_object(file_id)

    def _m_setWebhook(self, call: Call) -> bool:
        a = call.args
        url = str(a.get("url") or "")
        if not url:
            self.webhook = None
            return True
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if (parts.port or 443) not in (443, 80, 88, 8443):
            raise ApiError(400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = a.get("secret_token")
        if secret is not None and not _SECRET_RE.match(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if a.get("drop_pending_updates") is True:
            self.updates.clear()
        if isinstance(a.get("allowed_updates"), list):
            self.allowed_updates = a["allowed_updates"]
        self.webhook = dict(a)
        return True

    def _m_deleteWebhook(self, call: Call) -> bool:
        if call.args.get("drop_pending_updates") is True:
            self.updates.clear()
        self.webhook = None
        return True

    def _m_getWebhookInfo(self, call: Call) -> dict:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self.updates)}
        if self.webhook is not None:
            info.update(url=self.webhook["url"], max_connections=int(self.webhook.get("max_connections") or 40),
                        ip_address="127.0.0.1")
            if self.allowed_updates:
                info["allowed_updates"] = list(self.allowed_updates)
        return info

    async def _m_getUpdates(self, call: Call) -> list:
        if self.webhook is not None:
            raise ApiError(
                409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first"
            )
        a = call.args
        offset = a.get("offset")
        if isinstance(offset, int) and offset != 0:
            if offset > 0:
                dropped = [u for u in self.updates if u["update_id"] < offset]
                self.confirmed_offset = max(self.confirmed_offset, offset)
            else:
                dropped = self.updates[: max(0, len(self.updates) + offset)]
                if self.updates[len(dropped):]:
                    self.confirmed_offset = max(self.confirmed_offset, self.updates[len(dropped)]["update_id"])
            self.confirmed.extend(dropped)
            self.updates = [u for u in self.updates if u not in dropped]
        if isinstance(a.get("allowed_updates"), list):
            self.allowed_updates = a["allowed_updates"] or None
        limit = a.get("limit")
        limit = min(max(limit, 1), 100) if isinstance(limit, int) else 100
        timeout = a.get("timeout")
        wait = min(float(timeout), self.max_poll_wait) if isinstance(timeout, (int, float)) and timeout > 0 else 0.0

        for other in self._polls:             # one poller at a time, like Telegram
            other.terminated = True
            other.event.set()
        poll = _Poll()
        self._polls.append(poll)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            while True:
                poll.event.clear()
                batch = self._batch(limit)
                if batch:
                    return batch
                remaining = deadline - loop.time()
                if remaining <= 0 or (self._stopping is not None and self._stopping.is_set()):
                    return []
                try:
                    await asyncio.wait_for(poll.event.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                if poll.terminated:
                    raise ApiError(409, _DESCRIPTIONS[409])
        finally:
            self._polls.remove(poll)

    def _batch(self, limit: int) -> list[dict]:
        allowed = set(self.allowed_updates) if self.allowed_updates else _DEFAULT_ALLOWED
        kept = []
        for u in self.updates:
            kinds = [k for k in u if k != "update_id"]
            if kinds and kinds[0] not in allowed:
                self.confirmed.append(u)          # Telegram never delivers it
            else:
                kept.append(u)
        self.updates = kept
        return [json.loads(json.dumps(u)) for u in kept[:limit]]


def _error_response(status: int, description: str, parameters: Optional[dict] = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def _short_args(args: dict) -> str:
    parts = []
    for key in ("chat_id", "text", "offset", "file_id", "url", "file_path"):
        if key in args:
            value = args[key]
            if isinstance(value, str) and len(value) > 30:
                value = value[:27] + "..."
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


def _decode_args(args: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, str) and key not in _STRING_FIELDS:
            if key in _INT_FIELDS and _INT_RE.match(value):
                value = int(value)
            elif value in ("true", "false") and (key.startswith(_BOOL_PREFIXES) or key.endswith("_notification")):
                value = value == "true"
            elif key in _JSON_FIELDS or value[:1] in ("[", "{"):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
        out[key] = value
    return out


# ---------------------------------------------------------------------- HTML parse mode

_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)>")
_ATTR_RE = re.compile(r"""([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]+|#x[0-9A-Fa-f]+|[A-Za-z]+);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def _parse_html(text: str) -> tuple[str, list]:
    """Telegram's HTML parse mode: plain text + entities, or ApiError 400 "can't parse entities"."""
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, dict]] = []
    entities: list[dict] = []
    i = 0

    def fail(msg: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {msg}")

    while i < len(text):
        ch = text[i]
        if ch == "<":
            at = len(text[:i].encode())
            m = _TAG_RE.match(text, i)
            if m is None:
                raise fail(f"Unexpected end of name token at byte offset {at}")
            closing, name, rest = m.group(1), m.group(2).lower(), m.group(3)
            if closing:
                if not stack:
                    raise fail(f"Unexpected end tag at byte offset {at}")
                if stack[-1][0] != name:
                    raise fail(
                        f'Unmatched end tag at byte offset {at}, expected "</{stack[-1][0]}>", found "</{name}>"'
                    )
                tag, start, attrs = stack.pop()
                if pos16 > start:
                    ent: dict[str, Any] = {"type": _TAGS[tag], "offset": start, "length": pos16 - start}
                    if tag == "a":
                        ent["url"] = attrs.get("href", "")
                    elif tag == "tg-emoji":
                        ent["custom_emoji_id"] = attrs.get("emoji-id", "")
                    elif tag == "blockquote" and "expandable" in attrs:
                        ent["type"] = "expandable_blockquote"
                    entities.append(ent)
            else:
                attrs = {a.group(1).lower(): a.group(2) or a.group(3) or a.group(4) or "" for a in _ATTR_RE.finditer(rest)}
                if "expandable" in rest.split():
                    attrs["expandable"] = ""
                if name not in _TAGS or (name == "span" and attrs.get("class") != "tg-spoiler"):
                    raise fail(f'Unsupported start tag "{name}" at byte offset {at}')
                stack.append((name, pos16, attrs))
            i = m.end()
            continue
        if ch == "&":
            m = _HTML_ENTITY_RE.match(text, i)
            if m is not None:
                ref = m.group(1)
                if ref.startswith("#x"):
                    decoded = chr(int(ref[2:], 16))
                elif ref.startswith("#"):
                    decoded = chr(int(ref[1:]))
                else:
                    decoded = _NAMED.get(ref, m.group(0))
                out.append(decoded)
                pos16 += _utf16_len(decoded)
                i = m.end()
                continue
        out.append(ch)
        pos16 += _utf16_len(ch)
        i += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# ====================================================================== requests FROM Telegram


async def deliver_webhook(
    session: aiohttp.ClientSession,
    url: str,
    update: dict,
    secret_token: Optional[str],
    *,
    timeout: float = 10.0,
) -> int:
    """POST ``update`` as JSON to ``url`` the way Telegram does; returns the HTTP status.

    The ``X-Telegram-Bot-Api-Secret-Token`` header is sent when ``secret_token`` is not None.
    """
    headers = {"Content-Type": "application/json"}
    if secret_token is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
    async with session.post(
        url, data=json.dumps(update).encode(), headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as resp:
        await resp.read()
        return resp.status


def _unique_id(file_id: str) -> str:
    return "AQAD" + format(zlib.crc32(file_id.encode()), "08x")


def _user(user_id: int, first_name: str, last_name: Optional[str], username: Optional[str]) -> dict:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        user["last_name"] = last_name
    if username:
        user["username"] = username
    user["language_code"] = "en"
    return user


def _chat(chat_id: int, chat_type: str, first_name: str, last_name: Optional[str], username: Optional[str],
          title: Optional[str]) -> dict:
    if chat_type == "private":
        chat: dict[str, Any] = {"id": chat_id, "first_name": first_name}
        if last_name:
            chat["last_name"] = last_name
        if username:
            chat["username"] = username
        chat["type"] = "private"
        return chat
    return {"id": chat_id, "title": title or f"Test {chat_type}", "type": chat_type}


def _message(
    chat_id: int,
    *,
    message_id: Optional[int],
    user_id: Optional[int],
    first_name: str,
    last_name: Optional[str],
    username: Optional[str],
    chat_type: str,
    title: Optional[str],
    date: Optional[int],
) -> dict:
    if message_id is None:
        message_id = _next_message_id(chat_id)
    else:
        _saw_message_id(chat_id, message_id)
    if user_id is None:
        user_id = chat_id if chat_type == "private" else 4242
    return {
        "message_id": message_id,
        "from": _user(user_id, first_name, last_name, username),
        "chat": _chat(chat_id, chat_type, first_name, last_name, username, title),
        "date": int(time.time()) if date is None else int(date),
    }


def _update(update_id: Optional[int], key: str, value: dict) -> dict:
    if update_id is None:
        update_id = _next_update_id()
    else:
        _saw_update_id(update_id)
    return {"update_id": update_id, key: value}


def text_update(
    chat_id: int,
    text: str,
    *,
    message_id: Optional[int] = None,
    user_id: Optional[int] = None,
    first_name: str = "Ann",
    last_name: Optional[str] = None,
    username: Optional[str] = None,
    chat_type: str = "private",
    title: Optional[str] = None,
    date: Optional[int] = None,
    entities: Optional[list] = None,
    update_id: Optional[int] = None,
) -> dict:
    """A ``message`` update with text. In a private chat the user id defaults to the chat id."""
    msg = _message(chat_id, message_id=message_id, user_id=user_id, first_name=first_name, last_name=last_name,
                   username=username, chat_type=chat_type, title=title, date=date)
    msg["text"] = text
    if entities:
        msg["entities"] = entities
    return _update(update_id, "message", msg)


def command_update(
    chat_id: int,
    command: str = "/start",
    payload: Optional[str] = None,
    *,
    bot_username: Optional[str] = None,
    **kwargs: Any,
) -> dict:
    """A ``/command [payload]`` message with its ``bot_command`` entity (``t.me/bot?start=payload`` gives
    ``/start payload``). ``bot_username`` makes it ``/start@bot`` as sent in groups. Other kwargs as text_update."""
    if not command.startswith("/"):
        command = "/" + command
    if bot_username:
        command = f"{command}@{bot_username}"
    text = command if payload is None else f"{command} {payload}"
    entity = {"offset": 0, "length": _utf16_len(command), "type": "bot_command"}
    return text_update(chat_id, text, entities=[entity], **kwargs)


def photo_update(
    chat_id: int,
    file_id: str,
    *,
    caption: Optional[str] = None,
    file_size: int = 48_000,
    width: int = 1280,
    height: int = 960,
    message_id: Optional[int] = None,
    user_id: Optional[int] = None,
    first_name: str = "Ann",
    last_name: Optional[str] = None,
    username: Optional[str] = None,
    chat_type: str = "private",
    title: Optional[str] = None,
    date: Optional[int] = None,
    update_id: Optional[int] = None,
) -> dict:
    """A photo message: ``photo`` lists PhotoSizes smallest first; the largest has ``file_id``
    (register its bytes with ``fake.add_file``), the smaller ones derived ids."""
    sizes = []
    scales = [(90, "s"), (320, "m"), (800, "x")]
    for edge, tag in scales:
        if edge < max(width, height):
            f = edge / max(width, height)
            sid = f"{file_id}-{tag}"
            sizes.append({"file_id": sid, "file_unique_id": _unique_id(sid), "file_size": max(1, int(file_size * f * f)),
                          "width": max(1, round(width * f)), "height": max(1, round(height * f))})
    sizes.append({"file_id": file_id, "file_unique_id": _unique_id(file_id), "file_size": file_size,
                  "width": width, "height": height})
    msg = _message(chat_id, message_id=message_id, user_id=user_id, first_name=first_name, last_name=last_name,
                   username=username, chat_type=chat_type, title=title, date=date)
    msg["photo"] = sizes
    if caption is not None:
        msg["caption"] = caption
    return _update(update_id, "message", msg)


def document_update(
    chat_id: int,
    file_id: str,
    file_name: str = "document.pdf",
    mime_type: str = "application/pdf",
    *,
    file_size: int = 12_345,
    caption: Optional[str] = None,
    message_id: Optional[int] = None,
    user_id: Optional[int] = None,
    first_name: str = "Ann",
    last_name: Optional[str] = None,
    username: Optional[str] = None,
    chat_type: str = "private",
    title: Optional[str] = None,
    date: Optional[int] = None,
    update_id: Optional[int] = None,
) -> dict:
    """A document message (``document`` with file_name, mime_type, file_id, file_unique_id, file_size)."""
    msg = _message(chat_id, message_id=message_id, user_id=user_id, first_name=first_name, last_name=last_name,
                   username=username, chat_type=chat_type, title=title, date=date)
    msg["document"] = {"file_name": file_name, "mime_type": mime_type, "file_id": file_id,
                       "file_unique_id": _unique_id(file_id), "file_size": file_size}
    if caption is not None:
        msg["caption"] = caption
    return _update(update_id, "message", msg)


_callback_ids = itertools.count(4_000_000_000_000_000_001)


def callback_update(
    chat_id: int,
    data: str,
    *,
    message_id: int,
    callback_id: Optional[str] = None,
    message_text: str = "Please choose:",
    reply_markup: Optional[dict] = None,
    user_id: Optional[int] = None,
    first_name: str = "Ann",
    last_name: Optional[str] = None,
    username: Optional[str] = None,
    chat_type: str = "private",
    title: Optional[str] = None,
    bot_id: int = BOT_ID,
    bot_username: str = BOT_USERNAME,
    update_id: Optional[int] = None,
) -> dict:
    """A ``callback_query`` for a press on an inline button under the bot's message ``message_id``.

    ``message`` is that bot message (``message_text``, ``reply_markup``); ``fake.push_update``
    replaces it with the real one when the fake sent it.
    """
    if user_id is None:
        user_id = chat_id if chat_type == "private" else 4242
    bot_msg: dict[str, Any] = {
        "message_id": message_id,
        "from": {"id": bot_id, "is_bot": True, "first_name": BOT_FIRST_NAME, "username": bot_username},
        "chat": _chat(chat_id, chat_type, first_name, last_name, username, title),
        "date": int(time.time()) - 5,
        "text": message_text,
    }
    if reply_markup is not None:
        bot_msg["reply_markup"] = reply_markup
    cq = {
        "id": callback_id or str(next(_callback_ids)),
        "from": _user(user_id, first_name, last_name, username),
        "message": bot_msg,
        "chat_instance": str(-(zlib.crc32(f"{bot_id}:{chat_id}".encode()) * 1_000_003)),
        "data": data,
    }
    return _update(update_id, "callback_query", cq)
