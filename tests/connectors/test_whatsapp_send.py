"""WhatsApp's per-reply POST over connectors/lean_http.py: against the fake Graph API it reuses one
connection, maps Graph errors as before, and an unreachable or hanging-up Graph API is a transient
failure (the outbox retries), never an unhandled error."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from bot.config import WhatsAppConfig
from bot.errors import PermanentSendError, TransientSendError
from bot.model import Message
from bot.storage import OutboxItem
from connectors.whatsapp import WhatsAppConnector
from fakes.whatsapp_api import FakeWhatsApp


@pytest.fixture
async def fake() -> AsyncIterator[FakeWhatsApp]:
    f = FakeWhatsApp()
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


def item(n: int, to: str = "4915550001") -> OutboxItem:
    msg = Message(id=n, conversation_id="c1", direction="out", role="bot", text=f"answer {n}",
                  created_at=datetime.now(timezone.utc))
    return OutboxItem(message=msg, channel="whatsapp", external_id=to, attempts=0)


async def connector(api_url: str, fake: FakeWhatsApp | None = None) -> WhatsAppConnector:
    cfg = WhatsAppConfig(access_token=fake.token if fake else "t", phone_number_id=fake.phone_number_id if fake
                         else "1", app_secret="s", verify_token="v", api_url=api_url,
                         api_version=fake.version if fake else "v21.0")
    wa = WhatsAppConnector(config=cfg, accept=None, store=None, media=None)  # type: ignore[arg-type]

    async def window_open(wa_id: str) -> bool:      # inside the 24-hour window (no store here)
        return True
    wa.window_open = window_open  # type: ignore[method-assign]
    await wa.start()
    return wa


async def test_replies_share_one_keep_alive_connection(fake: FakeWhatsApp) -> None:
    wa = await connector(fake.url, fake)
    try:
        ids = [await wa.send(item(n)) for n in range(3)]
        fake.fail_next("messages", status=400, code=131026, message="Message undeliverable")
        with pytest.raises(PermanentSendError, match="could not deliver"):
            await wa.send(item(9))
        fake.fail_next("messages", status=429, code=130429, message="Rate limit hit", headers={"Retry-After": "4"})
        with pytest.raises(TransientSendError) as limited:
            await wa.send(item(10))
        assert limited.value.retry_after == 4
        assert wa._lean is not None and wa._lean.connections_made == 1
    finally:
        await wa.stop()
    assert all(i.startswith("wamid.") for i in ids) and len(set(ids)) == 3
    sent = fake.calls_to("messages")
    assert [c.args["text"]["body"] for c in sent[:3]] == ["answer 0", "answer 1", "answer 2"]
    assert sent[0].args["to"] == "4915550001" and sent[0].args["messaging_product"] == "whatsapp"


async def test_unreachable_or_hanging_up_graph_api_is_transient() -> None:
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wa = await connector(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TransientSendError, match="Graph API unreachable: ConnectionRefusedError"):
            await wa.send(item(1))
    finally:
        await wa.stop()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()
    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    wa = await connector(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        with pytest.raises(TransientSendError, match="Graph API unreachable: ServerDisconnected"):
            await wa.send(item(2))
    finally:
        await wa.stop()
        server.close()
        await server.wait_closed()
