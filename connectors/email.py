"""E-mail: customers write to a mailbox (IMAP in), the bot answers by SMTP.

In: stdlib ``imaplib`` on a thread of its own (aioimaplib is GPL-3.0-only, which omnibot's
Apache-2.0 licence cannot ship; imaplib is blocking, so every IMAP command runs on that one
thread). IDLE where the server announces it (the server pushes ``EXISTS``; IDLE is renewed
every ``imap.poll_interval`` seconds, at most 29 minutes as RFC 2177 asks), polling every
``poll_interval`` otherwise. Each round asks for the UNSEEN mails by UID, reads each with
``BODY.PEEK[]`` (which does not set ``\\Seen``), stores it through the runtime's ``accept``
and only then sets ``\\Seen``. When storage cannot write, the mail stays unseen and the next
round (after a growing pause) brings it again; the same Message-ID is one message.

Out: aiosmtplib (MIT, maintained; asyncio, so a slow SMTP server holds no thread). One
customer mail gets one mail back: the connector is a :class:`connectors.base.BatchConnector`,
so the delivery hands it the whole turn's replies at once. The mail answers the customer's
last mail (``In-Reply-To``, ``References``, ``Re: <their subject>``, plus the ticket
reference such as ``[C-1042]`` once the conversation has one), as plain text with an HTML
alternative; choices are a numbered list, and a reply of just the number or the words is
mapped back to the choice (the conversation's last message with buttons is in storage).

The customer is their address (lower-cased): one conversation per address, so a reply lands
in the same conversation whatever their mail client keeps of the headers.

Mail written by machines is stored but never answered (``Inbound.answer=False``): auto-replies
(``Auto-Submitted`` other than ``no``, ``X-Autoreply``), ``Precedence: bulk/junk/list/auto_reply``,
list mail (``List-Id``, ``List-Unsubscribe``), delivery status notifications
(``multipart/report``, MAILER-DAEMON, postmaster, an empty ``Return-Path``) and our own mail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import email
import email.policy
import hashlib
import html
import imaplib
import json
import logging
import re
import select
import socket
import ssl
import threading
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formataddr, format_datetime, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, Callable

import aiosmtplib
from mailparser_reply import EmailReplyParser

from bot.aio import wait_for
from bot.config import EmailConfig
from bot.errors import PermanentSendError, StorageUnavailable, TransientSendError
from bot.media import MediaStore, sniff_mime
from bot.model import Attachment, Button, Inbound, utcnow
from bot.storage import OutboxItem, Store
from flows.i18n import render_system

log = logging.getLogger(__name__)

META = "email:msg:"               # + Message-ID: the mail's subject and References, for our reply
MAX_ATTACHMENT = 20 * 1024 * 1024
IDLE_SLICE = 1.0                  # seconds: how often a waiting IDLE counts the time it waited
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|fwd?|wg)\s*(\[\d+\])?\s*:\s*)+", re.I)
_REFERENCE = re.compile(r"\[([A-Z]{1,5}-\d+)\]")
_NUMBER_ANSWER = re.compile(r"^\s*(\d{1,2})\s*[.)]?\s*$")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


# -- reading mail (pure) -----------------------------------------------------------------


class _HtmlText(HTMLParser):
    """HTML mail to plain text with the stdlib parser: block elements become line breaks, list
    items "- ", links keep their address; script and style are dropped, and so is quoted history
    (``blockquote``, Gmail's ``div.gmail_quote``, Outlook's ``div#divRplyFwdMsg`` and what
    follows it). html2text would do more, but it is GPL-3.0 (omnibot is Apache-2.0), and
    customer mail needs only this much."""

    BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr",
             "pre", "section", "article", "header", "footer"}
    VOID = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0            # depth inside script/style/quoted history
        self.stack: list[bool] = []   # per open element: does it skip?
        self.stopped = False     # everything after an Outlook reply header is history
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if a.get("id") in ("divRplyFwdMsg", "appendonsend") or "moz-cite-prefix" in a.get("class", ""):
            self.stopped = True
        skipping = (tag in ("script", "style", "head", "blockquote", "title")
                    or "gmail_quote" in a.get("class", "") or "yahoo_quoted" in a.get("class", ""))
        if tag not in self.VOID:
            self.stack.append(skipping)
            self.skip += skipping
        if tag in self.BLOCK:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self.href = a.get("href") or None

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.stack:
            self.skip -= self.stack.pop()
        if tag in self.BLOCK:
            self.out.append("\n")
        if tag == "a":
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skip or self.stopped:
            return
        text = re.sub(r"\s+", " ", data)
        if self.href and self.href.startswith(("http://", "https://")) and self.href not in text:
            text = f"{text} ({self.href})"
        self.out.append(text)


def html_to_text(markup: str) -> str:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_reply_parser = EmailReplyParser(languages=["en", "de", "fr", "es", "it", "nl"])


def strip_reply(text: str) -> str:
    """The customer's new text: quoted history and signatures cut by mail-parser-reply (MIT,
    maintained, many languages); the whole text if that leaves nothing."""
    text = text.replace("\r\n", "\n").strip()
    if not text:
        return ""
    try:
        replies = _reply_parser.read(text).replies
        new = replies[0].body.strip() if replies else ""
    except Exception:  # noqa: BLE001 - a parser bug must not lose the mail: keep all of it
        log.warning("reply parsing failed; keeping the whole text", exc_info=True)
        new = ""
    return new or text


def _content(part: EmailMessage) -> str:
    """A text part's content, whatever its charset claims (unknown: decoded as UTF-8, lossy)."""
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, AssertionError):
        data = part.get_payload(decode=True) or b""
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


@dataclasses.dataclass(frozen=True)
class ParsedMail:
    message_id: str
    address: str                 # the sender, lower-cased; "" when the mail has none
    name: str
    subject: str
    text: str                    # the new text only
    references: tuple[str, ...]  # its References (or In-Reply-To), for our reply's References
    in_reply_to: str
    files: tuple[tuple[str, str, bytes], ...]   # (name, declared mime, data)
    automatic: str               # why it must not be answered; "" for a person's mail
    sent_at: datetime


def automatic_reason(msg: EmailMessage, address: str, own_address: str) -> str:
    """Why this mail was written by a machine (RFC 3834 and what helpdesks check), or ""."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto}"
    for h in ("X-Autoreply", "X-Autorespond"):
        if msg.get(h) is not None:
            return h
    prec = str(msg.get("Precedence", "") or msg.get("X-Precedence", "")).strip().lower()
    if prec in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {prec}"
    for h in ("List-Id", "List-Unsubscribe"):
        if msg.get(h) is not None:
            return f"{h} (list mail)"
    if msg.get_content_type() == "multipart/report":
        return "delivery status notification (multipart/report)"
    local = address.split("@")[0]
    if local in ("mailer-daemon", "postmaster"):
        return f"from {local}"
    if str(msg.get("Return-Path", "")).strip() == "<>":
        return "empty Return-Path (a bounce)"
    if own_address and address == own_address.lower():
        return "our own mail"
    return ""


def parse_mail(raw: bytes, *, own_address: str = "") -> ParsedMail:
    """One raw mail as what the conversation needs (stdlib email, ``policy=default``)."""
    msg: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
    mid = _MESSAGE_ID.search(str(msg.get("Message-ID", "") or ""))
    # No Message-ID: the content's hash, so the same mail delivered twice is still one message.
    message_id = mid.group(0) if mid else f"<sha256.{hashlib.sha256(raw).hexdigest()[:40]}@omnibot.invalid>"
    try:
        pairs = getaddresses([str(msg.get("Reply-To", "") or msg.get("From", "") or "")])
    except Exception:  # noqa: BLE001 - a malformed header means no sender
        pairs = []
    name, address = next(((n, a) for n, a in pairs if "@" in a), ("", ""))
    address = address.strip().lower()
    subject = re.sub(r"\s+", " ", str(msg.get("Subject", "") or "")).strip()
    refs = tuple(_MESSAGE_ID.findall(str(msg.get("References", "") or "")))
    in_reply_to = next(iter(_MESSAGE_ID.findall(str(msg.get("In-Reply-To", "") or ""))), "")
    if not refs and in_reply_to:
        refs = (in_reply_to,)
    automatic = automatic_reason(msg, address, own_address)
    text = ""
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = _content(body)  # type: ignore[arg-type]
        text = html_to_text(content) if body.get_content_type() == "text/html" else content
    text = strip_reply(text)
    files: list[tuple[str, str, bytes]] = []
    if msg.get_content_type() != "multipart/report":       # a bounce's parts are the original mail
        for part in msg.walk():    # nested too: Outlook puts inline images in multipart/related
            if part.is_multipart() or part is body or part.get_content_maintype() == "message":
                continue
            if (part.get_content_maintype() == "text" and not part.get_filename()
                    and part.get_content_disposition() != "attachment"):
                continue           # the other alternative of the body, not a file
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes) or not data:
                continue
            if len(data) > MAX_ATTACHMENT:
                log.warning("attachment of %d bytes in %s left out (over %d)", len(data), message_id, MAX_ATTACHMENT)
                continue
            fname = part.get_filename() or ("image" if part.get_content_maintype() == "image" else "attachment")
            files.append((fname, part.get_content_type(), data))
    try:
        sent_at = parsedate_to_datetime(str(msg["Date"])) if msg.get("Date") else utcnow()
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError, IndexError):
        sent_at = utcnow()
    return ParsedMail(message_id=message_id, address=address, name=name.strip(), subject=subject, text=text,
                      references=refs, in_reply_to=in_reply_to, files=tuple(files), automatic=automatic,
                      sent_at=sent_at)


def is_reply_subject(subject: str) -> bool:
    return bool(_REPLY_PREFIX.match(subject))


def reply_subject(subject: str, reference: str | None, fallback: str = "Your message") -> str:
    """``Re: <their subject>`` (one Re:), plus ``[reference]`` unless it is in there already;
    ``Re: <fallback>`` when their mail had no subject (the ``email_subject`` text, in their language)."""
    base = _REPLY_PREFIX.sub("", subject).strip() or fallback.strip() or "Your message"
    if reference and f"[{reference}]" not in base:
        base = f"{base} [{reference}]"
    return f"Re: {base}"


def answer_choice(text: str, buttons: tuple[Button, ...]) -> Button | None:
    """The choice a short reply names: its number ("2", "2.") or its words ("Damaged item")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or not buttons:
        return None
    first = lines[0]
    m = _NUMBER_ANSWER.match(first)
    if m and 1 <= int(m.group(1)) <= len(buttons):
        return buttons[int(m.group(1)) - 1]
    said = re.sub(r"^\d{1,2}\s*[.)]\s*", "", first).strip(" .!").casefold()
    for b in buttons:
        if said and said == b.title.strip(" .!").casefold():
            return b
    return None


# -- IMAP (stdlib imaplib on one thread) ----------------------------------------------------


class ImapError(Exception):
    """The IMAP server refused or the connection broke."""


class Mailbox:
    """The IMAP folder, driven from asyncio: every command runs on this mailbox's one thread."""

    def __init__(self, config: EmailConfig) -> None:
        self.cfg = config.imap
        self.conn: imaplib.IMAP4 | None = None
        self.idle_ok = False
        self.stopping = threading.Event()
        # stop() writes a byte here: a waiting IDLE wakes at once instead of at the end of its slice
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="omnibot-imap")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def connect(self) -> None:
        await self._run(self._connect)

    async def unseen(self) -> list[bytes]:
        return await self._run(self._unseen)  # type: ignore[no-any-return]

    async def fetch(self, uid: bytes) -> bytes | None:
        return await self._run(self._fetch, uid)  # type: ignore[no-any-return]

    async def mark_seen(self, uid: bytes) -> None:
        await self._run(self._mark_seen, uid)

    async def idle(self, seconds: float) -> bool:
        return await self._run(self._idle, seconds)  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.stop_waiting()
        await self._run(self._close)
        self.stopping.clear()

    def stop_waiting(self) -> None:
        """End a waiting IDLE now (from any thread)."""
        self.stopping.set()
        try:
            self._wake_w.send(b"\0")
        except OSError:         # already woken (buffer full) or shut down
            pass

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()

    # on the IMAP thread -------------------------------------------------------

    def _connect(self) -> None:
        self._close()
        c = self.cfg
        try:
            if c.tls == "ssl":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(c.host, c.port, ssl_context=ssl.create_default_context(),
                                                        timeout=c.timeout)
            else:
                conn = imaplib.IMAP4(c.host, c.port, timeout=c.timeout)
                if c.tls == "starttls":
                    conn.starttls(ssl.create_default_context())
            conn.login(c.user, c.password.get_secret_value())
            typ, data = conn.select(_quote(c.folder))
            if typ != "OK":
                raise ImapError(f"cannot open folder {c.folder!r}: {_said(data)}")
        except imaplib.IMAP4.error as exc:
            raise ImapError(str(exc)) from None
        self.conn = conn
        self.idle_ok = "IDLE" in conn.capabilities

    def _need(self) -> imaplib.IMAP4:
        if self.conn is None:
            raise ImapError("not connected")
        return self.conn

    def _unseen(self) -> list[bytes]:
        typ, data = self._need().uid("SEARCH", None, "UNSEEN")
        if typ != "OK":
            raise ImapError(f"UID SEARCH failed: {_said(data)}")
        return [u for u in (data[0] or b"").split() if u.isdigit()]

    def _fetch(self, uid: bytes) -> bytes | None:
        typ, data = self._need().uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        if typ != "OK":
            raise ImapError(f"UID FETCH failed: {_said(data)}")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None    # expunged meanwhile

    def _mark_seen(self, uid: bytes) -> None:
        typ, data = self._need().uid("STORE", uid.decode(), "+FLAGS.SILENT", "(\\Seen)")
        if typ != "OK":
            raise ImapError(f"UID STORE failed: {_said(data)}")

    def _idle(self, seconds: float) -> bool:
        """IDLE until the server reports a change (True), ``seconds`` pass or we stop (False).

        imaplib (3.11) has no IDLE: the command is written by hand. The wait is a ``select`` on
        the socket in short slices (a socket timeout would break imaplib's buffered reader). The
        continuation is read from the socket byte by byte, so news the server sends right behind
        it (mail that came during the last round) stays where ``select`` sees it, not in
        imaplib's buffer.
        """
        conn = self._need()
        # news the server sent with an earlier command (imaplib keeps it aside): look first
        news = [conn.untagged_responses.pop(k, None) for k in ("EXISTS", "RECENT")]  # type: ignore[attr-defined]
        if any(news):
            return True
        tag = conn._new_tag()   # type: ignore[attr-defined]
        conn.send(tag + b" IDLE\r\n")
        sock = conn.socket()
        line = _raw_line(sock)
        if not line.startswith(b"+"):
            raise ImapError(f"IDLE refused: {line[:200]!r}")
        changed = False
        waited = 0.0
        try:
            while waited < seconds and not self.stopping.is_set():
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                ready = [sock] if pending else select.select([sock, self._wake_r], [], [], IDLE_SLICE)[0]
                if self._wake_r in ready:
                    self._drain_wake()
                    continue            # stopping (checked above), or a stale wake-up
                if ready:
                    line = conn.readline()
                    if not line:
                        raise ImapError("the server closed the connection")
                    if line.startswith(b"* BYE"):
                        raise ImapError(f"the server ended the session: {line[:200]!r}")
                    if re.match(rb"\* \d+ (EXISTS|RECENT)", line):
                        changed = True
                        break
                else:
                    waited += IDLE_SLICE
        finally:
            conn.send(b"DONE\r\n")
            while True:
                line = conn.readline()
                if not line:
                    raise ImapError("the server closed the connection")
                if line.startswith(tag):
                    break
                if re.match(rb"\* \d+ (EXISTS|RECENT)", line):
                    changed = True
        return changed

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:         # nothing more to read
            pass

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            try:
                conn.shutdown()
            except OSError:
                pass


def _raw_line(sock: socket.socket) -> bytes:
    """One line straight from the socket (past imaplib's buffer, which must be empty here)."""
    out = bytearray()
    while not out.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            raise ImapError("the server closed the connection")
        out += b
        if len(out) > 8192:
            raise ImapError("an over-long line from the server")
    return bytes(out)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: Any) -> str:
    try:
        return b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")[:200]
    except TypeError:
        return str(data)[:200]


# -- the connector ---------------------------------------------------------------------------


class EmailConnector:
    """The e-mail channel.

    Args:
        config: the ``email:`` section.
        accept: the runtime's ``accept`` (persist, then schedule the answer).
        store: for the threading data of each mail, the last choices asked and ticket references.
        media: where attachments go (the store's ``media`` table).
        texts: omnibot's own words (the note under choices, the subject of a reply to a mail
            without one) as ``texts(key, language)``, in the
            conversation's language; default: the built-in ones (flows/i18n.py).
    """

    name = "email"

    def __init__(self, *, config: EmailConfig, accept: Callable[[Inbound], Any], store: Store,
                 media: MediaStore, texts: Callable[..., str] | None = None) -> None:
        self.texts = texts or render_system
        self.config = config
        self.accept = accept
        self.store = store
        self.media = media
        self.mailbox = Mailbox(config)
        self.from_address = config.smtp.from_address
        self.domain = self.from_address.rsplit("@", 1)[-1]
        self.state = "starting"       # /readyz: starting | ok | degraded: ...
        self.smtp_state = "ok"
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # when a mail cannot be stored: first and longest pause before the mailbox is read again
        self.store_retry_delays = (1.0, 60.0)
        self._store_delay: float | None = None
        self.received = 0

    # -- life cycle ------------------------------------------------------------------

    def readiness(self) -> str:
        """``ok``, ``starting`` or ``degraded: why`` (the mailbox or SMTP unreachable; the other
        channels go on, so e-mail never takes the instance out of rotation)."""
        if self.state == "ok" and self.smtp_state != "ok":
            return self.smtp_state
        return self.state

    async def start(self) -> None:
        """Read the mailbox in the background: an unreachable server never blocks start-up."""
        self._task = asyncio.create_task(self._run(), name="email")

    async def stop(self) -> None:
        self.mailbox.stop_waiting()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await wait_for(self.mailbox.close(), self.config.imap.timeout)
        except (asyncio.TimeoutError, RuntimeError):
            pass
        self.mailbox.shutdown()

    def wake(self) -> None:
        """Look at the mailbox now (polling mode; tests)."""
        self._wake.set()

    # -- receiving --------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 1.0
        cfg = self.config.imap
        while True:
            try:
                await self.mailbox.connect()
                log.info("e-mail: reading %s on %s:%s (%s)", cfg.folder, cfg.host, cfg.port,
                         "IDLE" if self.mailbox.idle_ok else f"polling every {cfg.poll_interval:.0f} s")
                self.state, delay = "ok", 1.0
                while True:
                    pause = await self.read_new()
                    if pause:
                        await self._sleep(pause)
                    elif self.mailbox.idle_ok:
                        await self.mailbox.idle(cfg.poll_interval)
                    else:
                        await self._sleep(cfg.poll_interval)
            except asyncio.CancelledError:
                raise
            except (ImapError, OSError, imaplib.IMAP4.error, EOFError) as exc:
                refused = "auth" in str(exc).lower() or "login" in str(exc).lower()
                log.warning("e-mail: IMAP %s (%s); trying again in %.0f s",
                            "login refused" if refused else "failed", exc, delay)
                self.state = "degraded: " + ("the IMAP server refused the login" if refused
                                             else "cannot reach the IMAP server")
            except Exception:  # noqa: BLE001 - the reader must outlive any one bad round
                log.exception("e-mail: reading the mailbox failed; trying again in %.0f s", delay)
                self.state = "degraded: reading the mailbox failed"
            try:
                await wait_for(self.mailbox.close(), cfg.timeout)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def read_new(self) -> float:
        """Store every unseen mail, marking each seen once stored; the pause before the next
        round when one could not be stored (it stays unseen), else 0."""
        for uid in await self.mailbox.unseen():
            raw = await self.mailbox.fetch(uid)
            if raw is None:
                continue
            try:
                await self.receive(raw)
            except StorageUnavailable as exc:
                pause = self._next_store_delay()
                log.warning("e-mail: mail UID %s not stored (%s); left unseen, again in %.1f s",
                            uid.decode(), exc, pause)
                return pause
            self._store_delay = None
            await self.mailbox.mark_seen(uid)
        return 0.0

    def _next_store_delay(self) -> float:
        delay = self._store_delay or self.store_retry_delays[0]
        self._store_delay = min(delay * 2, self.store_retry_delays[1])
        return delay

    async def receive(self, raw: bytes) -> None:
        """Store one raw mail as a customer message (or skip it, with a reason in the log).

        Raises:
            StorageUnavailable: it could not be stored (leave it unseen).
        """
        try:
            mail = parse_mail(raw, own_address=self.from_address)
        except Exception:  # noqa: BLE001 - one broken mail must not stop the mailbox
            log.exception("e-mail: a mail could not be parsed; left in the mailbox (marked seen)")
            return
        if not mail.address:
            log.warning("e-mail %s has no sender address; skipped", mail.message_id)
            return
        inbound = await self._inbound(mail)
        # What our reply needs (their subject, References): written before the message, so it is
        # there when the reply goes out; a retry writes the same again.
        await self.store.set_meta(META + mail.message_id, json.dumps(
            {"subject": mail.subject, "references": list(mail.references)[-20:]}))
        await self.accept(inbound)
        self.received += 1

    async def _inbound(self, mail: ParsedMail) -> Inbound:
        text, payload = mail.text, None
        if not is_reply_subject(mail.subject) and not mail.in_reply_to and mail.subject:
            # a new mail: its subject is part of what the customer says ("Broken blender AB123456")
            if mail.subject.casefold() not in text.casefold():
                text = f"{mail.subject}\n\n{text}".strip()
        elif not mail.automatic:
            chosen = await self._last_choice(mail.address, mail.text)
            if chosen is not None:
                payload = chosen.payload
        attachments = []
        for fname, declared, data in mail.files:
            mime = sniff_mime(data, fname)
            if mime == "application/octet-stream" and declared:
                mime = declared
            try:
                info = await self.media.save(data, owner=f"email:{mail.address}", name=fname, mime=mime)
            except OSError as exc:
                raise StorageUnavailable(f"cannot save the attachment: {exc.strerror or type(exc).__name__}") from exc
            attachments.append(Attachment(kind="image" if mime.startswith("image/") else "file",
                                          url=f"/media/{info.id}", name=info.name, mime=mime, size=info.size))
        if mail.automatic:
            log.info("e-mail %s is automatic (%s): stored, not answered", mail.message_id, mail.automatic)
        return Inbound(channel=self.name, external_id=mail.address, platform_message_id=mail.message_id,
                       # a mail with files and no words keeps no words: the desks say "(attachment)"
                       # in their language (desk_attachment), as for the web chat
                       text=text, sender_name=mail.name,
                       attachments=tuple(attachments), payload=payload, sent_at=mail.sent_at,
                       answer=not mail.automatic,
                       raw={"subject": mail.subject, "automatic": mail.automatic})

    async def _last_choice(self, address: str, text: str) -> Button | None:
        """The choice the customer's short reply names, among the buttons of our last message."""
        if len(text) > 200:
            return None
        conv = await self.store.open_conversation(self.name, address)
        if conv is None:
            return None
        for m in reversed(await self.store.history(conv.id, limit=20)):
            if m.direction == "out":     # only the last thing we said: an agent's words are no menu
                return answer_choice(text, m.buttons) if m.role == "bot" and m.buttons else None
        return None

    # -- sending -----------------------------------------------------------------------

    async def send(self, item: OutboxItem) -> str:
        return await self.send_batch([item])

    async def send_batch(self, items: list[OutboxItem]) -> str:
        """One mail with every reply of the turn, answering the customer's last mail."""
        msg = await self.compose(items)
        smtp = self.config.smtp
        try:
            await aiosmtplib.send(
                msg, hostname=smtp.host, port=smtp.port, use_tls=smtp.security == "ssl",
                start_tls=True if smtp.security == "starttls" else False,
                username=smtp.user or None, password=smtp.password.get_secret_value() or None,
                timeout=smtp.timeout, sender=self.from_address, recipients=[items[0].external_id])
        except aiosmtplib.SMTPAuthenticationError as exc:
            self.smtp_state = "degraded: the SMTP server refused the login"
            raise TransientSendError(f"SMTP login refused ({exc.code})") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [getattr(r, "code", 0) for r in exc.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentSendError(f"the mail server refused the address ({codes[0]})") from exc
            raise TransientSendError(f"the mail server deferred the address ({codes})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentSendError(f"the mail server refused the mail ({exc.code} {exc.message[:120]})") from exc
            raise TransientSendError(f"the mail server deferred the mail ({exc.code})") from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            self.smtp_state = "degraded: cannot reach the SMTP server"
            raise TransientSendError(f"SMTP unreachable: {type(exc).__name__}") from exc
        self.smtp_state = "ok"
        return str(msg["Message-ID"])

    async def compose(self, items: list[OutboxItem]) -> EmailMessage:
        """The reply mail for one turn's messages (pure but for storage reads)."""
        head = items[0]
        cid = head.message.conversation_id
        last_in = None
        for m in reversed(await self.store.history(cid, limit=200)):
            if m.direction == "in" and m.platform_message_id:
                last_in = m
                break
        subject, refs = "", []
        if last_in is not None:
            meta = await self.store.get_meta(META + str(last_in.platform_message_id))
            data = json.loads(meta) if meta else {}
            subject = data.get("subject", "")
            refs = [*data.get("references", []), str(last_in.platform_message_id)]
        ticket = await self.store.conversation_ticket(cid)
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = formataddr((self.config.smtp.from_name, self.from_address))
        msg["To"] = head.external_id
        conv = await self.store.get_conversation(cid)
        lang = conv.language if conv else None
        fallback = "" if _REPLY_PREFIX.sub("", subject).strip() else self.texts("email_subject", lang)
        msg["Subject"] = reply_subject(subject, ticket.reference if ticket else None, fallback)
        msg["Date"] = format_datetime(utcnow())
        # the same turn always has the same id: a resend after a crash is recognisably the same mail
        msg["Message-ID"] = f"<omnibot.{cid}.{head.message.id}@{self.domain}>"
        if last_in is not None:
            msg["In-Reply-To"] = str(last_in.platform_message_id)
            msg["References"] = " ".join(refs[-20:])
        if all(i.message.role in ("bot", "system") for i in items):
            msg["Auto-Submitted"] = "auto-replied"     # RFC 3834: so auto-responders don't answer us
            msg["X-Auto-Response-Suppress"] = "All"   # Exchange/Outlook's way of asking the same
        plain, rich = [], []
        for i in items:
            m = i.message
            p, h = m.text.strip(), "<p>" + html.escape(m.text.strip()).replace("\n", "<br>") + "</p>"
            if m.buttons:
                p += "\n\n" + "\n".join(f"{n}. {b.title}" for n, b in enumerate(m.buttons, 1))
                h += "<ol>" + "".join(f"<li>{html.escape(b.title)}</li>" for b in m.buttons) + "</ol>"
            if m.role == "agent" and m.sender_name:
                p += f"\n\n-- {m.sender_name}"
                h += f"<p>&mdash; {html.escape(m.sender_name)}</p>"
            plain.append(p)
            rich.append(h)
        if any(i.message.buttons for i in items):
            note = self.texts("email_choices", lang)
            plain.append(note)
            rich.append(f"<p><small>{note}</small></p>")
        msg.set_content("\n\n".join(plain) + "\n")
        msg.add_alternative("<!doctype html><html><body>" + "\n".join(rich) + "</body></html>", subtype="html")
        for i in items:
            for a in i.message.attachments:
                if not a.url.startswith("/media/"):
                    continue
                data = await self.media.read(a.url[len("/media/"):])
                if data is None:
                    continue
                maintype, _, subtype = (a.mime or "application/octet-stream").partition("/")
                msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                                   filename=a.name or "attachment")
        return msg


__all__ = ["EmailConnector", "Mailbox", "ParsedMail", "answer_choice", "html_to_text", "parse_mail",
           "reply_subject", "strip_reply"]
