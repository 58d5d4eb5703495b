"""The hand-over card's delivery facts, read from a real store: failed messages, unreachable, other channels."""

from __future__ import annotations

import time
from pathlib import Path

from telegram.error import BadRequest, Forbidden, InvalidToken

from bot.config import Config
from bot.model import Inbound, Outbound
from bot.storage import Store
from conftest import make_config
from connectors.telegram import refusal_reason
from handoff.context import handoff_context


async def _turn(store: Store, ext: str, text: str, replies: list[str]) -> list[int]:
    r = await store.record_inbound(Inbound("telegram", ext, f"{ext}-{time.monotonic_ns()}", text))
    msgs = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                   replies=[Outbound(t, role="agent", sender_name="Anna") for t in replies])
    return [m.id for m in msgs]


async def _context(store: Store, config: Config, ext: str) -> dict:
    conv = await store.open_conversation("telegram", ext)
    h = await store.active_handoff(conv.id) or await store.create_handoff(conv.id, team="support", reason="asked")
    return await handoff_context(store, config, h)


async def test_failed_message_carries_its_reason_and_makes_the_customer_unreachable(
        memory_store: Store, tmp_path: Path) -> None:
    store, config = memory_store, make_config(tmp_path)
    [one, two] = await _turn(store, "77", "hi", ["one", "two"])
    await store.mark_sent(one, "tg-1")
    ctx = await _context(store, config, "77")
    assert ctx["unreachable"] is None                          # "two" is still pending: not a failure
    assert ctx["other_channels"] == []

    await store.mark_failed(two, error="the customer blocked the bot on Telegram")
    ctx = await _context(store, config, "77")
    by_id = {m["id"]: m for m in ctx["transcript"]}
    assert (by_id[one]["status"], by_id[one]["error"]) == ("sent", None)
    assert (by_id[two]["status"], by_id[two]["error"]) == ("failed", "the customer blocked the bot on Telegram")
    assert all(m["error"] is None for m in ctx["transcript"] if m["id"] != two)
    assert ctx["unreachable"]["reason"] == "the customer blocked the bot on Telegram"


async def test_failure_then_delivery_or_customer_message_clears_unreachable(memory_store: Store,
                                                                           tmp_path: Path) -> None:
    store, config = memory_store, make_config(tmp_path)
    conv_ids = await _turn(store, "88", "hi", ["first", "second", "third"])
    first, second, third = conv_ids
    await store.mark_failed(first, error="Telegram refused the message: Bad Request: x")
    await store.mark_failed(second, error="the customer blocked the bot on Telegram")
    ctx = await _context(store, config, "88")
    u = ctx["unreachable"]
    by_id = {m["id"]: m for m in ctx["transcript"]}
    # since: the first undelivered message; reason: the latest failure
    assert (u["channel"], u["reason"], u["message_id"]) == ("telegram", "the customer blocked the bot on Telegram",
                                                             second)
    assert u["since"] == by_id[first]["at"]

    await store.mark_sent(third, "tg-3")                       # a later message got through
    assert (await _context(store, config, "88"))["unreachable"] is None

    [fourth] = await _turn(store, "88", "still there?", ["fourth"])
    await store.mark_failed(fourth, error="the customer blocked the bot on Telegram")
    assert (await _context(store, config, "88"))["unreachable"]["message_id"] == fourth
    await _turn(store, "88", "hello again", [])                # the customer writes again
    assert (await _context(store, config, "88"))["unreachable"] is None


def test_telegram_refusals_become_reasons_an_agent_can_read() -> None:
    assert refusal_reason(Forbidden("Forbidden: bot was blocked by the user")) == \
        "the customer blocked the bot on Telegram"
    assert refusal_reason(Forbidden("Forbidden: user is deactivated")) == \
        "the customer's Telegram account was deleted"
    assert refusal_reason(BadRequest("Chat not found")) == "Telegram does not know this chat (chat not found)"
    assert refusal_reason(InvalidToken("Unauthorized")) == "Telegram refused the bot's token"
    assert refusal_reason(BadRequest("Message is too long")) == "Telegram refused the message: Message is too long"
