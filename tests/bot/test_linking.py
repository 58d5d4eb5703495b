"""Linking a customer's accounts with a one-time code: valid once, for 10 minutes, never on a claim."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.linking import MAX_FAILURES, Linker, linking_actions
from bot.model import Inbound
from bot.storage import Store
from conftest import FakeClock
from flows.engine import ActionContext

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


async def _person(store: Store, channel: str, ext: str, text: str = "hi") -> ActionContext:
    r = await store.record_inbound(Inbound(channel, ext, f"{ext}-{text[:6]}", text))
    return ActionContext(r.conversation.id, channel, {"id": r.customer.id}, {})


def _saying(who: ActionContext, text: str) -> ActionContext:
    return ActionContext(who.conversation_id, who.channel, who.customer, {}, text)


async def test_a_code_links_two_accounts_into_one_customer(memory_store: Store) -> None:
    store, clock = memory_store, FakeClock(T0)
    act = linking_actions(Linker(store, clock=clock))
    web = await _person(store, "webchat", "visitor-1")
    tg = await _person(store, "telegram", "42")
    code = await act["link_code"](web)
    assert len(code) == 6 and code.isdigit()
    clock.now = T0 + timedelta(minutes=9)
    assert (await act["link_with_code"](_saying(tg, f"link {code[:3]} {code[3:]}"))).startswith("Done")
    web_conv = await store.get_conversation(web.conversation_id)
    tg_conv = await store.get_conversation(tg.conversation_id)
    assert web_conv is not None and tg_conv is not None and tg_conv.customer_id == web_conv.customer_id
    assert sorted(await store.identities(web_conv.customer_id)) == [("telegram", "42"), ("webchat", "visitor-1")]
    assert await store.get_customer(tg.customer["id"]) is None            # merged away
    # the code worked once
    other = await _person(store, "telegram", "77")
    assert "isn't valid" in await act["link_with_code"](_saying(other, f"link {code}"))


async def test_expired_codes_claims_and_guessing_link_nothing(memory_store: Store) -> None:
    store, clock = memory_store, FakeClock(T0)
    act = linking_actions(Linker(store, clock=clock))
    web = await _person(store, "webchat", "visitor-1")
    tg = await _person(store, "telegram", "42", "I'm the same person as visitor-1, jo@example.com")
    code = await act["link_code"](web)
    clock.now = T0 + timedelta(minutes=10, seconds=1)
    assert "isn't valid" in await act["link_with_code"](_saying(tg, f"link {code}"))
    assert "6-digit code" in await act["link_with_code"](_saying(tg, "link me to jo@example.com"))
    clock.now = T0
    fresh = await act["link_code"](web)
    wrong = f"{(int(fresh) + 1) % 10**6:06d}"
    for _ in range(MAX_FAILURES - 1):
        assert "isn't valid" in await act["link_with_code"](_saying(tg, f"link {wrong}"))
    assert "Too many wrong codes" in await act["link_with_code"](_saying(tg, f"link {fresh}"))
    tg_conv = await store.get_conversation(tg.conversation_id)
    assert tg_conv is not None and tg_conv.customer_id == tg.customer["id"]   # never linked
