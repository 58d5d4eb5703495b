"""WhatsApp's 24-hour window as the connector decides it: what this instance stored answers
"open" without a storage read; anything else (closed, unknown here, another instance's message)
is asked of storage (a real SQLite store)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from bot.config import WhatsAppConfig
from bot.model import Inbound
from bot.storage import Store, open_store
from connectors.whatsapp import WINDOW, Incoming, WhatsAppConnector

T0 = 1_790_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counting:
    """The real store, counting window reads."""

    def __init__(self, store: Store) -> None:
        self.store, self.reads = store, 0

    def __getattr__(self, name: str):      # everything else: the store itself
        return getattr(self.store, name)

    async def whatsapp_last_inbound(self, wa_id: str) -> int | None:
        self.reads += 1
        return await self.store.whatsapp_last_inbound(wa_id)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("sqlite:///:memory:")
    try:
        yield s
    finally:
        await s.close()


def _connector(store: Store, clock: Clock) -> WhatsAppConnector:
    cfg = WhatsAppConfig(access_token="t", phone_number_id="1", app_secret="s", verify_token="v")
    return WhatsAppConnector(config=cfg, accept=_accept, store=store, media=None, clock=clock)  # type: ignore[arg-type]


async def _accept(inbound: Inbound) -> None:
    return None


async def _customer_writes(wa: WhatsAppConnector, wa_id: str, at: int) -> None:
    await wa._store_incoming(Incoming(Inbound(channel="whatsapp", external_id=wa_id, platform_message_id=f"w{at}",
                                              text="hi"), at=at))


async def test_open_window_from_what_this_instance_stored_needs_no_read(store: Store) -> None:
    clock = Clock(T0)
    counting = Counting(store)
    wa = _connector(counting, clock)  # type: ignore[arg-type]
    await _customer_writes(wa, "4915", T0)
    clock.now = T0 + WINDOW - 1
    assert await wa.window_open("4915") and counting.reads == 0
    clock.now = T0 + WINDOW + 1                    # closed: storage is asked (another instance may know more)
    assert not await wa.window_open("4915") and counting.reads == 1


async def test_another_instances_message_is_read_from_storage(store: Store) -> None:
    clock = Clock(T0)
    one, other = Counting(store), Counting(store)
    a, b = _connector(one, clock), _connector(other, clock)  # type: ignore[arg-type]
    assert not await b.window_open("4915") and other.reads == 1         # nobody wrote yet
    await _customer_writes(a, "4915", T0)
    assert await b.window_open("4915") and other.reads == 2             # b learns it from storage
    clock.now = T0 + 3600
    assert await b.window_open("4915") and other.reads == 2             # and keeps it
    clock.now = T0 + WINDOW + 10
    await _customer_writes(a, "4915", T0 + WINDOW + 5)                   # the customer wrote again, via a
    assert await b.window_open("4915") and other.reads == 3             # b's own time is too old: it asks
