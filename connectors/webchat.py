"""Web chat: an aiohttp WebSocket endpoint plus the embeddable widget.

Protocol: docs/protocols.md. A visitor is identified by a random id inside a
signed session token, so a reloaded page resumes its own conversation and no
one can read anyone else's. Frames that are too large or malformed get an
error frame; the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from bot.auth import Signer
from bot.config import WebchatConfig
from bot.errors import StorageUnavailable
from bot.events import Event, EventBus
from bot.media import ALLOWED_MIME, MediaStore, UploadRefused, read_upload, sniff_mime
from bot.model import Attachment, Inbound
from bot.storage import OutboxItem, Store
from connectors.base import RETRY_AFTER_UNAVAILABLE

if TYPE_CHECKING:
    from bot.cluster import Cluster

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HARD_FRAME_FACTOR = 4   # frames up to 4 x max_frame_bytes get a too_large error; larger ones close the socket
MAX_TEXT_CHARS = 4000   # of a customer message; longer: a too_large error, never a silent cut
MAX_ATTACHMENTS = 5
_CLIENT_ID = re.compile(r'"client_id"\s*:\s*"([^"]{1,100})"')


class FrameError(Exception):
    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.client_id = client_id


class WebchatConnector:
    """The web-chat channel.

    Args:
        config: the ``webchat:`` section.
        secret: signs session tokens.
        accept: the runtime's ``accept`` (persist, then schedule the answer).
        store: for history on (re)connect.
        events: state changes to push to the widget.
        media: where uploads go.
        is_agent: tells whether a request comes from a logged-in agent (media access).
        cluster: with clustering on (PostgreSQL), ``messages_per_minute`` counts a visitor's
            messages on every instance together, in the database (one statement per message);
            without it the count is kept in memory.
    """

    name = "webchat"

    def __init__(self, *, config: WebchatConfig, secret: str, accept: Callable[[Inbound], Any],
                 store: Store, events: EventBus, media: MediaStore,
                 is_agent: Callable[[web.Request], Awaitable[bool]],
                 team_name: Callable[..., str] | None = None, cluster: Cluster | None = None,
                 widget_texts: Callable[[str | None, Any], dict[str, Any]] | None = None) -> None:
        self.config = config
        # the widget's own words in the visitor's language (connectors/widget_texts.py)
        self.widget_texts = widget_texts
        self.cluster = cluster if cluster is not None and cluster.enabled else None
        self.team_name = team_name or (lambda team, lang=None: team)    # team_name(key, language)
        self.signer = Signer(secret, "webchat-session")
        self.accept = accept
        self.store = store
        self.events = events
        self.media = media
        self.is_agent = is_agent
        self.sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._rate: dict[str, deque[float]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.hard_frame_bytes = HARD_FRAME_FACTOR * config.max_frame_bytes

    # -- wiring ----------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/webchat/widget.js", self.widget_js)
        app.router.add_get("/webchat/ws", self.ws_handler)
        app.router.add_post("/webchat/upload", self.upload)
        app.router.add_route("OPTIONS", "/webchat/upload", self.upload_preflight)
        app.router.add_get("/media/{id}", self.media_file)

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="webchat-events")

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        for socks in list(self.sockets.values()):
            for ws in list(socks):
                await ws.close(code=1001, message=b"server shutdown")
        self.sockets.clear()

    # -- sending -----------------------------------------------------------------

    async def send(self, item: OutboxItem) -> str:
        """Push to every open socket of the visitor. With none open, the message waits in
        history and is sent on the next connect, so it counts as delivered."""
        frame = json.dumps({"type": "message", "message": item.message.to_dict()})
        if self.events.shared:
            # the visitor's socket may be held by another instance: it pushes the message there
            self.events.publish(Event("webchat_out", item.message.conversation_id, None,
                                      {"external_id": item.external_id, "message_id": item.message.id,
                                       "frame": frame}))
        await self._push(item.external_id, frame)
        return f"webchat-{item.message.id}"

    async def _push(self, visitor: str, frame: str) -> None:
        for ws in list(self.sockets.get(visitor, ())):
            try:
                await ws.send_str(frame)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("socket of %s gone while sending: %s", visitor, exc)

    async def _push_remote(self, ev: Event) -> None:
        """A message another instance sent to a visitor whose socket may be here."""
        visitor = str(ev.data.get("external_id", ""))
        if visitor not in self.sockets:
            return
        frame = ev.data.get("frame")
        if not isinstance(frame, str):
            # too big for a notification: read it from storage
            mid = int(ev.data.get("message_id", 0))
            found = [m for m in await self.store.history(ev.conversation_id, after_id=mid - 1, limit=1)
                     if m.id == mid]
            if not found:
                return
            frame = json.dumps({"type": "message", "message": found[0].to_dict()})
        await self._push(visitor, frame)

    async def _listen(self) -> None:
        q = self.events.subscribe()
        try:
            while True:
                ev = await q.get()
                if ev.kind == "webchat_out":
                    if ev.remote:
                        await self._push_remote(ev)
                    continue
                if ev.kind == "language":
                    await self._language_changed(ev)
                    continue
                if ev.kind != "state" or ev.data.get("channel") != self.name:
                    continue
                frame = json.dumps({"type": "state", **{k: v for k, v in ev.data.items()
                                                        if k not in ("channel", "external_id")}})
                for ws in list(self.sockets.get(ev.data.get("external_id", ""), ())):
                    try:
                        await ws.send_str(frame)
                    except (ConnectionError, RuntimeError):
                        pass
        finally:
            self.events.unsubscribe(q)

    async def _language_changed(self, ev: Event) -> None:
        """The conversation's language changed ("English please"): the visitor's open widgets get
        their own words in it, and a queued handoff's team name (a ``texts`` frame, docs/protocols.md)."""
        visitor = str(ev.data.get("external_id", ""))
        if ev.data.get("channel") != self.name or self.widget_texts is None or visitor not in self.sockets:
            return
        lang = ev.data.get("language")
        frame = {"type": "texts", **self.widget_texts(lang if isinstance(lang, str) else None)}
        try:
            h = await self.store.active_handoff(ev.conversation_id)
            if h is not None and h.state == "queued":
                frame["team"] = self.team_name(h.team, frame["language"])
        except Exception as exc:  # noqa: BLE001 - the words go out without the team's name
            log.warning("no team name for the widget's texts frame: %s", type(exc).__name__)
        await self._push(visitor, json.dumps(frame))

    # -- HTTP ------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def widget_js(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "widget.js", headers={
            "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "no-cache"})

    def _cors(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if not origin or not self._origin_ok(request):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Allow-Methods": "POST, OPTIONS"}

    def _origin_ok(self, request: web.Request) -> bool:
        allowed = self.config.allowed_origins
        origin = request.headers.get("Origin")
        return not allowed or origin is None or origin in allowed or "*" in allowed

    async def upload_preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=self._cors(request))

    async def upload(self, request: web.Request) -> web.Response:
        headers = self._cors(request)
        auth = request.headers.get("Authorization", "")
        visitor = self.signer.verify(auth[7:] if auth.startswith("Bearer ") else None)
        if visitor is None:
            return web.json_response({"error": "a valid session token is required"}, status=401, headers=headers)
        try:
            data, name = await read_upload(request, self.config.max_upload_bytes)
            mime = sniff_mime(data, "")      # by content only: a name ending in .png proves nothing
            if mime not in ALLOWED_MIME:
                raise UploadRefused(415, "only images (JPEG, PNG, GIF, WebP) and PDF files are accepted")
        except UploadRefused as exc:
            # 413/415 are a customer's choice of file; a 400 is a client sending something broken.
            log.log(logging.WARNING if exc.status == 400 else logging.INFO,
                    "web-chat upload refused (%d): %s", exc.status, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
        try:
            info = await self.media.save(data, owner=f"webchat:{visitor}", name=name, mime=mime)
        except (OSError, StorageUnavailable) as exc:   # disk full, database down: nothing kept, try again
            reason = (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__
            log.warning("web-chat upload not stored (%s); answered 503", reason)
            return web.json_response({"error": "we cannot store files right now; please try again later"},
                                     status=503, headers={**headers, "Retry-After": str(RETRY_AFTER_UNAVAILABLE)})
        return web.json_response({"id": info.id, "url": f"/media/{info.id}", "kind": info.kind,
                                  "name": info.name, "mime": info.mime, "size": info.size}, headers=headers)


    async def media_file(self, request: web.Request) -> web.StreamResponse:
        info = await self.media.info(request.match_info["id"])
        if info is None:
            raise web.HTTPNotFound(text="no such file")
        visitor = self.signer.verify(request.query.get("token"))
        if not (await self.is_agent(request) or (visitor is not None and info.owner == f"webchat:{visitor}")):
            raise web.HTTPForbidden(text="not yours")
        disposition = "inline" if info.kind == "image" else "attachment"
        data = await self.media.read(info.id)
        if data is None:
            raise web.HTTPNotFound(text="no such file")
        return web.Response(body=data, headers={
            "Content-Type": info.mime, "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'{disposition}; filename="{info.name}"',
            "Cache-Control": "private, max-age=3600"})

    # -- WebSocket ---------------------------------------------------------------

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            return web.Response(status=403, text="origin not allowed")
        # aiohttp refuses a message of max_msg_size bytes or more (close code 1009, "message too
        # big"), without reading it into memory; the hard cap itself is still answered in-band.
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self.hard_frame_bytes + 1)
        await ws.prepare(request)
        visitor: str | None = None
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        visitor = await self._frame(ws, msg.data, visitor)
                    except FrameError as exc:
                        await self._error(ws, exc.code, str(exc), exc.client_id)
                    except Exception:
                        log.exception("web-chat frame failed")
                        await self._error(ws, "internal", "something went wrong; please try again")
                elif msg.type == WSMsgType.BINARY:
                    await self._error(ws, "bad_frame", "binary frames are not supported; send JSON text")
                elif msg.type == WSMsgType.ERROR:
                    if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
                        log.info("web-chat socket closed (1009): a frame over %d bytes", self.hard_frame_bytes)
                    else:
                        log.info("web-chat socket error: %s", msg.data or ws.exception())
        finally:
            if visitor is not None:
                socks = self.sockets.get(visitor)
                if socks is not None:
                    socks.discard(ws)
                    if not socks:
                        self.sockets.pop(visitor, None)
        return ws

    async def _error(self, ws: web.WebSocketResponse, code: str, message: str,
                     client_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if client_id:
            frame["client_id"] = client_id
        if not ws.closed:
            await ws.send_json(frame)

    async def _frame(self, ws: web.WebSocketResponse, data: str, visitor: str | None) -> str | None:
        if len(data.encode("utf-8", "surrogatepass")) > self.config.max_frame_bytes:
            # Name the message if we can, so the widget marks the right one as failed.
            m = _CLIENT_ID.search(data[:2000])
            raise FrameError("too_large", f"the message is larger than {self.config.max_frame_bytes} bytes",
                             m.group(1) if m else None)
        try:
            frame = json.loads(data)
        except ValueError:
            raise FrameError("bad_json", "frames must be JSON") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise FrameError("bad_frame", 'a frame is a JSON object with a "type"')
        kind = frame["type"]
        if kind == "ping":
            await ws.send_json({"type": "pong"})
            return visitor
        if kind == "hello":
            return await self._hello(ws, frame, visitor)
        if visitor is None:
            raise FrameError("hello_required", "send a hello frame first")
        if kind == "message":
            await self._message(ws, visitor, frame)
            return visitor
        raise FrameError("bad_frame", f"unknown frame type {kind[:40]!r}")

    async def _hello(self, ws: web.WebSocketResponse, frame: dict[str, Any], old: str | None) -> str:
        token = frame.get("token")
        visitor = self.signer.verify(token) if token else None
        if token and visitor is None:
            await self._error(ws, "invalid_token", "that session is not valid here; starting a new one")
        if visitor is None:
            visitor = "v_" + secrets.token_hex(16)
            token = self.signer.sign(visitor)
        if old is not None and old != visitor:
            self.sockets.get(old, set()).discard(ws)
        self.sockets.setdefault(visitor, set()).add(ws)
        last_id = frame.get("last_id") if isinstance(frame.get("last_id"), int) else 0
        conv = await self.store.latest_conversation(self.name, visitor)
        history = await self.store.history(conv.id, after_id=last_id, limit=500) if conv else []
        welcome: dict[str, Any] = {"type": "welcome", "token": token,
                                   "history": [self._public(m.to_dict()) for m in history],
                                   "state": conv.state.value if conv else "bot"}
        if conv is not None and conv.state.value == "waiting":
            h = await self.store.active_handoff(conv.id)
            if h is not None:
                welcome["position"] = await self.store.queue_position(h.id)
                welcome["team"] = self.team_name(h.team, conv.language)
        if self.widget_texts is not None:
            welcome.update(self.widget_texts(conv.language if conv else None, frame.get("lang")))
        await ws.send_json(welcome)
        return visitor

    @staticmethod
    def _public(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in ("status", "error", "conversation_id")}

    async def _rate_ok(self, visitor: str) -> bool:
        if self.cluster is not None:
            # the same visitor may have sockets on several instances: count in the database,
            # per fixed minute from the visitor's first message in it
            try:
                hits = await self.store.rate_hit(f"webchat:{visitor}", now=self.cluster.clock(), window=60.0)
                return hits <= self.config.messages_per_minute
            except StorageUnavailable:
                pass          # counted here alone while the database does not answer
        now = time.monotonic()
        window = self._rate.setdefault(visitor, deque())
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self.config.messages_per_minute:
            return False
        window.append(now)
        return True

    async def _message(self, ws: web.WebSocketResponse, visitor: str, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 100:
            raise FrameError("bad_frame", "a message needs a client_id (a string of 1-100 characters)")
        text = frame.get("text", "")
        payload = frame.get("payload")
        atts = frame.get("attachments") or []
        if not isinstance(text, str) or (payload is not None and not isinstance(payload, str)):
            raise FrameError("bad_frame", "text and payload must be strings", client_id)
        if len(text) > MAX_TEXT_CHARS:
            raise FrameError("too_large", f"messages are limited to {MAX_TEXT_CHARS} characters", client_id)
        if not isinstance(atts, list) or len(atts) > MAX_ATTACHMENTS:
            raise FrameError("bad_frame", f"attachments must be a list of at most {MAX_ATTACHMENTS}", client_id)
        attachments = []
        for a in atts:
            info = await self.media.info(a.get("id") if isinstance(a, dict) else None)
            if info is None or info.owner != f"webchat:{visitor}":
                raise FrameError("bad_frame", "unknown attachment id; upload it first", client_id)
            attachments.append(Attachment(kind=info.kind, url=f"/media/{info.id}", name=info.name,  # type: ignore[arg-type]
                                          mime=info.mime, size=info.size, platform_file_id=info.id))
        if not text.strip() and not attachments and not payload:
            raise FrameError("bad_frame", "the message is empty", client_id)
        if not await self._rate_ok(visitor):
            raise FrameError("rate_limited", "you're sending messages very fast; please wait a moment",
                             client_id)
        try:
            result = await self.accept(Inbound(
                channel=self.name, external_id=visitor, platform_message_id=f"{visitor}:{client_id}",
                text=text, attachments=tuple(attachments), payload=payload))
        except StorageUnavailable as exc:
            # No ack for what is not stored: the client keeps the message and resends it with the
            # same client_id (stored once, whenever the store writes again).
            log.warning("web-chat message not stored (%s); the client is told to resend", exc)
            raise FrameError("unavailable", "we could not save your message just now; it will be sent again "
                                            "in a moment", client_id) from None
        await ws.send_json({"type": "ack", "client_id": client_id, "id": result.message.id,
                            "duplicate": result.duplicate})
