"""The WhatsApp connector's statuses: sent, delivered and read go to the one-statement
``whatsapp_note_status``; only ``failed`` takes ``whatsapp_apply_status`` (its lock, the message's
failed mark and the desks' notice). Issue 20: Meta sends up to three statuses per reply."""

from __future__ import annotations

from typing import Any

from bot.config import WhatsAppConfig
from connectors.whatsapp import Status, WhatsAppConnector


class Store:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def whatsapp_note_status(self, wamid: str, status: str) -> None:
        self.calls.append(("note", wamid, status))

    async def whatsapp_apply_status(self, wamid: str, status: str, *, error: str = "") -> dict[str, Any]:
        self.calls.append(("apply", wamid, status))
        return {"outcome": "failed_now", "message_id": 7, "conversation_id": "c1", "role": "bot", "sender": ""}


async def test_only_a_failure_takes_the_locked_transaction() -> None:
    cfg = WhatsAppConfig(access_token="t", phone_number_id="1", app_secret="s", verify_token="v")
    store = Store()
    told: list[Any] = []

    async def on_failed(conversation_id: str, **kw: Any) -> None:
        told.append((conversation_id, kw["message_id"], kw["reason"]))

    wa = WhatsAppConnector(config=cfg, accept=None, store=store, media=None,  # type: ignore[arg-type]
                           on_failed=on_failed)
    for st in ("sent", "delivered", "read"):
        assert await wa._apply_status(Status("wamid.A", st))
    assert await wa._apply_status(Status("wamid.A", "failed", "not delivered: x"))
    assert store.calls == [("note", "wamid.A", "sent"), ("note", "wamid.A", "delivered"),
                           ("note", "wamid.A", "read"), ("apply", "wamid.A", "failed")]
    assert told == [("c1", 7, "not delivered: x")]
