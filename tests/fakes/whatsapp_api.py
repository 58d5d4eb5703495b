"""A fake WhatsApp Cloud API (Meta's Graph API) for tests: a real aiohttp server on 127.0.0.1.

The connector talks to it over HTTP exactly as to ``https://graph.facebook.com``::

    fake = FakeWhatsApp()
    await fake.start()
    # config: whatsapp.api_url = fake.url, api_version = fake.version, access_token = fake.token
    [call] = await fake.wait_for("messages")

What the Cloud API does and this fake copies:
- Every call needs ``Authorization: Bearer <token>``; a wrong one answers 401 with
  ``{"error": {"message": ..., "type": "OAuthException", "code": 190}}``.
- ``POST /<version>/<phone_number_id>/messages`` (JSON) answers
  ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid...."}]}``;
  it checks the limits Meta documents: text body <= 4096, interactive body <= 1024,
  1-3 reply buttons with unique titles <= 20, list rows <= 10 with titles <= 24 and
  descriptions <= 72, button label <= 20; a violation answers 400 code 100.
- ``POST /<version>/<phone_number_id>/media`` (multipart: ``messaging_product``, ``type``, ``file``)
  answers ``{"id": media_id}``.
- ``GET /<version>/<media_id>`` answers ``{"url", "mime_type", "sha256", "file_size", "id",
  "messaging_product"}``; the URL (on this server) needs the same Bearer token.
- ``GET /<version>/<phone_number_id>`` answers ``{"id": ...}`` (the connector's readiness check).
- Errors are ``{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}``
  with the HTTP status given to :meth:`fail_next` (Meta answers rate limits with 400/429
  and the code, e.g. 130429 or 131056).

The second half builds webhook bodies shaped like Meta's and posts them signed.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
from aiohttp import web

from fakes.base import FakeServer

_ids = itertools.count(1)


@dataclass
class Call:
    method: str                      # "messages" | "media_upload" | "media" | "download" | "phone"
    args: dict[str, Any]
    time: float
    failed: bool = False
    response: Any = None


@dataclass
class _Failure:
    method: str
    status: int
    code: Optional[int]
    message: str
    times: int
    to: Optional[str] = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeWhatsApp(FakeServer):
    def __init__(self, *, token: str = "EAAG-test-token-0123456789", phone_number_id: str = "1098765",
                 version: str = "v21.0") -> None:
        self.token = token
        self.phone_number_id = phone_number_id
        self.version = version
        self.calls: list[Call] = []
        self.files: dict[str, tuple[bytes, str]] = {}        # media id -> (bytes, mime)
        self.uploads: dict[str, tuple[bytes, str, str]] = {}  # uploaded media id -> (bytes, mime, filename)
        self._failures: list[_Failure] = []

    # -- control -----------------------------------------------------------------

    def add_media(self, media_id: str, data: bytes, mime: str) -> None:
        """A customer's file, downloadable through the media endpoint."""
        self.files[media_id] = (data, mime)

    def fail_next(self, method: str = "messages", *, status: int = 400, code: Optional[int] = None,
                  message: str = "error", times: int = 1, to: Optional[str] = None,
                  headers: Optional[dict[str, str]] = None) -> None:
        """Make the next ``times`` calls to ``method`` (to the number ``to``, if given) fail with
        HTTP ``status`` and Graph error ``code``."""
        self._failures.append(_Failure(method, status, code, message, times, to, dict(headers or {})))

    def sent_to(self, wa_id: str, *, ok: bool = True) -> list[Call]:
        return [c for c in self.calls_to("messages") if c.args.get("to") == wa_id and c.failed != ok]

    def describe_call(self, call: Any) -> str:
        return f"{call.method}{'(failed)' if call.failed else ''}->{call.args.get('to', '')}"

    # -- server ------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        v = self.version
        app.router.add_post(f"/{v}/{{pid}}/messages", self._messages)
        app.router.add_post(f"/{v}/{{pid}}/media", self._upload)
        app.router.add_get("/files/{mid}", self._file)
        app.router.add_get(f"/{v}/{{mid}}", self._media_or_phone)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    @staticmethod
    def _error(status: int, code: Optional[int], message: str, headers: Optional[dict[str, str]] = None
               ) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "OAuthException", "code": code,
                                             "error_data": {"messaging_product": "whatsapp", "details": message},
                                             "fbtrace_id": secrets.token_hex(6)}}, status=status, headers=headers)

    def _failure(self, method: str, to: Optional[str]) -> Optional[_Failure]:
        for f in self._failures:
            if f.method == method and (f.to is None or f.to == to) and f.times > 0:
                f.times -= 1
                if f.times == 0:
                    self._failures.remove(f)
                return f
        return None

    def _auth_error(self, method: str, args: dict[str, Any]) -> web.Response:
        self.calls.append(Call(method, args, time.monotonic(), failed=True))
        return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            args = await request.json()
        except ValueError:
            return self._error(400, 100, "the body is not JSON")
        if not self._authorized(request):
            return self._auth_error("messages", args)
        call = Call("messages", args, time.monotonic())
        self.calls.append(call)
        if request.match_info["pid"] != self.phone_number_id:
            call.failed = True
            return self._error(400, 100, "Unsupported post request: unknown phone number id")
        f = self._failure("messages", args.get("to"))
        if f is not None:
            call.failed = True
            return self._error(f.status, f.code, f.message, f.headers)
        problem = check_message(args)
        if problem:
            call.failed = True
            return self._error(400, 100, f"(#100) Invalid parameter: {problem}")
        wamid = f"wamid.FAKE{next(_ids):06d}{secrets.token_hex(4)}"
        call.response = {"messaging_product": "whatsapp",
                         "contacts": [{"input": args["to"], "wa_id": args["to"]}], "messages": [{"id": wamid}]}
        return web.json_response(call.response)

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._auth_error("media_upload", {})
        form = await request.post()
        file = form.get("file")
        args = {k: v for k, v in form.items() if isinstance(v, str)}
        call = Call("media_upload", args, time.monotonic())
        self.calls.append(call)
        f = self._failure("media_upload", None)
        if f is not None:
            call.failed = True
            return self._error(f.status, f.code, f.message, f.headers)
        if file is None or not hasattr(file, "file") or form.get("messaging_product") != "whatsapp":
            call.failed = True
            return self._error(400, 100, "file and messaging_product=whatsapp are required")
        mid = f"up{next(_ids)}"
        self.uploads[mid] = (file.file.read(), str(form.get("type", "")), file.filename or "")
        call.response = {"id": mid}
        return web.json_response(call.response)

    async def _media_or_phone(self, request: web.Request) -> web.Response:
        mid = request.match_info["mid"]
        method = "phone" if mid == self.phone_number_id else "media"
        if not self._authorized(request):
            return self._auth_error(method, {"id": mid})
        call = Call(method, {"id": mid}, time.monotonic())
        self.calls.append(call)
        f = self._failure(method, None)
        if f is not None:
            call.failed = True
            return self._error(f.status, f.code, f.message, f.headers)
        if method == "phone":
            return web.json_response({"id": mid})
        if mid not in self.files:
            call.failed = True
            return self._error(400, 100, "Unsupported get request. Object does not exist")
        data, mime = self.files[mid]
        return web.json_response({"messaging_product": "whatsapp", "url": f"{self.url}/files/{mid}",
                                  "mime_type": mime, "sha256": hashlib.sha256(data).hexdigest(),
                                  "file_size": len(data), "id": mid})

    async def _file(self, request: web.Request) -> web.Response:
        mid = request.match_info["mid"]
        call = Call("download", {"id": mid}, time.monotonic())
        self.calls.append(call)
        if not self._authorized(request) or mid not in self.files:
            call.failed = True
            return web.Response(status=404 if self._authorized(request) else 401)
        data, mime = self.files[mid]
        return web.Response(body=data, content_type=mime)


def check_message(m: dict[str, Any]) -> str:
    """What Meta would refuse in a /messages body ("" when it is fine)."""
    if m.get("messaging_product") != "whatsapp" or not isinstance(m.get("to"), str):
        return "messaging_product and to are required"
    kind = m.get("type", "text")
    body = m.get(kind)
    if not isinstance(body, dict):
        return f"{kind} object is required"
    if kind == "text":
        if not 1 <= len(body.get("body") or "") <= 4096:
            return "text.body must be 1-4096 characters"
    elif kind == "interactive":
        if not 1 <= len((body.get("body") or {}).get("text") or "") <= 1024:
            return "interactive.body.text must be 1-1024 characters"
        action = body.get("action") or {}
        if body.get("type") == "button":
            buttons = action.get("buttons") or []
            titles = [b["reply"]["title"] for b in buttons]
            if not 1 <= len(buttons) <= 3 or any(not 1 <= len(t) <= 20 for t in titles) or len(set(titles)) < len(titles):
                return "1-3 buttons with unique titles of at most 20 characters"
        elif body.get("type") == "list":
            rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
            if not 1 <= len(rows) <= 10 or not 1 <= len(action.get("button") or "") <= 20:
                return "a list has 1-10 rows and a button label of at most 20 characters"
            if any(len(r.get("title", "")) > 24 or len(r.get("description", "")) > 72 for r in rows):
                return "row titles are at most 24 characters, descriptions 72"
        else:
            return "interactive.type not supported by this fake"
    elif kind == "template":
        if not body.get("name") or not (body.get("language") or {}).get("code"):
            return "template.name and template.language.code are required"
    elif kind in ("image", "document"):
        if not body.get("id") and not body.get("link"):
            return f"{kind}.id or link is required"
    return ""


# -- webhook bodies, as Meta sends them ----------------------------------------------------

def _envelope(value: dict[str, Any], phone_number_id: str = "1098765") -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id}, **value}}]}]}


def _message(wa_id: str, kind: str, body: Any, *, wamid: Optional[str] = None, ts: Optional[int] = None,
             name: str = "Maria Lopez") -> dict[str, Any]:
    msg = {"from": wa_id, "id": wamid or f"wamid.IN{next(_ids):06d}", "timestamp": str(ts or int(time.time())),
           "type": kind}
    if kind == "contacts":
        msg["contacts"] = body
    else:
        msg[kind] = body
    return _envelope({"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [msg]})


def text_message(wa_id: str, text: str, **kw: Any) -> dict[str, Any]:
    return _message(wa_id, "text", {"body": text}, **kw)


def button_reply(wa_id: str, reply_id: str, title: str, **kw: Any) -> dict[str, Any]:
    return _message(wa_id, "interactive", {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}},
                    **kw)


def list_reply(wa_id: str, reply_id: str, title: str, **kw: Any) -> dict[str, Any]:
    return _message(wa_id, "interactive", {"type": "list_reply", "list_reply": {"id": reply_id, "title": title}},
                    **kw)


def image_message(wa_id: str, media_id: str, *, caption: str = "", mime: str = "image/png", **kw: Any
                  ) -> dict[str, Any]:
    return _message(wa_id, "image", {"id": media_id, "mime_type": mime, "sha256": "x", "caption": caption}, **kw)


def location_message(wa_id: str, lat: float, lon: float, name: str = "", address: str = "", **kw: Any
                     ) -> dict[str, Any]:
    return _message(wa_id, "location", {"latitude": lat, "longitude": lon, "name": name, "address": address}, **kw)


def contacts_message(wa_id: str, name: str, phone: str, **kw: Any) -> dict[str, Any]:
    return _message(wa_id, "contacts", [{"name": {"formatted_name": name, "first_name": name},
                                         "phones": [{"phone": phone, "type": "CELL"}]}], **kw)


def status_update(wamid: str, status: str, wa_id: str, *, code: Optional[int] = None, title: str = "",
                  ts: Optional[int] = None) -> dict[str, Any]:
    s: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(ts or int(time.time())),
                         "recipient_id": wa_id}
    if status == "failed":
        s["errors"] = [{"code": code or 131026, "title": title or "Message undeliverable"}]
    return _envelope({"statuses": [s]})


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver_webhook(http: aiohttp.ClientSession, url: str, payload: Any, secret: Optional[str]) -> int:
    """POST a webhook body as Meta does (signed with ``secret``; None: no signature); the status."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    async with http.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status
