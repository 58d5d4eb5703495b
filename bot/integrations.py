"""Calling the business's systems over HTTP from a flow (``call:`` steps; README "Calling your systems").

One :class:`Integrations` holds the endpoints from config (``integrations.endpoints``) and one shared
aiohttp ``ClientSession``. :meth:`Integrations.call` never raises: every outcome is a
:class:`CallOutcome` the flow branches on (success, not found, another status, failure), so the
customer never sees an error.

A call that changes something (any method but GET) runs once per turn step: a turn replayed after
a crash gets the outcome of the first call from the store (``save_effect``), and the request carries
an ``Idempotency-Key`` header, the same on every attempt and replay, for systems that dedupe.

Each attempt is logged with the endpoint's name, the method, the step's path *template* (not the
customer's values), the status and the duration; the auth header is a secret (``Config.secrets``)
and is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol

import aiohttp
from yarl import URL

from bot.config import EndpointConfig, IntegrationsConfig

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1024 * 1024

OutcomeKind = Literal["success", "not_found", "status", "failure"]


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One call as a ``call:`` step rendered it."""

    endpoint: str
    method: str = "GET"
    path: str = ""                      # rendered; values already URL-encoded
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    key: str = ""                       # the turn step's key (see flows.turn.ActionContext.key); "" for none
    label: str = ""                     # the path template, for the log (no customer values)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    kind: OutcomeKind
    status: int | None = None
    data: Any = None                    # the JSON answer (success and status outcomes)
    reason: str = ""                    # why it failed, for the log and the agent (no secrets)

    def dump(self) -> dict[str, Any]:
        return {"kind": self.kind, "status": self.status, "data": self.data, "reason": self.reason}

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> "CallOutcome":
        return cls(d["kind"], d.get("status"), d.get("data"), d.get("reason", ""))


class Caller(Protocol):
    """What the flow engine needs to run ``call:`` steps."""

    def names(self) -> frozenset[str]: ...

    async def call(self, req: CallRequest) -> CallOutcome: ...


class Effects(Protocol):
    async def get_effect(self, key: str) -> Any: ...

    async def save_effect(self, key: str, value: Any) -> None: ...


class Integrations:
    """The configured endpoints and the shared HTTP client.

    Args:
        config: ``integrations`` from config.
        effects: where outcomes of non-GET calls are remembered by turn step (the store); None: not remembered.
        self_url: the URL this omnibot listens on, for endpoints whose base_url is a path (the demo API);
            set later with :meth:`listening` once the server is bound.
    """

    def __init__(self, config: IntegrationsConfig, *, effects: Effects | None = None,
                 self_url: str | None = None) -> None:
        self.config = config
        self.endpoints: dict[str, EndpointConfig] = dict(config.endpoints)
        self.effects = effects
        self.self_url = self_url
        self._session: aiohttp.ClientSession | None = None

    def names(self) -> frozenset[str]:
        return frozenset(self.endpoints)

    def listening(self, url: str) -> None:
        """This omnibot's own address (``http://127.0.0.1:8080``): relative base_urls resolve against it."""
        self.self_url = url.rstrip("/")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # one session for every call: connections are pooled and reused
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def call(self, req: CallRequest) -> CallOutcome:
        """Make the call (with the endpoint's retries); never raises."""
        ep = self.endpoints.get(req.endpoint)
        if ep is None:
            log.error("call %s: no such endpoint in config integrations.endpoints", req.endpoint)
            return CallOutcome("failure", reason=f"endpoint {req.endpoint!r} is not configured")
        once = req.method != "GET" and bool(req.key) and self.effects is not None
        effect_key = "call:" + req.key
        if once:
            done = await self.effects.get_effect(effect_key)  # type: ignore[union-attr]
            if done is not None:
                log.info("call %s %s %s: already made for this turn step (replay); not called again",
                         req.endpoint, req.method, req.label or "/")
                return CallOutcome.load(done)
        outcome = await self._attempts(ep, req)
        if once:
            await self.effects.save_effect(effect_key, outcome.dump())  # type: ignore[union-attr]
        return outcome

    def _url(self, ep: EndpointConfig, path: str) -> URL | None:
        base = ep.base_url
        if base.startswith("/"):
            if not self.self_url:
                return None
            base = self.self_url + base
        if path and not path.startswith("/"):
            path = "/" + path
        # encoded=True: the step's values were URL-encoded when the path was rendered; nothing is
        # decoded or normalised again (an order number "../admin" stays one encoded segment)
        return URL(base + path, encoded=True)

    async def _attempts(self, ep: EndpointConfig, req: CallRequest) -> CallOutcome:
        url = self._url(ep, req.path)
        if url is None:
            log.error("call %s: base_url %s is a path on this omnibot, whose address is not known yet",
                      req.endpoint, ep.base_url)
            return CallOutcome("failure", reason="this omnibot's own address is not known")
        headers = {"Accept": "application/json", **ep.headers}
        auth = ep.auth_header.get_secret_value()
        if auth:
            headers["Authorization"] = auth
        if req.method != "GET" and req.key:
            headers["Idempotency-Key"] = hashlib.sha256(req.key.encode()).hexdigest()[:32]
        label = req.label or "/"
        last = CallOutcome("failure", reason="not called")
        for attempt in range(ep.retries + 1):
            if attempt:
                await asyncio.sleep(ep.retry_delay * (2 ** (attempt - 1)))
            started = time.monotonic()
            status: int | None = None
            try:
                async with self._client().request(
                        req.method, url, params=dict(req.query) or None,
                        json=req.body if req.method != "GET" and req.body is not None else None,
                        headers=headers, timeout=aiohttp.ClientTimeout(total=ep.timeout),
                        allow_redirects=False) as resp:
                    status = resp.status
                    raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
            except asyncio.TimeoutError:
                last = CallOutcome("failure", reason=f"no answer within {ep.timeout:g}s")
            except aiohttp.ClientError as exc:
                last = CallOutcome("failure", reason=f"connection failed ({type(exc).__name__})")
            ms = (time.monotonic() - started) * 1000
            if status is None:
                log.warning("call %s %s %s: %s after %.0f ms (attempt %d of %d)", req.endpoint, req.method, label,
                            last.reason, ms, attempt + 1, ep.retries + 1)
                continue
            log.info("call %s %s %s: %d in %.0f ms (attempt %d of %d)", req.endpoint, req.method, label, status, ms,
                     attempt + 1, ep.retries + 1)
            if status >= 500:
                last = CallOutcome("failure", status, reason=f"the system answered {status}")
                continue
            return _answer(status, raw)
        return last


def _answer(status: int, raw: bytes) -> CallOutcome:
    if len(raw) > MAX_ANSWER_BYTES:
        return CallOutcome("failure", status, reason="the answer is larger than 1 MB")
    data: Any = None
    bad_json = False
    if raw.strip():
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            bad_json = True
    if status == 404:
        return CallOutcome("not_found", status, data if not bad_json else None)
    if 200 <= status < 300:
        if bad_json:
            return CallOutcome("failure", status, reason="the answer is not JSON")
        return CallOutcome("success", status, data)
    return CallOutcome("status", status, data if not bad_json else None, reason=f"the system answered {status}")


def dig(data: Any, path: str) -> Any:
    """The field ``path`` (``delivery.eta``, ``items.0.name``; ``.`` is all) of a JSON answer, or None."""
    if path in (".", ""):
        return data
    value = data
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
