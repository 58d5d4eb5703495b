"""Telegram end to end: the real python-telegram-bot client against a fake Bot API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from conftest import Running, agent_headers, serving, start_app, stop_app
from e2e.apps import SECRET, fake_server, tg_config
from fakes.telegram_api import (FakeTelegram, callback_update, command_update, deliver_webhook, photo_update,
                                text_update)

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")


fake = fake_server(FakeTelegram)


@pytest.fixture
async def polling(tmp_path: Path, fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Running]:
    caplog.set_level(logging.DEBUG)          # from the start: the Bot logs its URL when built
    caplog.set_level(logging.DEBUG, logger="httpx")   # (the CLI's logging set-up quiets httpx)
    async with serving(tg_config(tmp_path, fake)) as r:
        yield r


def to_chat(chat_id: int, *, text: str | None = None) -> Any:
    return lambda c: str(c.args.get("chat_id")) == str(chat_id) and (text is None or text in c.args.get("text", ""))


async def say(fake: FakeTelegram, chat_id: int, text: str, expect: str, **kw: Any) -> Any:
    before = len([c for c in fake.calls_to("sendMessage") if to_chat(chat_id)(c) and not c.failed])
    fake.push_update(text_update(chat_id, text, **kw))
    calls = await fake.wait_for("sendMessage", predicate=lambda c: to_chat(chat_id, text=expect)(c) and not c.failed)
    assert len([c for c in fake.calls_to("sendMessage") if to_chat(chat_id)(c) and not c.failed]) > before
    return calls[-1]


async def test_polling_text_round_trip_and_offset(polling: Running, fake: FakeTelegram,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    fake.push_update(command_update(1001, "/start", payload="campaign42", first_name="Olga"))
    greet = await fake.wait_for("sendMessage", predicate=to_chat(1001, text="Hello Olga"))
    assert greet[0].args["parse_mode"] == "HTML"
    assert greet[0].args["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "intent:shipping_times"
    call = await say(fake, 1001, "when are you open?", "Monday to Friday")
    assert "Monday to Friday" in call.args["text"]
    # the deep-link payload is kept on the customer record
    conv = await polling.services.store.open_conversation("telegram", "1001")
    customer = await polling.services.store.get_customer(conv.customer_id)
    assert customer.attributes["telegram_start"] == "campaign42" and customer.display_name.startswith("Olga")
    # sent as PTB's send_message(disable_web_page_preview=True) sends it; the stored id is Telegram's
    assert greet[0].args["link_preview_options"] == {"is_disabled": True}
    sent = {c.response["message_id"] for c in fake.calls_to("sendMessage") if to_chat(1001)(c) and not c.failed}
    for _ in range(50):       # marked sent just after Telegram answered
        out = [m for m in await polling.services.store.history(conv.id) if m.direction == "out"]
        if out and all(m.platform_message_id for m in out):
            break
        await asyncio.sleep(0.05)
    assert out and {m.platform_message_id for m in out} <= {str(i) for i in sent}
    # updates were confirmed (offset advanced) only after being stored
    deadline = time.monotonic() + 5
    while fake.confirmed_offset < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await polling.services.store.get_meta("telegram:offset") == str(fake.confirmed_offset)
    # the bot token never reaches a log record (Bot API requests were logged, each URL holds it)
    assert any(r.name == "connectors.telegram_http" for r in caplog.records)
    assert not [r for r in caplog.records if fake.token in r.getMessage()]


async def test_webhook_delivers_and_refuses_bad_secret(tmp_path: Path, fake: FakeTelegram) -> None:
    r = await start_app(tg_config(tmp_path, fake, mode="webhook", webhook_url="https://bot.example.com/telegram/webhook"))
    try:
        hook = r.url + "/telegram/webhook"
        await fake.wait_for("setWebhook")
        assert fake.calls_to("setWebhook")[0].args["secret_token"] == SECRET
        assert await deliver_webhook(r.http, hook, text_update(2002, "what payment methods do you accept"),
                                     "wrong") == 401
        assert await deliver_webhook(r.http, hook, text_update(2002, "what payment methods do you accept"),
                                     None) == 401
        assert await r.services.store.open_conversation("telegram", "2002") is None     # nothing processed
        async with r.http.post(hook, data=b"{oops", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as resp:
            assert resp.status == 400
        upd = text_update(2002, "what payment methods do you accept")
        assert await deliver_webhook(r.http, hook, upd, SECRET) == 200
        # stored before the 200
        conv = await r.services.store.open_conversation("telegram", "2002")
        assert conv is not None and (await r.services.store.history(conv.id))[0].text.startswith("what payment")
        await fake.wait_for("sendMessage", predicate=to_chat(2002, text="PayPal"))
    finally:
        await stop_app(r)


async def test_complaint_with_photo_and_buttons_reaches_the_agent(polling: Running, fake: FakeTelegram) -> None:
    r = polling
    chat = 3003
    ask = await say(fake, chat, "I want to make a complaint", "What is it about?")
    buttons = [row[0] for row in ask.args["reply_markup"]["inline_keyboard"]]
    assert [b["callback_data"] for b in buttons] == ["product", "shipping", "payment", "service", "pricing"]
    fake.push_update(callback_update(chat, "product", message_id=int(ask.response["message_id"])
                                     if getattr(ask, "response", None) else 1))
    await fake.wait_for("answerCallbackQuery")
    await fake.wait_for("sendMessage", predicate=to_chat(chat, text="order number"))
    await say(fake, chat, "AB123456", "what happened")
    await say(fake, chat, "The vase arrived in pieces", "photo")
    fake.add_file("PHOTO1", PNG, file_path="photos/file_1.png")
    fake.push_update(photo_update(chat, "PHOTO1", caption="here"))
    await fake.wait_for("sendMessage", predicate=to_chat(chat, text="talk to a member"))
    await say(fake, chat, "yes", "Complaints team")

    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [h] = (await resp.json())["handoffs"]
    assert h["channel"] == "telegram"
    async with r.http.get(f"{r.url}/agent/api/handoffs/{h['id']}", headers=agent_headers()) as resp:
        ctx = (await resp.json())["context"]
    assert ctx["slots"]["category"] == "product" and ctx["slots"]["order_number"] == "AB123456"
    [photo] = ctx["slots"]["photos"]
    async with r.http.get(r.url + photo["url"], headers=agent_headers()) as resp:
        assert resp.status == 200 and await resp.read() == PNG

    # the agent's reply reaches the Telegram chat, escaped and signed
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200
    await fake.wait_for("sendMessage", predicate=to_chat(chat, text="Anna from Complaints has joined"))
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/reply", headers=agent_headers(),
                           json={"text": "Sorry! <b>New vase</b> & refund on the way"}) as resp:
        assert resp.status == 200
    [reply] = await fake.wait_for("sendMessage", predicate=to_chat(chat, text="New vase"))
    assert reply.args["text"] == "<b>Anna</b>: Sorry! &lt;b&gt;New vase&lt;/b&gt; &amp; refund on the way"


async def test_same_message_twice_is_answered_once(polling: Running, fake: FakeTelegram) -> None:
    upd = text_update(4004, "how long does shipping take", message_id=77)
    fake.push_update(upd)
    await fake.wait_for("sendMessage", predicate=to_chat(4004, text="working days"))
    again = dict(upd)
    again.pop("update_id", None)                 # the same message under another update id
    fake.push_update(again)
    await asyncio.sleep(1.5)
    assert len([c for c in fake.calls_to("sendMessage") if to_chat(4004)(c)]) == 1


async def test_flood_control_retry_after_then_delivered_once_in_order(polling: Running, fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", status=429, retry_after=1, chat_id=5005)
    fake.push_update(text_update(5005, "when are you open?"))
    fake.push_update(text_update(5005, "what payment methods do you accept"))
    fake.push_update(text_update(6006, "how do i return an item"))          # another chat is not held up
    other = await fake.wait_for("sendMessage", predicate=lambda c: to_chat(6006)(c) and not c.failed)
    ok = await fake.wait_for("sendMessage", count=2, timeout=10,
                             predicate=lambda c: to_chat(5005)(c) and not c.failed)
    failed = [c for c in fake.calls_to("sendMessage") if to_chat(5005)(c) and c.failed]
    assert len(failed) == 1
    assert "Monday to Friday" in ok[0].args["text"] and "PayPal" in ok[1].args["text"]      # order kept
    assert ok[0].time - failed[0].time >= 0.9                                               # retry_after honoured
    assert other[0].time < ok[0].time                                                       # not blocked
    await asyncio.sleep(0.5)
    assert len([c for c in fake.calls_to("sendMessage") if to_chat(5005)(c) and not c.failed]) == 2


async def test_group_chats_are_ignored_by_default(polling: Running, fake: FakeTelegram,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fake.push_update(text_update(-7007, "hello", chat_type="group"))
    fake.push_update(text_update(8008, "hello"))
    await fake.wait_for("sendMessage", predicate=to_chat(8008))
    assert not [c for c in fake.calls_to("sendMessage") if to_chat(-7007)(c)]
    assert any("group chat -7007 ignored" in r.getMessage() for r in caplog.records)


async def test_long_agent_reply_is_split(polling: Running, fake: FakeTelegram) -> None:
    r = polling
    await say(fake, 9009, "agent", "Customer Care")
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [h] = (await resp.json())["handoffs"]
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200
    text = ("All the details follow. " * 200).strip() + " <end>"
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/reply", headers=agent_headers(),
                           json={"text": text}) as resp:
        assert resp.status == 200
    parts = await fake.wait_for("sendMessage", count=2, predicate=to_chat(9009, text="details follow"))
    assert all(len(p.args["text"]) <= 4096 for p in parts)
    assert parts[-1].args["text"].endswith("&lt;end&gt;")


async def test_server_error_is_retried_with_backoff(polling: Running, fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", status=502, chat_id=1212, times=2)
    fake.push_update(text_update(1212, "when are you open?"))
    ok = await fake.wait_for("sendMessage", timeout=10, predicate=lambda c: to_chat(1212)(c) and not c.failed)
    failed = [c for c in fake.calls_to("sendMessage") if to_chat(1212)(c) and c.failed]
    assert len(failed) == 2 and len(ok) == 1 and "Monday to Friday" in ok[0].args["text"]
    assert failed[1].time - failed[0].time > 0.01          # backed off between attempts


async def test_readyz_reports_telegram_state(tmp_path: Path, fake: FakeTelegram) -> None:
    """Connected: ok. A refused token: failing, and the instance is taken out of rotation."""
    r = await start_app(tg_config(tmp_path / "good", fake))
    try:
        for _ in range(100):
            async with r.http.get(r.url + "/readyz") as resp:
                body = await resp.json()
            if body["connectors"].get("telegram") == "ok":
                break
            await asyncio.sleep(0.05)
        assert resp.status == 200 and body["connectors"] == {"webchat": "ok", "telegram": "ok"}
    finally:
        await stop_app(r)
    config = tg_config(tmp_path / "bad", fake)
    config = config.model_copy(update={"telegram": config.telegram.model_copy(
        update={"token": type(config.telegram.token)("999:wrong-token-abcdefghijklmnopqrst")})})
    r = await start_app(config)
    try:
        for _ in range(100):
            async with r.http.get(r.url + "/readyz") as resp:
                body = await resp.json()
            if body["connectors"]["telegram"] != "starting":
                break
            await asyncio.sleep(0.05)
        assert resp.status == 503
        assert body["connectors"]["telegram"] == "failing: Telegram refused the bot token"
        assert body["storage"] == "ok"
    finally:
        await stop_app(r)
