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
import hmac
import html
import json
import logging
import os
import warnings
from datetime import timedelta
from typing import Any, Callable

from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message as TgMessage, Update
from telegram.error import (BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter,
                            TelegramError, TimedOut)
from telegram.request import HTTPXRequest

from bot.config import TelegramConfig
from bot.errors import PermanentSendError, TransientSendError
from bot.logs import RedactingFilter
from bot.media import MediaStore, sniff_mime
from bot.model import Attachment, Inbound
from bot.storage import OutboxItem, Store

log = logging.getLogger(__name__)

# Opt in to PTB's coming behaviour (RetryAfter.retry_after as a timedelta); without it PTB 22
# warns on every 429. retry_after_seconds() below reads either form.
os.environ.setdefault("PTB_TIMEDELTA", "1")

MAX_TEXT = 4096
_TOKEN_LOGGERS = ("httpx", "httpcore", "telegram", "telegram.Bot", "telegram.ext", "telegram.request")
OFFSET_KEY = "telegram:offset"


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


class TelegramConnector:
    """The Telegram channel.

    Args:
        config: the ``telegram:`` section.
        accept: the runtime's ``accept`` (persist, then schedule the answer).
        store: for the polling offset and seen update ids.
        media: where downloaded photos and documents go.
    """

    name = "telegram"

    def __init__(self, *, config: TelegramConfig, accept: Callable[[Inbound], Any], store: Store,
                 media: MediaStore) -> None:
        self.config = config
        self.accept = accept
        self.store = store
        self.media = media
        token = config.token.get_secret_value()
        # httpx logs every request URL at INFO, and Bot API URLs carry the token (PTB's Bot also logs
        # its base URL at DEBUG when built): whoever configures logging, these records are redacted
        # at the source. Logger filters don't reach child loggers, so each logger is named.
        self._redact = RedactingFilter([token])
        for name in _TOKEN_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        self.bot = Bot(token, base_url=config.api_url, base_file_url=config.file_url,
                       request=HTTPXRequest(connection_pool_size=32, read_timeout=15, write_timeout=15),
                       get_updates_request=HTTPXRequest(connection_pool_size=2,
                                                        read_timeout=config.poll_timeout + 10))
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    # -- wiring ----------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        if self.config.mode == "webhook":
            app.router.add_post("/telegram/webhook", self.webhook)

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
                return
            except TelegramError as exc:
                log.warning("cannot reach Telegram (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300)
        self._ready.set()
        log.info("Telegram connected as @%s (%s)", self.bot.username, self.config.mode)
        if self.config.mode == "webhook":
            if self.config.webhook_url:
                await self._retrying(lambda: self.bot.set_webhook(
                    self.config.webhook_url, secret_token=self.config.secret_token.get_secret_value(),
                    allowed_updates=["message", "callback_query"]), "setWebhook")
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

    # -- receiving ---------------------------------------------------------------

    async def _poll(self) -> None:
        offset = int(await self.store.get_meta(OFFSET_KEY) or 0)
        delay = 1.0
        while True:
            try:
                updates = await self.bot.get_updates(offset=offset or None, timeout=self.config.poll_timeout,
                                                     allowed_updates=["message", "callback_query"])
                delay = 1.0
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except TelegramError as exc:
                log.warning("getUpdates failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            for update in updates:
                try:
                    await self.handle_update(update)
                except Exception:
                    # Not confirmed: the same update comes back with the next getUpdates.
                    log.exception("telegram update %s could not be stored; will retry", update.update_id)
                    await asyncio.sleep(delay)
                    break
                # Confirm only what is stored: the next getUpdates(offset) drops it on Telegram's side.
                offset = update.update_id + 1
                await self.store.set_meta(OFFSET_KEY, str(offset))

    async def webhook(self, request: web.Request) -> web.Response:
        expected = self.config.secret_token.get_secret_value()
        got = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not expected or not hmac.compare_digest(got.encode(), expected.encode()):
            return web.json_response({"error": "bad secret token"}, status=401)
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an update")
            update = Update.de_json(data, self.bot)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"malformed update: {exc}"}, status=400)
        try:
            await self.handle_update(update)
        except Exception:
            log.exception("telegram update %s could not be stored", update.update_id)
            return web.json_response({"error": "try again"}, status=500)   # Telegram retries
        return web.json_response({"ok": True})

    async def handle_update(self, update: Update) -> None:
        """Store one update as a customer message (or ignore it, with a reason in the log)."""
        if update.callback_query is not None:
            await self._callback(update)
            return
        msg = update.message
        if msg is None:
            kind = ("channel post" if update.channel_post or update.edited_channel_post else
                    "edited message" if update.edited_message else "update")
            log.info("telegram %s %s ignored (only new messages and button presses are handled)", kind,
                     update.update_id)
            return
        if not self._chat_allowed(msg):
            return
        user = msg.from_user
        text = msg.text or msg.caption or ""
        payload, attributes = None, {}
        if text.startswith("/start"):
            arg = text[len("/start"):].strip()
            if arg:
                attributes["telegram_start"] = arg[:64]
            payload = self.config.start_payload or None
        elif text.startswith("/help"):
            payload = self.config.help_payload or None
        attachments = await self._attachments(msg)
        await self.accept(Inbound(
            channel=self.name, external_id=str(msg.chat.id), platform_message_id=f"{msg.chat.id}:{msg.message_id}",
            text=text, sender_name=user.full_name if user else "", attachments=tuple(attachments), payload=payload,
            customer_attributes=attributes, sent_at=msg.date, raw=update.to_dict()))

    def _chat_allowed(self, msg: TgMessage) -> bool:
        if msg.chat.type == "private" or self.config.allow_groups:
            return True
        log.info("telegram %s chat %s ignored (set telegram.allow_groups to answer there)", msg.chat.type,
                 msg.chat.id)
        return False

    async def _callback(self, update: Update) -> None:
        cq = update.callback_query
        msg = cq.message
        chat_id = msg.chat.id if msg is not None else cq.from_user.id
        if msg is not None and isinstance(msg, TgMessage) and not self._chat_allowed(msg):
            return
        title = cq.data or ""
        markup = getattr(msg, "reply_markup", None)
        for row in (markup.inline_keyboard if markup else ()):
            for b in row:
                if b.callback_data == cq.data:
                    title = b.text
        await self.accept(Inbound(
            channel=self.name, external_id=str(chat_id), platform_message_id=f"cb:{cq.id}", text=title,
            sender_name=cq.from_user.full_name, payload=cq.data, raw=update.to_dict()))
        try:   # stops the button's spinner; stored already, so a failure here loses nothing
            await cq.answer()
        except TelegramError as exc:
            log.info("answerCallbackQuery failed: %s", exc)

    async def _attachments(self, msg: TgMessage) -> list[Attachment]:
        items: list[tuple[str, str, str]] = []   # (file_id, name, kind)
        if msg.photo:
            best = max(msg.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
            items.append((best.file_id, f"photo_{msg.message_id}.jpg", "image"))
        if msg.document:
            items.append((msg.document.file_id, msg.document.file_name or "document", "file"))
        out = []
        for file_id, name, kind in items:
            try:
                f = await self.bot.get_file(file_id)
                data = bytes(await f.download_as_bytearray())
                mime = sniff_mime(data, name)
                info = self.media.save(data, owner=f"telegram:{msg.chat.id}", name=name, mime=mime)
                out.append(Attachment(kind="image" if mime.startswith("image/") else "file", url=f"/media/{info.id}",
                                      name=info.name, mime=mime, size=info.size, platform_file_id=file_id))
            except TelegramError as exc:
                # Keep the message; the agent sees the file is missing rather than nothing at all.
                log.warning("cannot download telegram file %s: %s", file_id, exc)
                out.append(Attachment(kind=kind, url="", name=name, platform_file_id=file_id))  # type: ignore[arg-type]
        return out

    # -- sending -----------------------------------------------------------------

    async def send(self, item: OutboxItem) -> str:
        """Send as HTML with everything escaped; long texts are split at Telegram's limit."""
        m = item.message
        prefix = f"<b>{html.escape(m.sender_name)}</b>: " if m.role == "agent" and m.sender_name else ""
        chunks = split_text(m.text or " ", MAX_TEXT - len(prefix))
        markup = None
        if m.buttons:
            markup = InlineKeyboardMarkup([[InlineKeyboardButton(b.title[:64], callback_data=b.payload[:64])]
                                           for b in m.buttons])
        sent_id = ""
        try:
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                sent = await self.bot.send_message(
                    chat_id=int(item.external_id), text=(prefix if i == 0 else "") + html.escape(chunk, quote=False),
                    parse_mode="HTML", reply_markup=markup if last else None,
                    disable_web_page_preview=True)
                sent_id = str(sent.message_id)
        except RetryAfter as exc:
            # applies to this chat only: the outbox holds this conversation, others go on
            wait = retry_after_seconds(exc)
            raise TransientSendError(f"Telegram flood control: retry in {wait:.0f} s", retry_after=wait) from exc
        except (BadRequest, Forbidden, InvalidToken, ChatMigrated) as exc:   # before NetworkError: BadRequest is one
            raise PermanentSendError(f"Telegram refused the message: {exc}") from exc
        except (TimedOut, NetworkError) as exc:
            raise TransientSendError(f"Telegram unreachable: {exc}") from exc
        return sent_id
