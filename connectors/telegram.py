"""Telegram: customers in private chats, through python-telegram-bot's ``Bot``.

Both ways in: a webhook served by the bot's own aiohttp server (Telegram's
``secret_token`` checked on every request) or long polling with our own
``getUpdates`` loop. In both, an update is stored before Telegram is told it
arrived: the webhook answers 200 only after the message is persisted, and the
poller confirms an update (the next offset) only after it is persisted. PTB's
own Updater and webhook server acknowledge first and would lose messages in a
crash, so they are not used.

The same message is one message: it is keyed on (chat_id, message_id), since
Telegram has delivered one message under two update ids, and update_id itself
restarts at a random value after a week of silence.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import html
import json
import logging
import os
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web
from telegram import (Bot, CallbackQuery, Chat, Document, InlineKeyboardMarkup,
                      Message as TgMessage, MessageEntity, PhotoSize, ReplyParameters, Update, User)
from telegram.error import (BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter,
                            TelegramError, TimedOut)
from telegram.request import RequestData

from bot.cluster import Cluster
from bot.config import TelegramConfig
from bot.errors import PermanentSendError, StorageUnavailable, TransientSendError
from bot.logs import RedactingFilter
from bot.media import MediaStore, sniff_mime
from bot.model import Attachment, Inbound
from bot.public import EXPIRED, PUBLIC_REPLY, STORY_PAYLOAD, TOKEN_PREFIX, PublicPlaces, PublicTexts, public_reply
from bot.storage import OutboxItem, Store
from connectors.base import RETRY_AFTER_UNAVAILABLE, read_body
from connectors.telegram_http import AiohttpRequest

log = logging.getLogger(__name__)

# Opt in to PTB's coming behaviour (RetryAfter.retry_after as a timedelta); without it PTB 22
# warns on every 429. retry_after_seconds() below reads either form.
os.environ.setdefault("PTB_TIMEDELTA", "1")

MAX_TEXT = 4096
_TOKEN_LOGGERS = ("httpx", "httpcore", "aiohttp.client", "connectors.telegram_http", "telegram", "telegram.Bot",
                  "telegram.ext", "telegram.request")
OFFSET_KEY = "telegram:offset"
POLLER_LEASE = "telegram-poller"
ALLOWED_UPDATES = ["message", "callback_query"]
_NO_PREVIEW = {"is_disabled": True}
_OK = b'{"ok": true}'      # the webhook's answer once an update is stored
_FAST_KEYS = frozenset({"message_id", "from", "chat", "date", "text"})   # TelegramConnector.fast_text      # what PTB sends for disable_web_page_preview=True
# What a wrongly shaped update makes PTB's de_json or our normalisation raise.
_SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


class MalformedUpdate(ValueError):
    """The input is not a Telegram update of the shape the Bot API documents.

    The reason names the problem, never the update's content (it may carry customer text).
    """


def parse_update(data: Any, bot: Bot) -> Update:
    """A decoded JSON value as a PTB ``Update``, or MalformedUpdate.

    PTB's ``de_json`` raises assorted errors on wrong types (``"message": 5``,
    ``"from": "x"``) and accepts others silently (no ``chat``, a number as text);
    :meth:`TelegramConnector.normalize` checks what it uses.
    """
    if not isinstance(data, dict):
        raise MalformedUpdate("an update is a JSON object")
    uid = data.get("update_id")
    if not isinstance(uid, int) or isinstance(uid, bool):
        raise MalformedUpdate("update_id is missing or not an integer")
    try:
        update = Update.de_json(data, bot)
    except _SHAPE_ERRORS as exc:
        raise MalformedUpdate(f"not a Telegram update ({type(exc).__name__} while parsing)") from None
    if update is None:
        raise MalformedUpdate("not a Telegram update")
    return update


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise MalformedUpdate(what)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _check_user(user: Any, where: str) -> None:
    _need(isinstance(user, User) and _is_int(user.id) and isinstance(user.first_name, str)
          and _opt_str(user.last_name), f"{where} is not a user")


def _check_chat(chat: Any, where: str) -> None:
    _need(isinstance(chat, Chat) and _is_int(chat.id) and isinstance(chat.type, str), f"{where} is not a chat")


@dataclasses.dataclass(frozen=True)
class Incoming:
    """One update, normalised: the customer message to store (attachments still to download)."""

    inbound: Inbound
    files: tuple[tuple[str, str, str], ...] = ()     # (file_id, name, kind) to download
    callback: CallbackQuery | None = None            # a button press, answered once stored
    start_token: str | None = None                   # /start with a public link's one-time token


@dataclasses.dataclass(frozen=True)
class GroupMessage:
    """A message in a group or supergroup (public.mode private_link): answered, if at all, with a link."""

    chat_id: int
    message_id: int
    title: str
    user_id: int
    text: str                 # without the bot's @username
    to_bot: bool              # mentions the bot, replies to it, or is a /command@bot
    language_code: str | None = None   # the sender's app language (the public reply's language hint)


def retry_after_seconds(exc: RetryAfter) -> float:
    """RetryAfter.retry_after is an int or a timedelta depending on PTB_TIMEDELTA (22.x)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split at line breaks (else spaces, else hard) so each escaped chunk fits Telegram's limit."""
    chunks: list[str] = []
    rest = text
    while len(html.escape(rest, quote=False)) > limit:
        cut = limit
        while len(html.escape(rest[:cut], quote=False)) > limit:
            cut -= 64
        window = rest[:cut]
        at = max(window.rfind("\n"), window.rfind(" "))
        at = at if at > cut // 2 else cut
        chunks.append(rest[:at])
        rest = rest[at:].lstrip("\n ")
    chunks.append(rest)
    return chunks


class _PlainData(RequestData):
    """Bot API parameters that are JSON values already (str, int, dicts of them), as PTB's
    ``RequestData`` would give them after converting each one: no files, nothing to convert."""

    __slots__ = ("_plain",)

    def __init__(self, parameters: dict[str, Any]) -> None:
        super().__init__()
        self._plain = parameters

    @property
    def parameters(self) -> dict[str, Any]:
        return self._plain

    @property
    def json_parameters(self) -> dict[str, str]:
        # what PTB's RequestParameter.json_value gives: strings as they are, anything else as JSON
        # (request classes other than ours, e.g. PTB's HTTPXRequest, send this form)
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self._plain.items() if v is not None}


class _Bot(Bot):
    """PTB's Bot, plus getUpdates and sendMessage without parsing the answer.

    ``Bot.get_updates`` parses the whole batch at once: one malformed update raises for all of
    them (and PTB logs the raw batch, customer text included, at CRITICAL). We parse each
    update on its own instead, so a bad one is skipped and the rest are stored.

    ``Bot.send_message`` builds a whole ``Message`` (chat, sender, entities ...) from Telegram's
    answer, of which a reply needs the message id only: that parse, with PTB's argument
    handling around it, cost about as much CPU as the rest of sending (issue 20). Both go
    through PTB's own request objects (getUpdates through ``Bot._post``, as every Bot method
    does; sendMessage straight to the request object's ``post``, where ``_post`` ends too), so
    errors are PTB's (``BadRequest``, ``RetryAfter`` ...) exactly as before.
    """

    async def send_text(self, *, chat_id: int, text: str, parse_mode: str | None = None,
                        reply_markup: dict[str, Any] | None = None) -> str:
        """``sendMessage`` without link previews; the sent message's id ("" if Telegram's
        answer lacks one: the message was accepted, so it is not sent again)."""
        data: dict[str, Any] = {"chat_id": chat_id, "text": text, "link_preview_options": _NO_PREVIEW}
        if parse_mode is not None:
            data["parse_mode"] = parse_mode
        if reply_markup is not None:
            data["reply_markup"] = reply_markup
        # Straight to the request object's post (PTB's own status-code and error mapping, as every
        # Bot method ends in): Bot._post's defaults, None-filtering and RequestParameter
        # conversion have nothing to do for these plain values, and cost ~15 % of a send (issue 20).
        result = await self._request[1].post(url=f"{self._base_url}/sendMessage", request_data=_PlainData(data))
        mid = result.get("message_id") if isinstance(result, dict) else None
        return str(mid) if _is_int(mid) else ""

    async def get_raw_updates(self, *, offset: int | None, timeout: int,
                              allowed_updates: list[str]) -> Any:
        data = {"timeout": timeout, "offset": offset, "allowed_updates": allowed_updates}
        # "getUpdates" selects the long-poll request object (its read timeout covers `timeout`).
        return await self._post("getUpdates", data)


# Telegram's refusals that mean "this customer cannot be reached here", as agents should read them.
_UNREACHABLE = (
    ("bot was blocked by the user", "the customer blocked the bot on Telegram"),
    ("user is deactivated", "the customer's Telegram account was deleted"),
    ("chat not found", "Telegram does not know this chat (chat not found)"),
    ("bot was kicked", "the bot was removed from this Telegram chat"),
    ("bot can't initiate conversation", "the customer has not started a chat with the bot on Telegram"),
)


def refusal_reason(exc: Exception) -> str:
    """A short, customer-agnostic reason for a refused send (Telegram's own words otherwise).

    Telegram's error descriptions never carry the message text, so they are safe to show and log.
    """
    text = str(exc)
    low = text.lower()
    for needle, reason in _UNREACHABLE:
        if needle in low:
            return reason
    if isinstance(exc, InvalidToken):
        return "Telegram refused the bot's token"
    return f"Telegram refused the message: {text}"[:300]


class TelegramConnector:
    """The Telegram channel.

    Args:
        config: the ``telegram:`` section.
        accept: the runtime's ``accept`` (persist, then schedule the answer).
        store: for the polling offset and seen update ids.
        media: where downloaded photos and documents go (the store's ``media`` table).
        cluster: with clustering on (PostgreSQL), polling runs on one instance only: the holder
            of the lease ``telegram-poller``; the others stand by (webhook mode is unaffected).
        lease_ttl: seconds a poller's lease lasts unless renewed (a dead poller's successor
            starts within about this long).
        lease_interval: seconds between attempts to take the lease, and between renewals.
        is_complaint: the flows' complaint detector, for group messages (public.mode private_link);
            without it only messages to the bot get the private link.
        texts: the public reply and the spent-link word in the customer's language
            (:class:`bot.public.PublicTexts`); without it, English (or ``public.message``).
    """

    name = "telegram"

    def __init__(self, *, config: TelegramConfig, accept: Callable[[Inbound], Any], store: Store,
                 media: MediaStore, cluster: Cluster | None = None, lease_ttl: float = 10.0,
                 lease_interval: float = 2.0,
                 is_complaint: Callable[[str], Awaitable[bool]] | None = None,
                 texts: PublicTexts | None = None) -> None:
        self.config = config
        self.is_complaint = is_complaint
        self.texts = texts
        self.public = PublicPlaces(store, link_minutes=config.public.link_minutes)
        self.cluster = cluster if cluster is not None and cluster.enabled else None
        self.lease_ttl = lease_ttl
        self.lease_interval = lease_interval
        self.role: str | None = None    # with clustering on: "leader" (polling) or "standby"
        self.accept = accept
        self.store = store
        self.media = media
        token = config.token.get_secret_value()
        # Bot API URLs carry the token: PTB's Bot logs its base URL at DEBUG when built, and a
        # library's error text may quote a URL (httpx, if used, logs every URL at INFO). Whoever
        # configures logging, these records are redacted at the source. Logger filters don't reach
        # child loggers, so each logger is named. Requests go through aiohttp (connectors/
        # telegram_http.py): httpx's per-request CPU cost was most of a reply's (issue 20).
        self._redact = RedactingFilter([token])
        for name in _TOKEN_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        self.bot = _Bot(token, base_url=config.api_url, base_file_url=config.file_url,
                       request=AiohttpRequest(32, read_timeout=15, write_timeout=15),
                       get_updates_request=AiohttpRequest(2, read_timeout=config.poll_timeout + 10))
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self.state = "starting"     # /readyz: starting | ok | degraded: ... | failing: ...
        # Polling, when an update cannot be stored: first and longest pause before asking again.
        self.store_retry_delays = (1.0, 60.0)
        self._store_delay: float | None = None

    # -- wiring ----------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        if self.config.mode == "webhook":
            app.router.add_post("/telegram/webhook", self.webhook)

    def readiness(self) -> str:
        """For ``/readyz``: ``ok``, ``starting``, ``degraded: why`` (Telegram unreachable: the
        instance still serves), or ``failing: why`` (the token was refused: nothing will work)."""
        return self.state

    async def start(self) -> None:
        """Connect in the background: an unreachable Telegram never blocks start-up."""
        self._tasks.append(asyncio.create_task(self._run(), name="telegram"))

    async def stop(self) -> None:
        for name in _TOKEN_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.cluster is not None and self.role == "leader":
            self.role = None
            try:   # the next poller starts at once instead of after the lease runs out
                await self.store.release_lease(POLLER_LEASE, self.cluster.id)
            except Exception as exc:  # noqa: BLE001 - stopping: the lease lapses by itself
                log.info("telegram poller lease not released (%s); it lapses in %.0f s", exc, self.lease_ttl)
        if self._ready.is_set():
            try:
                await self.bot.shutdown()
            except Exception:  # shutting down: nothing left to do about it
                log.debug("telegram shutdown failed", exc_info=True)

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.bot.initialize()          # getMe
                break
            except InvalidToken:
                log.error("Telegram refused the bot token; check telegram.token (from @BotFather)")
                self.state = "failing: Telegram refused the bot token"
                return
            except TelegramError as exc:
                log.warning("cannot reach Telegram (%s); retrying in %.0f s", exc, delay)
                self.state = "degraded: cannot reach Telegram"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300)
        self._ready.set()
        self.state = "ok"
        log.info("Telegram connected as @%s (%s)", self.bot.username, self.config.mode)
        if self.config.mode == "webhook":
            if self.config.webhook_url:
                await self._retrying(lambda: self.bot.set_webhook(
                    self.config.webhook_url, secret_token=self.config.secret_token.get_secret_value(),
                    allowed_updates=ALLOWED_UPDATES), "setWebhook")
            return
        if self.cluster is not None:
            await self._lead()
            return
        await self._retrying(lambda: self.bot.delete_webhook(drop_pending_updates=False), "deleteWebhook")
        await self._poll()

    async def _retrying(self, call: Callable[[], Any], what: str) -> None:
        delay = 1.0
        while True:
            try:
                await call()
                return
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
            except TelegramError as exc:
                log.warning("Telegram %s failed (%s); retrying in %.0f s", what, exc.message, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300)

    # -- one poller per cluster -----------------------------------------------------

    async def _take_lease(self) -> bool:
        """Take or renew the poller lease; False when another instance holds it or storage failed."""
        assert self.cluster is not None
        try:
            return await self.store.take_lease(POLLER_LEASE, self.cluster.id, now=self.cluster.clock(),
                                               ttl=self.lease_ttl)
        except asyncio.CancelledError:
            raise
        except StorageUnavailable as exc:
            log.info("telegram poller lease not taken (%s)", exc)
            return False
        except Exception:  # noqa: BLE001 - the election must outlive any one bad round
            log.exception("telegram poller lease failed")
            return False

    def _set_role(self, role: str) -> None:
        if role != self.role:
            self.role = role
            log.info("telegram: this instance is the %s (%s)", role,
                     "polling" if role == "leader" else "another instance polls")

    async def _lead(self) -> None:
        """Poll while this instance holds the lease; stand by (and keep trying) otherwise.

        The holder renews the lease every ``lease_interval`` seconds while it polls, and stops
        polling at once when a renewal fails. The offset is read from storage at each start, so
        the new poller continues where the old one stopped.
        """
        while True:
            if not await self._take_lease():
                self._set_role("standby")
                self.state = "ok"          # a standby instance serves everything else
                await asyncio.sleep(self.lease_interval)
                continue
            self._set_role("leader")
            poller = asyncio.create_task(self._leader_poll(), name="telegram-poller")
            try:
                while True:
                    await asyncio.wait({poller}, timeout=self.lease_interval)
                    if poller.done():
                        break
                    if not await self._take_lease():
                        log.warning("telegram: lost the poller lease; polling stops here")
                        break
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
            if poller.done() and not poller.cancelled() and poller.exception() is not None:
                log.error("telegram poller failed (%s); trying again", poller.exception())
            self._set_role("standby")
            self.state = "ok"
            await asyncio.sleep(self.lease_interval)

    async def _leader_poll(self) -> None:
        await self._retrying(lambda: self.bot.delete_webhook(drop_pending_updates=False), "deleteWebhook")
        await self._poll()

    # -- receiving ---------------------------------------------------------------

    async def _poll(self) -> None:
        offset = int(await self.store.get_meta(OFFSET_KEY) or 0)
        delay = 1.0
        while True:
            try:
                raw = await self.bot.get_raw_updates(offset=offset or None, timeout=self.config.poll_timeout,
                                                     allowed_updates=ALLOWED_UPDATES)
                delay, self.state = 1.0, "ok"
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except TelegramError as exc:
                log.warning("getUpdates failed (%s); retrying in %.0f s", exc, delay)
                self.state = "degraded: getUpdates failed"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            offset = await self._handle_batch(raw if isinstance(raw, list) else [], offset)

    async def _handle_batch(self, raw: list[Any], offset: int) -> int:
        """Store each update of a getUpdates answer in order; return the offset to confirm next.

        A malformed update is skipped (one WARNING) and confirmed, so Telegram drops it. An
        update that could not be stored is not confirmed: the batch stops there and, after a
        growing pause, the next getUpdates brings it (and those after it) again.
        """
        for item in raw:
            uid = item.get("update_id") if isinstance(item, dict) else None
            if not _is_int(uid):
                log.warning("telegram update without an integer update_id skipped")
                continue
            try:
                incoming = self.fast_text(item) or self.normalize(parse_update(item, self.bot), item)
            except MalformedUpdate as exc:
                log.warning("telegram update %s skipped: %s", uid, exc)
            else:
                try:
                    await self._store_incoming(incoming)
                except StorageUnavailable as exc:
                    delay = self._next_store_delay()
                    log.warning("telegram update %s not stored (%s); not confirmed, retrying in %.1f s",
                                uid, exc, delay)
                    await asyncio.sleep(delay)
                    return offset
                except Exception:
                    # Not confirmed: the same update comes back with the next getUpdates.
                    log.exception("telegram update %s could not be stored; will retry", uid)
                    await asyncio.sleep(self._next_store_delay())
                    return offset
                self._store_delay = None
            # Confirm only what is stored (or refused for good): getUpdates(offset) drops it.
            offset = max(offset, uid + 1)
            await self._save_offset(offset)
        return offset

    def _next_store_delay(self) -> float:
        """Pause before asking again for an update that could not be stored: doubles each time."""
        delay = self._store_delay or self.store_retry_delays[0]
        self._store_delay = min(delay * 2, self.store_retry_delays[1])
        return delay

    async def _save_offset(self, offset: int) -> None:
        # Only for restarts: Telegram learns the offset from the next getUpdates, and a message
        # delivered again after a restart is deduped on (chat, message id).
        try:
            await self.store.set_meta(OFFSET_KEY, str(offset))
        except StorageUnavailable as exc:
            log.warning("telegram offset %s not saved (%s)", offset, exc)

    async def webhook(self, request: web.Request) -> web.Response:
        expected = self.config.secret_token.get_secret_value()
        got = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not expected or not hmac.compare_digest(got.encode(), expected.encode()):
            return web.json_response({"error": "bad secret token"}, status=401)
        body = await read_body(request)
        if body is None:
            return web.json_response({"error": "the body ended early"}, status=400)
        try:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):       # incl. UnicodeDecodeError
                raise MalformedUpdate("the body is not JSON") from None
            incoming = self.fast_text(data)
            if incoming is None:
                incoming = self.normalize(parse_update(data, self.bot), data)
        except MalformedUpdate as exc:
            # 400, not 500: Telegram would redeliver a 5xx again and again.
            log.warning("telegram webhook request refused (400): %s", exc)
            return web.json_response({"error": f"malformed update: {exc}"}, status=400)
        try:
            await self._store_incoming(incoming)
        except StorageUnavailable as exc:
            log.warning("telegram update %s not stored (%s); answered 503, Telegram delivers it again",
                        data["update_id"], exc)
            return web.json_response({"error": "storage unavailable; try again later"}, status=503,
                                     headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})
        except Exception:
            log.exception("telegram update %s could not be stored", data["update_id"])
            return web.json_response({"error": "try again"}, status=500)   # Telegram retries
        return web.Response(body=_OK, content_type="application/json")

    async def handle_update(self, update: Update) -> None:
        """Store one update as a customer message (or ignore it, with a reason in the log).

        Raises:
            MalformedUpdate: the update lacks what a message or button press must have.
            StorageUnavailable: it could not be stored (do not confirm it).
        """
        await self._store_incoming(self.normalize(update))

    async def _store_incoming(self, incoming: Incoming | GroupMessage | None) -> None:
        if incoming is None:
            return
        if isinstance(incoming, GroupMessage):
            await self._group_message(incoming)
            return
        if incoming.start_token is not None:
            await self._start_with_token(incoming)
            return
        inbound = incoming.inbound
        if incoming.files:
            chat_id = inbound.external_id
            inbound = dataclasses.replace(inbound, attachments=tuple(await self._attachments(chat_id, incoming.files)))
        await self.accept(inbound)
        if incoming.callback is not None:
            try:   # stops the button's spinner; stored already, so a failure here loses nothing
                await incoming.callback.answer()
            except TelegramError as exc:
                log.info("answerCallbackQuery failed: %s", exc)

    def normalize(self, update: Update, raw: dict[str, Any] | None = None) -> Incoming | GroupMessage | None:
        """The customer message in ``update``, a :class:`GroupMessage` (``telegram.public.mode``
        private_link), or None for updates we ignore (edits, channel posts, group chats in mode
        ignore). Pure: no I/O, so a shape error here is the update's fault, never storage's.

        Args:
            update: the parsed update.
            raw: the JSON it was parsed from, kept as the message's ``raw``; without it,
                ``update.to_dict()`` (which costs more than parsing did).

        Raises:
            MalformedUpdate: a field this uses is missing or of the wrong type.
        """
        try:
            if update.callback_query is not None:
                return self._normalize_callback(update, raw)
            return self._normalize_message(update, raw)
        except MalformedUpdate:
            raise
        except _SHAPE_ERRORS as exc:
            raise MalformedUpdate(f"unexpected shape ({type(exc).__name__})") from None

    def _normalize_message(self, update: Update, raw: dict[str, Any] | None) -> Incoming | GroupMessage | None:
        msg = update.message
        if msg is None:
            kind = ("channel post" if update.channel_post or update.edited_channel_post else
                    "edited message" if update.edited_message else "update")
            log.info("telegram %s %s ignored (only new messages and button presses are handled)", kind,
                     update.update_id)
            return None
        _need(isinstance(msg, TgMessage), "message is not a message")
        _check_chat(msg.chat, "message.chat")
        _need(_is_int(msg.message_id), "message.message_id is not an integer")
        _need(isinstance(msg.date, datetime), "message.date is missing or not a date")
        _need(_opt_str(msg.text) and _opt_str(msg.caption), "message text or caption is not a string")
        user = msg.from_user
        if user is not None:
            _check_user(user, "message.from")
        files = self._files(msg)
        if msg.chat.type in ("group", "supergroup") and self.config.public.mode == "private_link":
            return self._group(msg)
        if not self._chat_allowed(msg):
            return None
        return self._incoming(chat_id=msg.chat.id, chat_type=msg.chat.type, message_id=msg.message_id,
                              date=msg.date, text=msg.text or msg.caption or "",
                              sender_name=user.full_name if user else "",
                              language_code=user.language_code if user else None, files=files,
                              raw=raw if raw is not None else update.to_dict())

    def _incoming(self, *, chat_id: int, chat_type: str, message_id: int, date: datetime, text: str,
                  sender_name: str, language_code: Any, files: tuple[tuple[str, str, str], ...],
                  raw: Mapping[str, Any]) -> Incoming:
        """A checked customer message (both paths, :meth:`normalize` and :func:`fast_text`) as Incoming."""
        payload, attributes, token = None, {}, None
        if text.startswith("/start"):
            arg = text[len("/start"):].strip()
            if arg.startswith(TOKEN_PREFIX) and chat_type == "private":
                token = arg[:64]        # a one-time secret: not kept on the customer record
            elif arg:
                attributes["telegram_start"] = arg[:64]
            payload = self.config.start_payload or None
        elif text.startswith("/help"):
            payload = self.config.help_payload or None
        if isinstance(language_code, str) and language_code.strip():
            # the app's language: the first messages' language until they show another (README "Languages")
            attributes["language_code"] = language_code.strip()[:16]
        return Incoming(Inbound(
            channel=self.name, external_id=str(chat_id), platform_message_id=f"{chat_id}:{message_id}",
            text=text, sender_name=sender_name, payload=payload,
            customer_attributes=attributes, sent_at=date, raw=raw), files=files, start_token=token)

    def fast_text(self, data: Any) -> Incoming | None:
        """A private chat's plain text message read straight from the decoded JSON, or None: then
        the update takes the full path (:func:`parse_update`, :meth:`normalize`).

        Most updates are this one shape, ``{"update_id", "message": {"message_id", "from", "chat",
        "date", "text"}}``, and PTB's ``Update.de_json`` builds five objects for it (~130 us, more
        than the rest of receiving it; issue 20). Only that shape is read here, every field this
        uses is checked as the full path checks it, and anything else (another key, a wrong
        type, a group, a caption, entities, a photo, a button press) returns None, so errors and
        every other kind of update are handled exactly as before. Same result as the full path
        (tests/connectors/test_telegram_fast.py).
        """
        if type(data) is not dict or len(data) != 2 or type(data.get("update_id")) is not int:
            return None
        msg = data.get("message")
        if type(msg) is not dict or not msg.keys() <= _FAST_KEYS:
            return None
        chat, mid, date, text = msg.get("chat"), msg.get("message_id"), msg.get("date"), msg.get("text")
        # type() is int: not a bool, as _is_int
        if not (type(chat) is dict and chat.get("type") == "private" and type(chat.get("id")) is int
                and type(mid) is int and type(date) is int and type(text) is str):
            return None
        user = msg.get("from")
        name, lang = "", None
        if user is not None:
            if not (type(user) is dict and type(user.get("id")) is int and type(user.get("is_bot")) is bool):
                return None
            first, last = user.get("first_name"), user.get("last_name")
            if type(first) is not str or not (last is None or type(last) is str):
                return None
            name = f"{first} {last}" if last else first          # PTB's User.full_name
            lang = user.get("language_code")
        try:
            sent_at = datetime.fromtimestamp(date, timezone.utc)   # PTB's from_timestamp
        except (OverflowError, OSError, ValueError):
            return None
        return self._incoming(chat_id=chat["id"], chat_type="private", message_id=mid, date=sent_at, text=text,
                              sender_name=name, language_code=lang, files=(), raw=data)

    def _normalize_callback(self, update: Update, raw: dict[str, Any] | None) -> Incoming | None:
        cq = update.callback_query
        _need(isinstance(cq, CallbackQuery) and isinstance(cq.id, str), "callback_query has no id")
        _check_user(cq.from_user, "callback_query.from")
        _need(_opt_str(cq.data), "callback_query.data is not a string")
        msg = cq.message
        if msg is not None:
            _check_chat(msg.chat, "callback_query.message.chat")
        chat_id = msg.chat.id if msg is not None else cq.from_user.id
        if msg is not None and isinstance(msg, TgMessage) and not self._chat_allowed(msg):
            return None
        title = cq.data or ""
        markup = getattr(msg, "reply_markup", None)
        for row in (markup.inline_keyboard if isinstance(markup, InlineKeyboardMarkup) else ()):
            for b in row:
                if b.callback_data == cq.data and isinstance(b.text, str):
                    title = b.text
        return Incoming(Inbound(
            channel=self.name, external_id=str(chat_id), platform_message_id=f"cb:{cq.id}", text=title,
            sender_name=cq.from_user.full_name, payload=cq.data,
            raw=raw if raw is not None else update.to_dict()), callback=cq)

    def _chat_allowed(self, msg: TgMessage) -> bool:
        if msg.chat.type == "private" or self.config.public.mode == "answer":
            return True
        log.info("telegram %s chat %s ignored (telegram.public.mode: %s)", msg.chat.type, msg.chat.id,
                 self.config.public.mode)
        return False

    # -- public groups: complaints move to a private chat ---------------------------

    def _group(self, msg: TgMessage) -> GroupMessage | None:
        """A group message as a :class:`GroupMessage`; None for one without a sender or text."""
        user = msg.from_user
        text = msg.text or msg.caption or ""
        if user is None or user.is_bot or not text.strip():
            log.info("telegram %s chat %s: message %s ignored (no person or no text)", msg.chat.type,
                     msg.chat.id, msg.message_id)
            return None
        me = (self.bot.username or "").lower() if self._ready.is_set() else ""
        to_bot = False
        entities = msg.entities or msg.caption_entities or ()
        for e in entities:
            _need(isinstance(e, MessageEntity) and _is_int(e.offset) and _is_int(e.length),
                  "message.entities is not a list of entities")
            part = msg.parse_entity(e) if msg.text else msg.parse_caption_entity(e)
            if me and ((e.type == MessageEntity.MENTION and part.lower() == f"@{me}")
                       or (e.type == MessageEntity.BOT_COMMAND and part.lower().endswith(f"@{me}"))):
                to_bot = True
        replied = msg.reply_to_message
        if isinstance(replied, TgMessage) and isinstance(replied.from_user, User) and me:
            to_bot = to_bot or (replied.from_user.is_bot and (replied.from_user.username or "").lower() == me)
        if me:
            text = " ".join(w for w in text.split(" ") if w.lower().rstrip(",.:!?") != f"@{me}").strip()
        if text.startswith("/"):
            text = ""         # a command to the bot (/help@bot) carries no story
        lc = user.language_code if isinstance(user.language_code, str) else None
        return GroupMessage(chat_id=msg.chat.id, message_id=msg.message_id, title=msg.chat.title or "",
                            user_id=user.id, text=text, to_bot=to_bot, language_code=lc)

    async def _group_message(self, g: GroupMessage) -> None:
        """Answer a complaint or a message to the bot with the public text and a one-time link.

        Other group messages are neither answered nor stored (the bot is not their addressee;
        group chatter is other people's business). The public reply is sent here, not through
        the outbox: it belongs to no conversation. A failed send is logged and not retried.
        """
        complaint = False
        if not g.to_bot and self.is_complaint is not None and g.text:
            try:
                complaint = await self.is_complaint(g.text)
            except Exception:  # noqa: BLE001 - a broken detector must not hold up the updates after it
                log.exception("telegram group chat %s: message %s not classified", g.chat_id, g.message_id)
        if not (g.to_bot or complaint):
            log.info("telegram group chat %s ignored: message %s is neither a complaint nor to the bot",
                     g.chat_id, g.message_id)
            return
        token, new = await self.public.hold(place=f"telegram:{g.chat_id}", user=str(g.user_id), title=g.title,
                                            text=g.text)
        if not new:
            # the link given for their first message works for this one too: the group sees one reply
            log.info("telegram group chat %s: message %s added to an open private link", g.chat_id, g.message_id)
            return
        link = f"https://t.me/{self.bot.username}?start={token}"
        if self.texts is not None:
            text = self.texts.reply(link, text=g.text, hint=g.language_code)
        else:
            text = public_reply(self.config.public.message or PUBLIC_REPLY, link)
        log.info("telegram group chat %s: message %s answered with a private link (%s)", g.chat_id,
                 g.message_id, "complaint" if complaint else "to the bot")
        try:
            await self.bot.send_message(chat_id=g.chat_id, text=html.escape(text, quote=False), parse_mode="HTML",
                                        reply_parameters=ReplyParameters(message_id=g.message_id,
                                                                         allow_sending_without_reply=True),
                                        disable_web_page_preview=True)
        except TelegramError as exc:
            log.warning("telegram group chat %s: the private link was not posted (%s)", g.chat_id,
                        refusal_reason(exc))

    async def _start_with_token(self, incoming: Incoming) -> None:
        """``/start <token>`` from a public reply: the private conversation starts with what
        the customer wrote in public, and keeps where it came from; an unusable token gets a
        polite word, then the usual /start."""
        inbound = incoming.inbound
        assert incoming.start_token is not None
        # a private chat's id is its user's id: only the person who wrote in public can use it
        moved = await self.public.redeem(incoming.start_token, user=inbound.external_id,
                                         by=inbound.platform_message_id)
        if moved is None:
            log.info("telegram chat %s: a used, expired or someone else's private link", inbound.external_id)
            try:
                expired = (self.texts.expired(hint=inbound.customer_attributes.get("language_code"))
                           if self.texts is not None else EXPIRED)
                await self.bot.send_message(chat_id=int(inbound.external_id), text=html.escape(expired, quote=False),
                                            parse_mode="HTML")
            except TelegramError as exc:
                log.warning("telegram chat %s: the expired-link note was not sent (%s)", inbound.external_id,
                            refusal_reason(exc))
            await self.accept(inbound)
            return
        if moved.text:
            # the flows take the text as the customer's account of what happened (payload "story")
            inbound = dataclasses.replace(inbound, text=moved.text, payload=STORY_PAYLOAD)
        result = await self.accept(inbound)
        conversation = getattr(result, "conversation", None)
        if conversation is not None:
            await self.public.record_origin(conversation.id, moved, channel=self.name)

    @staticmethod
    def _files(msg: TgMessage) -> tuple[tuple[str, str, str], ...]:
        """The photo (largest size) and document of a message: (file_id, name, kind)."""
        items: list[tuple[str, str, str]] = []
        if msg.photo:
            _need(all(isinstance(p, PhotoSize) and isinstance(p.file_id, str) and _is_int(p.width)
                      and _is_int(p.height) and (p.file_size is None or _is_int(p.file_size))
                      for p in msg.photo), "message.photo is not a list of photo sizes")
            best = max(msg.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
            items.append((best.file_id, f"photo_{msg.message_id}.jpg", "image"))
        if msg.document:
            doc = msg.document
            _need(isinstance(doc, Document) and isinstance(doc.file_id, str) and _opt_str(doc.file_name),
                  "message.document is not a document")
            items.append((doc.file_id, doc.file_name or "document", "file"))
        return tuple(items)

    async def _attachments(self, chat_id: str, files: tuple[tuple[str, str, str], ...]) -> list[Attachment]:
        out = []
        for file_id, name, kind in files:
            try:
                f = await self.bot.get_file(file_id)
                data = bytes(await f.download_as_bytearray())
            except TelegramError as exc:
                # Keep the message; the agent sees the file is missing rather than nothing at all.
                log.warning("cannot download telegram file %s: %s", file_id, exc)
                out.append(Attachment(kind=kind, url="", name=name, platform_file_id=file_id))  # type: ignore[arg-type]
                continue
            mime = sniff_mime(data, name)
            try:
                info = await self.media.save(data, owner=f"telegram:{chat_id}", name=name, mime=mime)
            except OSError as exc:      # disk full, read-only: the message is not stored either
                raise StorageUnavailable(f"cannot save the file: {exc.strerror or type(exc).__name__}") from exc
            out.append(Attachment(kind="image" if mime.startswith("image/") else "file", url=f"/media/{info.id}",
                                  name=info.name, mime=mime, size=info.size, platform_file_id=file_id))
        return out

    # -- sending -----------------------------------------------------------------

    async def send(self, item: OutboxItem) -> str:
        """Send as HTML with everything escaped; long texts are split at Telegram's limit."""
        m = item.message
        prefix = f"<b>{html.escape(m.sender_name)}</b>: " if m.role == "agent" and m.sender_name else ""
        files = [a for a in m.attachments if a.url.startswith("/media/")]   # ours (an agent attached them)
        chunks = split_text(m.text or " ", MAX_TEXT - len(prefix)) if m.text or not files else []
        markup = None
        if m.buttons:     # InlineKeyboardMarkup.to_dict(), built directly
            markup = {"inline_keyboard": [[{"text": b.title[:64], "callback_data": b.payload[:64]}]
                                          for b in m.buttons]}
        sent_id = ""
        try:
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                sent_id = await self.bot.send_text(
                    chat_id=int(item.external_id), text=(prefix if i == 0 else "") + html.escape(chunk, quote=False),
                    parse_mode="HTML", reply_markup=markup if last else None)
            for a in files:
                data = await self.media.read(a.url.rsplit("/", 1)[1])
                if data is None:
                    raise PermanentSendError(f"the attached file {a.name or a.url} is no longer stored")
                if a.kind == "image":
                    sent = await self.bot.send_photo(chat_id=int(item.external_id), photo=data)
                else:
                    sent = await self.bot.send_document(chat_id=int(item.external_id), document=data,
                                                        filename=a.name or "file")
                sent_id = sent_id or str(sent.message_id)
        except RetryAfter as exc:
            # applies to this chat only: the outbox holds this conversation, others go on
            wait = retry_after_seconds(exc)
            raise TransientSendError(f"Telegram flood control: retry in {wait:.0f} s", retry_after=wait) from exc
        except (BadRequest, Forbidden, InvalidToken, ChatMigrated) as exc:   # before NetworkError: BadRequest is one
            raise PermanentSendError(refusal_reason(exc)) from exc
        except (TimedOut, NetworkError) as exc:
            raise TransientSendError(f"Telegram unreachable: {exc}") from exc
        return sent_id
