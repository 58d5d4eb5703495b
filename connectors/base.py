"""What every channel connector provides.

A connector turns platform payloads into :class:`bot.model.Inbound` and hands
them to the runtime (which persists before the connector acknowledges), and
sends outbound messages. It never retries by itself: it says whether a failure
is transient (:class:`TransientSendError`) or permanent
(:class:`PermanentSendError`), and :mod:`bot.delivery` does the rest.

A channel that limits when a business may write (WhatsApp's 24-hour window) also offers
``async def reply_window(external_id) -> dict``: ``{"open": bool, "closes_at": ISO time or
None, "rule": what limits it, "outside": what happens to a reply sent when it is closed}``; the
agent desk shows it beside the conversation. Channels without a limit do not define it.

A channel whose platform reports a send's fate later, by message id (WhatsApp's statuses), may
offer ``async def record_sent(item, platform_id, *, now) -> (next due OutboxItem or None, failure
reason or None)``: :mod:`bot.delivery` then records a successful send with it instead of
``Store.mark_sent_next``, so the connector's own record of the send shares that transaction. A
failure reason means the platform said "failed" before the record: the message is recorded
failed, and the desks are told.

When the runtime cannot store a message (:class:`bot.errors.StorageUnavailable`),
a connector does not acknowledge it: HTTP ingress answers 503 with
``Retry-After: RETRY_AFTER_UNAVAILABLE`` so the platform delivers it again.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.errors import PermanentSendError, TransientSendError
from bot.storage import OutboxItem

__all__ = ["BatchConnector", "Connector", "PermanentSendError", "RETRY_AFTER_UNAVAILABLE", "TransientSendError",
           "read_body"]

log = logging.getLogger(__name__)

RETRY_AFTER_UNAVAILABLE = 5     # seconds, in a 503's Retry-After when storage cannot write


@runtime_checkable
class Connector(Protocol):
    name: str

    async def start(self) -> None:
        """Start polling or background work (routes are mounted when the app is built)."""

    async def stop(self) -> None:
        """Close sockets and pollers; idempotent."""

    async def send(self, item: OutboxItem) -> str:
        """Deliver one message; return the platform's message id.

        Raises:
            TransientSendError: try again later.
            PermanentSendError: give up on this message.
        """


@runtime_checkable
class BatchConnector(Connector, Protocol):
    """A connector that sends one turn's replies as ONE platform message (e-mail: one mail
    per customer mail). :mod:`bot.delivery` hands it the head of a conversation's outbox
    together with the other pending replies of the same turn, and records the outcome for all
    of them; connectors without ``send_batch`` get one message per ``send``.
    """

    async def send_batch(self, items: list[OutboxItem]) -> str:
        """Deliver ``items`` (one turn, in order) as one message; return its platform id.

        Raises:
            TransientSendError: try them again later (together).
            PermanentSendError: give up on all of them.
        """


async def read_body(request: web.Request) -> bytes | None:
    """The whole request body, or None (one WARNING) when it ended early: the client stopped
    sending before Content-Length, or a chunked body is broken. Answer such a request 400;
    the client may be gone already."""
    try:
        return await request.read()
    except (ConnectionResetError, HttpProcessingError) as exc:
        log.warning("%s %s: the request body ended early (%s); refused", request.method, request.path,
                    type(exc).__name__)
        return None
