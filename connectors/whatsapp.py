"""WhatsApp (Cloud API): customers on WhatsApp, through Meta's Graph API with aiohttp's client.

In: Meta's webhook at ``/whatsapp/webhook``. The GET handshake echoes ``hub.challenge`` when
``hub.verify_token`` matches; every POST must carry ``X-Hub-Signature-256`` (HMAC-SHA256 of
the raw body with the app secret), checked before anything is parsed. Messages are stored
before the 200 (Meta redelivers anything else, for days and out of order), deduped on the
``wamid``. Statuses of our messages are applied monotonically (sent < delivered < read;
failed sticks) and a ``failed`` one marks the message failed and tells the desks.

Out: text, choices as reply buttons or a list, agent replies, images. Free-form messages
go only within 24 hours of the customer's last message (from storage); later ones use the
template configured in ``whatsapp.templates`` or are not sent, with the reason recorded.

No SDK: the calls are a handful of JSON POSTs and GETs, aiohttp is already a dependency,
and pywa (the maintained one) would bring its own webhook server and models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable

import aiohttp
from aiohttp import web

from bot.config import WhatsAppConfig
from bot.errors import PermanentSendError, StorageUnavailable, TransientSendError
from bot.logs import RedactingFilter
from bot.media import MediaStore, sniff_mime
from bot.model import Attachment, Inbound
from bot.storage import OutboxItem, Store
from connectors.base import RETRY_AFTER_UNAVAILABLE, read_body
from connectors.lean_http import LeanHTTP
from flows.i18n import render_system

log = logging.getLogger(__name__)

WINDOW = 24 * 3600          # the customer service window, seconds after the customer's last message
MAX_TEXT = 4096             # a text message's body
MAX_BODY = 1024             # an interactive message's body, a template parameter
MAX_BUTTONS, MAX_BUTTON_TITLE = 3, 20
MAX_ROWS, MAX_ROW_TITLE, MAX_ROW_DESCRIPTION = 10, 24, 72
MAX_MEDIA_BYTES = 25 * 1024 * 1024
_OK = b'{"ok": true}'         # the webhook's answer once everything in it is stored
STATUS_WAIT = 3.0           # seconds a failed status waits for its send to be recorded before 503

# Graph error codes: retry later (throughput, pair rate, WABA/app rate limits, temporary errors)
TRANSIENT_CODES = {130429: 3.0, 131056: 6.0, 80007: 30.0, 4: 30.0, 131048: 60.0, 2: None, 131000: None,
                   131016: None, 133004: None}
# ...and what a permanent one means to an agent
PERMANENT_REASONS = {
    131026: "WhatsApp could not deliver to this number (not on WhatsApp, or an old app version)",
    131047: "outside WhatsApp's 24-hour window: the customer must write first (re-engagement required)",
    131051: "WhatsApp does not support this message type",
    131052: "WhatsApp could not download the customer's media",
    131053: "WhatsApp could not upload the media",
    132000: "the template's parameters do not match the approved template",
    132001: "the template does not exist in this language (check whatsapp.templates)",
    190: "the Graph API refused the access token (whatsapp.access_token)",
    100: "WhatsApp refused the message as invalid",
}


class MalformedPayload(ValueError):
    """The webhook body is not what Meta documents (the reason names no customer content)."""


@dataclasses.dataclass(frozen=True)
class Incoming:
    """One customer message, normalised; ``media`` still to download: (media id, name, kind)."""

    inbound: Inbound
    at: int                                  # WhatsApp's timestamp (epoch seconds)
    media: tuple[tuple[str, str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Status:
    wamid: str
    status: str
    error: str = ""


def signature_ok(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` over the raw body, compared in constant time."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    key = secret if isinstance(secret, bytes) else secret.encode()
    # hmac.digest: OpenSSL's one-shot HMAC, without an HMAC object per request
    expected = hmac.digest(key, body, "sha256").hex()
    return hmac.compare_digest(header[7:].strip().lower().encode(), expected.encode())   # bytes: any header


def _str(d: Any, key: str, where: str, *, required: bool = True) -> str:
    v = d.get(key) if isinstance(d, dict) else None
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise MalformedPayload(f"{where}.{key} is missing or not a string")
    return v


def _timestamp(v: Any, default: float) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return int(default)


def _status_error(s: dict[str, Any]) -> str:
    errs = s.get("errors")
    e = errs[0] if isinstance(errs, list) and errs and isinstance(errs[0], dict) else {}
    code = e.get("code")
    if isinstance(code, int) and code in PERMANENT_REASONS:
        return f"not delivered: {PERMANENT_REASONS[code]} ({code})"
    title = e.get("title") or e.get("message") or "WhatsApp reported the message as not delivered"
    return f"not delivered: {str(title)[:200]}" + (f" ({code})" if code is not None else "")


def parse_webhook(data: Any, *, now: float) -> tuple[list[Incoming], list[Status]]:
    """The customer messages and the statuses in one webhook body.

    A message of a shape we don't know is skipped with a warning (it would not get better
    by redelivery); a body that is not a WhatsApp webhook at all is MalformedPayload.
    """
    if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
        raise MalformedPayload("not a WhatsApp webhook (no entry list)")
    incoming: list[Incoming] = []
    statuses: list[Status] = []
    for entry in data["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise MalformedPayload("entry.changes is not a list")
        for change in changes:
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                raise MalformedPayload("changes.value is not an object")
            names: dict[str, str] = {}
            for c in value.get("contacts") or []:
                if isinstance(c, dict) and isinstance(c.get("wa_id"), str):
                    prof = c.get("profile")
                    name = prof.get("name") if isinstance(prof, dict) else None
                    names[c["wa_id"]] = name if isinstance(name, str) else ""
            for m in value.get("messages") or []:
                try:
                    item = normalize_message(m, names, now=now)
                except MalformedPayload as exc:
                    log.warning("whatsapp message skipped: %s", exc)
                    continue
                if item is not None:
                    incoming.append(item)
            for s in value.get("statuses") or []:
                if isinstance(s, dict) and isinstance(s.get("id"), str) and s.get("status") in (
                        "sent", "delivered", "read", "failed"):
                    statuses.append(Status(s["id"], s["status"], _status_error(s) if s["status"] == "failed" else ""))
                else:
                    log.warning("whatsapp status of an unknown shape skipped")
    return incoming, statuses


def normalize_message(m: Any, names: dict[str, str], *, now: float) -> Incoming | None:
    """One entry of ``value.messages`` as a customer message; None for kinds we ignore."""
    if not isinstance(m, dict):
        raise MalformedPayload("a message is not an object")
    wa_id, wamid, kind = _str(m, "from", "message"), _str(m, "id", "message"), _str(m, "type", "message")
    at = _timestamp(m.get("timestamp"), now)
    text, payload, media = "", None, ()
    body = m.get(kind) if isinstance(m.get(kind), dict) else {}
    if kind == "text":
        text = _str(body, "body", "text")
    elif kind == "interactive":
        sub = _str(body, "type", "interactive")
        reply = body.get(sub)
        if sub not in ("button_reply", "list_reply") or not isinstance(reply, dict):
            raise MalformedPayload(f"interactive reply of type {sub!r} not understood")
        payload = _str(reply, "id", sub)
        text = _str(reply, "title", sub, required=False) or payload
    elif kind == "button":       # a quick-reply button of a template
        payload = _str(body, "payload", "button", required=False) or None
        text = _str(body, "text", "button", required=False) or (payload or "")
    elif kind in ("image", "document"):
        media_id = _str(body, "id", kind)
        name = _str(body, "filename", kind, required=False) or f"{kind}_{media_id}"
        text = _str(body, "caption", kind, required=False)
        media = ((media_id, name, "image" if kind == "image" else "file"),)
    elif kind == "location":
        lat, lon = body.get("latitude"), body.get("longitude")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
            raise MalformedPayload("location without latitude and longitude")
        label = ", ".join(str(body[k]) for k in ("name", "address") if isinstance(body.get(k), str) and body[k])
        text = f"[location] {label + ' ' if label else ''}({lat}, {lon})"
        payload = "location:" + json.dumps({"latitude": lat, "longitude": lon, "name": body.get("name"),
                                            "address": body.get("address")}, separators=(",", ":"))
    elif kind == "contacts":
        cards = m.get("contacts")
        if not isinstance(cards, list):
            raise MalformedPayload("contacts is not a list")
        people = []
        for c in cards:
            if not isinstance(c, dict):
                continue
            nm = c.get("name") if isinstance(c.get("name"), dict) else {}
            phones = [p.get("phone") for p in c.get("phones") or [] if isinstance(p, dict)
                      and isinstance(p.get("phone"), str)]
            people.append({"name": nm.get("formatted_name") if isinstance(nm.get("formatted_name"), str) else "",
                           "phones": phones})
        text = "[contact] " + "; ".join(f"{p['name']} {' '.join(p['phones'])}".strip() for p in people)
        payload = "contacts:" + json.dumps(people, separators=(",", ":"))
    elif kind in ("audio", "video", "sticker"):
        # a short tag, like [location]: no English sentence the language detector would take for
        # the customer's words (it switched a Spanish conversation to English), nothing to answer
        text = f"[{kind}]"
    else:    # reaction, system, unsupported, ...: nothing a flow could answer
        log.info("whatsapp %s message %s ignored", kind, wamid)
        return None
    # heard_at: the 24-hour window opens (or stays open) whether or not this delivery is a repeat,
    # stored with the message, in the same transaction; never in our future (a wrong clock there)
    return Incoming(Inbound(channel="whatsapp", external_id=wa_id, platform_message_id=wamid, text=text,
                            sender_name=names.get(wa_id, ""), payload=payload,
                            sent_at=datetime.fromtimestamp(at, timezone.utc), raw=m,
                            heard_at=min(at, int(now) + 60)), at=at, media=media)


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split at line breaks (else spaces, else hard) into chunks of at most ``limit`` characters."""
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        at = max(window.rfind("\n"), window.rfind(" "))
        at = at if at > limit // 2 else limit
        chunks.append(rest[:at])
        rest = rest[at:].lstrip("\n ")
    chunks.append(rest)
    return chunks


class GraphError(Exception):
    def __init__(self, status: int, code: int | None, message: str, retry_after: float | None = None) -> None:
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after
        super().__init__(f"HTTP {status}, code {code}: {message}")


class WhatsAppConnector:
    """The WhatsApp channel.

    Args:
        config: the ``whatsapp:`` section.
        accept: the runtime's ``accept`` (persist, then schedule the answer).
        store: the 24-hour window and delivery statuses live there.
        media: where downloaded images and documents go, and where agents' images come from.
        on_failed: told when WhatsApp reports a sent message as failed (after it is recorded):
            :meth:`bot.delivery.Delivery.announce_failure`.
        clock: seconds since the epoch (the window is computed with it; tests move it).
    """

    name = "whatsapp"

    def __init__(self, *, config: WhatsAppConfig, accept: Callable[[Inbound], Any], store: Store,
                 media: MediaStore, on_failed: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.time, texts: Callable[..., str] | None = None) -> None:
        # omnibot's own words (a list's button and section titles, the text above a choice that has
        # none) as texts(key, language)
        self.texts = texts or render_system
        self.config = config
        self.accept = accept
        self.store = store
        self.media = media
        self.on_failed = on_failed
        self.clock = clock
        self.base = f"{config.api_url.rstrip('/')}/{config.api_version}"
        self._token = config.access_token.get_secret_value()
        self._app_secret = config.app_secret.get_secret_value().encode()
        self._lean_headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        self._redact = RedactingFilter([self._token, config.app_secret.get_secret_value()])
        self._http: aiohttp.ClientSession | None = None
        # the per-message POST (/messages): a fraction of aiohttp's CPU per request (issue 20);
        # the rest (media, the readiness check) stays on aiohttp
        self._lean: LeanHTTP | None = None
        self._task: asyncio.Task[None] | None = None
        # a message sent in several parts: the earlier parts' wamids, until record_sent stores them
        self._parts: dict[int, list[str]] = {}
        self.state = "starting"     # /readyz: starting | ok | degraded: ... | failing: ...

    # -- wiring ------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/whatsapp/webhook", self.verify)
        app.router.add_post("/whatsapp/webhook", self.webhook)

    def readiness(self) -> str:
        """``ok``, ``starting``, ``degraded: why`` (Graph API unreachable) or ``failing: why``
        (the token was refused: nothing can be sent)."""
        return self.state

    async def start(self) -> None:
        logging.getLogger("aiohttp.client").addFilter(self._redact)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                           headers={"Authorization": f"Bearer {self._token}"})
        self._lean = LeanHTTP()
        self._task = asyncio.create_task(self._check(), name="whatsapp-check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._lean is not None:
            await self._lean.close()
            self._lean = None
        logging.getLogger("aiohttp.client").removeFilter(self._redact)

    async def _check(self) -> None:
        """Ask the Graph API for our number until it answers: readiness, never a start-up blocker."""
        delay = 1.0
        while True:
            try:
                await self._graph("GET", f"/{self.config.phone_number_id}", params={"fields": "id"})
                self.state = "ok"
                log.info("WhatsApp number %s reachable", self.config.phone_number_id)
                return
            except GraphError as exc:
                if exc.status in (401, 403) or exc.code == 190:
                    self.state = "failing: the Graph API refused the access token"
                    log.error("the Graph API refused whatsapp.access_token (%s)", exc.message)
                    return
                self.state = f"degraded: Graph API answered HTTP {exc.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.state = "degraded: cannot reach the Graph API"
                log.warning("cannot reach the Graph API (%s); retrying in %.0f s", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300)

    # -- the Graph API -----------------------------------------------------------------

    async def _graph(self, method: str, path: str, *, json_body: Any = None, data: Any = None,
                     params: dict[str, str] | None = None) -> dict[str, Any]:
        assert self._http is not None, "start() first"
        if json_body is not None and data is None and params is None and self._lean is not None:
            # no proxy here (the session has no trust_env either): the lean client
            resp = await self._lean.request(method, self.base + path, timeout=30, body=json.dumps(
                json_body, separators=(",", ":")).encode(), headers=self._lean_headers)
            return self._answer(resp.status, resp.reason, resp.headers.get("retry-after"), resp.body)
        async with self._http.request(method, self.base + path, json=json_body, data=data,
                                      params=params) as resp:
            return self._answer(resp.status, resp.reason or "", resp.headers.get("Retry-After"), await resp.read())

    @staticmethod
    def _answer(status: int, reason: str, ra: str | None, raw: bytes) -> dict[str, Any]:
        """A Graph API answer's JSON object, or GraphError."""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if status >= 400 or (isinstance(body, dict) and "error" in body):
            err = body.get("error") if isinstance(body, dict) else None
            err = err if isinstance(err, dict) else {}
            details = err.get("error_data", {}).get("details") if isinstance(err.get("error_data"), dict) else None
            raise GraphError(status, err.get("code") if isinstance(err.get("code"), int) else None,
                             str(details or err.get("message") or reason)[:300],
                             float(ra) if ra and ra.replace(".", "", 1).isdigit() else None)
        return body if isinstance(body, dict) else {}

    async def _download(self, media_id: str) -> tuple[bytes, str]:
        """A customer's file: the media endpoint gives a short-lived URL, fetched with the same token."""
        meta = await self._graph("GET", f"/{media_id}")
        url = meta.get("url")
        if not isinstance(url, str):
            raise GraphError(200, None, "the media endpoint gave no url")
        assert self._http is not None
        async with self._http.get(url) as resp:
            if resp.status != 200:
                raise GraphError(resp.status, None, "media download failed")
            data = await resp.content.read(MAX_MEDIA_BYTES + 1)
        if len(data) > MAX_MEDIA_BYTES:
            raise GraphError(200, None, f"the file is larger than {MAX_MEDIA_BYTES // (1024 * 1024)} MB")
        return data, str(meta.get("mime_type") or "")

    # -- receiving -------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        """Meta's one-time subscription handshake."""
        q = request.query
        token = self.config.verify_token.get_secret_value()
        got = q.get("hub.verify_token", "")
        if q.get("hub.mode") != "subscribe" or not hmac.compare_digest(got.encode(), token.encode()):
            log.warning("whatsapp webhook verification refused (wrong hub.verify_token or mode)")
            return web.Response(status=403, text="verification failed")
        return web.Response(text=q.get("hub.challenge", ""))

    async def webhook(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        if body is None:
            return web.json_response({"error": "the body ended early"}, status=400)
        if not signature_ok(self._app_secret, body, request.headers.get("X-Hub-Signature-256")):
            log.warning("whatsapp webhook refused (401): missing or wrong X-Hub-Signature-256")
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                raise MalformedPayload("the body is not JSON") from None
            incoming, statuses = parse_webhook(data, now=self.clock())
        except MalformedPayload as exc:
            log.warning("whatsapp webhook refused (400): %s", exc)
            return web.json_response({"error": f"malformed webhook: {exc}"}, status=400)
        try:
            for item in incoming:
                await self._store_incoming(item)
            again = False
            for st in statuses:
                again |= not await self._apply_status(st)
        except StorageUnavailable as exc:
            log.warning("whatsapp webhook not stored (%s); answered 503, Meta delivers it again", exc)
            return self._unavailable()
        except Exception:  # noqa: BLE001 - never a 500: Meta retries a 503 just the same
            log.exception("whatsapp webhook could not be handled; answered 503")
            return self._unavailable()
        if again:
            # a failure for a message whose send is not recorded yet: Meta brings it back later
            # (the messages of this body are stored; their redelivery is deduped)
            return self._unavailable()
        return web.Response(body=_OK, content_type="application/json")

    @staticmethod
    def _unavailable() -> web.Response:
        return web.json_response({"error": "try again later"}, status=503,
                                 headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})

    async def _store_incoming(self, item: Incoming) -> None:
        inbound = item.inbound      # with heard_at: the 24-hour window (see normalize_message)
        if item.media:
            if await self.store.whatsapp_inbound_seen(inbound.platform_message_id):
                await self.accept(inbound)     # a redelivery: no second download
                return
            inbound = dataclasses.replace(inbound, attachments=tuple(
                [await self._attachment(inbound.external_id, *m) for m in item.media]))
        await self.accept(inbound)

    async def _attachment(self, wa_id: str, media_id: str, name: str, kind: str) -> Attachment:
        try:
            data, claimed = await self._download(media_id)
        except (GraphError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # keep the message: the agent sees a file is missing rather than nothing at all
            log.warning("cannot download whatsapp media %s: %s", media_id, exc)
            return Attachment(kind=kind, url="", name=name, platform_file_id=media_id)  # type: ignore[arg-type]
        mime = sniff_mime(data, name)
        if mime == "application/octet-stream" and claimed:
            mime = claimed
        try:
            info = await self.media.save(data, owner=f"whatsapp:{wa_id}", name=name, mime=mime)
        except OSError as exc:
            raise StorageUnavailable(f"cannot save the file: {exc.strerror or type(exc).__name__}") from exc
        return Attachment(kind="image" if mime.startswith("image/") else "file", url=f"/media/{info.id}",
                          name=info.name, mime=mime, size=info.size, platform_file_id=media_id)

    async def _apply_status(self, st: Status) -> bool:
        """Record one status; False if it must come again later (its send is not recorded yet)."""
        if st.status != "failed":     # sent, delivered, read: kept, nothing else changes (one statement)
            await self.store.whatsapp_note_status(st.wamid, st.status)
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STATUS_WAIT
        while True:
            res = await self.store.whatsapp_apply_status(st.wamid, st.status, error=st.error)
            if res["outcome"] != "in_flight":
                break
            if loop.time() >= deadline:
                log.info("whatsapp failed status for %s: its send is not recorded yet; asked again later",
                         st.wamid)
                return False
            await asyncio.sleep(0.05)
        if res["outcome"] == "failed_now":
            log.warning("whatsapp message %s (ours %s) failed: %s", st.wamid, res["message_id"], st.error)
            if self.on_failed is not None:
                await self.on_failed(res["conversation_id"], message_id=res["message_id"], reason=st.error,
                                     channel=self.name, role=res["role"], sender=res["sender"])
        return True

    # -- sending ---------------------------------------------------------------------------

    async def window_open(self, wa_id: str) -> bool:
        """Whether free-form messages may go to ``wa_id`` now: the customer wrote in the last 24 h."""
        last = await self.store.whatsapp_last_inbound(wa_id)
        return last is not None and self.clock() - last < WINDOW

    async def reply_window(self, external_id: str) -> dict[str, Any]:
        """Whether an agent's free-form reply can go now, and until when (see connectors.base)."""
        last = await self.store.whatsapp_last_inbound(external_id)
        closes = None if last is None else last + WINDOW
        tpl = self.config.template_for("agent")
        return {"open": closes is not None and self.clock() < closes,
                "closes_at": None if closes is None else
                datetime.fromtimestamp(closes, timezone.utc).isoformat(),
                "rule": "WhatsApp's 24-hour window (free-form replies within 24 h of the customer's last message)",
                "outside": f"sent as the template {tpl.name!r}" if tpl is not None else
                           "not sent: no template configured (whatsapp.templates)"}

    async def send(self, item: OutboxItem) -> str:
        m = item.message
        to = item.external_id
        text = m.text or ""
        if m.role == "agent" and m.sender_name:
            text = f"*{m.sender_name}*: {text}"
        if await self.window_open(to):
            payloads = await self._session_payloads(m, text)
        else:
            tpl = self.config.template_for(m.role)
            if tpl is None:
                raise PermanentSendError("not sent: outside WhatsApp's 24-hour window (the customer last wrote "
                                         "more than 24 hours ago) and no template configured (whatsapp.templates)")
            template: dict[str, Any] = {"name": tpl.name, "language": {"policy": "deterministic", "code": tpl.language}}
            if tpl.text_parameter:
                # parameters may not hold line breaks, tabs or more than 4 spaces in a row
                param = _fit(re.sub(r"\s+", " ", text).strip() or "-", MAX_BODY)
                template["components"] = [{"type": "body", "parameters": [{"type": "text", "text": param}]}]
            payloads = [{"type": "template", "template": template}]
        wamids: list[str] = []
        self._parts.pop(m.id, None)
        try:
            for p in payloads:
                body = await self._graph("POST", f"/{self.config.phone_number_id}/messages", json_body={
                    "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **p})
                msgs = body.get("messages")
                wamid = msgs[0].get("id") if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) else None
                if not isinstance(wamid, str):
                    raise TransientSendError("the Graph API answered without a message id")
                wamids.append(wamid)
        except GraphError as exc:
            raise self._classify(exc) from None
        except (aiohttp.ClientError, OSError) as exc:     # OSError: incl. TimeoutError, lean_http's
            raise TransientSendError(f"Graph API unreachable: {type(exc).__name__}") from exc
        if len(wamids) > 1:         # the earlier parts' wamids are linked by record_sent
            self._parts[m.id] = wamids[:-1]
        return wamids[-1]

    async def record_sent(self, item: OutboxItem, wamid: str, *, now: float) -> tuple[OutboxItem | None, str | None]:
        """The outbox's record of a send (see connectors.base): the sent mark, the links of a split
        message's parts and the look for a ``failed`` status that overtook the send, in one
        transaction (:func:`bot.storage.ops_whatsapp_send.whatsapp_mark_sent_next`)."""
        mid = item.message.id
        res = await self.store.whatsapp_mark_sent_next(mid, [*self._parts.get(mid, ()), wamid],
                                                       conversation_id=item.message.conversation_id, now=now)
        self._parts.pop(mid, None)
        return res

    def _classify(self, exc: GraphError) -> Exception:
        if exc.code in TRANSIENT_CODES:
            wait = exc.retry_after if exc.retry_after is not None else TRANSIENT_CODES[exc.code]
            return TransientSendError(f"WhatsApp rate limit or temporary error ({exc.code}): {exc.message}",
                                      retry_after=wait)
        if exc.status >= 500 or exc.status == 429:
            return TransientSendError(f"Graph API HTTP {exc.status}: {exc.message}", retry_after=exc.retry_after)
        if exc.code == 190 or exc.status == 401:
            self.state = "failing: the Graph API refused the access token"
        if exc.code in PERMANENT_REASONS:
            return PermanentSendError(f"{PERMANENT_REASONS[exc.code]} ({exc.code}: {exc.message})"[:400])
        return PermanentSendError(f"WhatsApp refused the message (HTTP {exc.status}, code {exc.code}): "
                                  f"{exc.message}"[:400])

    async def _session_payloads(self, m: Any, text: str) -> list[dict[str, Any]]:
        """What goes inside the window: images first, then the text (with its choices)."""
        out: list[dict[str, Any]] = []
        for a in m.attachments:
            out.append(await self._image_payload(a))
        buttons = list(m.buttons)
        if not buttons:
            if text.strip() or not out:
                out += [{"type": "text", "text": {"body": c or " ", "preview_url": False}}
                        for c in split_text(text, MAX_TEXT)]
            return out
        if len(text) > MAX_BODY:       # the choices go with the last part
            parts = split_text(text, MAX_BODY)
            out += [{"type": "text", "text": {"body": c, "preview_url": False}} for c in parts[:-1]]
            text = parts[-1]
        conv = await self.store.get_conversation(m.conversation_id) if self.store is not None else None
        lang = conv.language if conv else None
        body = {"text": text.strip() or self.texts("choose_prompt", lang)}     # WhatsApp needs a body
        ids = [b.payload[:200] for b in buttons]
        if len(buttons) <= MAX_BUTTONS and all(len(b.title) <= MAX_BUTTON_TITLE for b in buttons) \
                and len(set(ids)) == len(ids) and len({b.title for b in buttons}) == len(buttons):
            out.append({"type": "interactive", "interactive": {"type": "button", "body": body, "action": {
                "buttons": [{"type": "reply", "reply": {"id": b.payload[:256], "title": b.title}} for b in buttons]}}})
        elif len(buttons) <= MAX_ROWS and len(set(ids)) == len(ids):
            rows = []
            for b in buttons:
                row = {"id": b.payload[:200], "title": _fit(b.title, MAX_ROW_TITLE)}
                if len(b.title) > MAX_ROW_TITLE:
                    row["description"] = _fit(b.title, MAX_ROW_DESCRIPTION)
                rows.append(row)
            out.append({"type": "interactive", "interactive": {"type": "list", "body": body, "action": {
                "button": _fit(self.texts("list_button", lang), 20),
                "sections": [{"title": _fit(self.texts("list_section", lang), 24), "rows": rows}]}}})
        else:       # more than WhatsApp takes: numbered, the customer answers with a number or the words
            lines = "\n".join(f"{i}. {b.title}" for i, b in enumerate(buttons, 1))
            out += [{"type": "text", "text": {"body": c, "preview_url": False}}
                    for c in split_text(f"{text}\n\n{lines}", MAX_TEXT)]
        return out

    async def _image_payload(self, a: Attachment) -> dict[str, Any]:
        """An attached file (ours, in the media store) uploaded to WhatsApp and sent by its id."""
        mid = a.url.rsplit("/", 1)[-1] if a.url.startswith("/media/") else ""
        info = await self.media.info(mid)
        data = await self.media.read(mid) if info else None
        if info is None or data is None:
            raise PermanentSendError(f"the attachment {a.name or a.url!r} is not in the media store")
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", info.mime)
        form.add_field("file", data, filename=info.name, content_type=info.mime)
        try:
            up = await self._graph("POST", f"/{self.config.phone_number_id}/media", data=form)
        except GraphError as exc:
            raise self._classify(exc) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransientSendError(f"Graph API unreachable: {type(exc).__name__}") from exc
        if not isinstance(up.get("id"), str):
            raise TransientSendError("the media upload gave no id")
        kind = "image" if info.mime.startswith("image/") else "document"
        body: dict[str, Any] = {"id": up["id"]}
        if kind == "document":
            body["filename"] = info.name
        return {"type": kind, kind: body}
