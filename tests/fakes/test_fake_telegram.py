"""The fake Telegram answers the real python-telegram-bot ``Bot`` like the Bot API does."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import warnings
from datetime import timedelta
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from fakes.telegram_api import (
    NGINX_502,
    FakeTelegram,
    callback_update,
    command_update,
    deliver_webhook,
    document_update,
    photo_update,
    text_update,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24 + b"fake-image-bytes"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    tg = FakeTelegram()
    await tg.start()
    try:
        yield tg
    finally:
        await tg.stop()


def make_bot(fake: FakeTelegram, **kwargs) -> Bot:
    return Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url, **kwargs)


async def test_urls_and_get_me(fake: FakeTelegram) -> None:
    bot = make_bot(fake)
    assert bot.base_url == f"{fake.url}/bot{fake.token}"
    assert bot.base_file_url == f"{fake.url}/file/bot{fake.token}"
    async with bot:                                   # initialize() == getMe (once)
        assert [c.method for c in fake.calls] == ["getMe"]
        me = await bot.get_me()
        assert (me.id, me.is_bot, me.username, me.first_name) == (123456, True, "omnibot_test_bot", "Omnibot")
        assert bot.username == "omnibot_test_bot" and bot.id == 123456
    assert fake.calls[0].path == "/bot<token>/getMe"

    with pytest.raises(InvalidToken):                 # 401 Unauthorized
        async with Bot("999:wrong", base_url=fake.base_url):
            pass
    assert fake.calls[-1].failed and fake.calls[-1].status == 401


async def test_send_message_with_keyboard_is_recorded_decoded(fake: FakeTelegram) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes"),
                                    InlineKeyboardButton("No", callback_data="no")]])
    async with make_bot(fake) as bot:
        first = await bot.send_message(chat_id=42, text="<b>Pick</b> one &amp; go", parse_mode="HTML",
                                       reply_markup=markup, disable_web_page_preview=True)
        second = await bot.send_message(chat_id=42, text="plain")
        other = await bot.send_message(chat_id=7, text="elsewhere")
    assert first.message_id + 1 == second.message_id and other.message_id == 1
    assert first.chat.id == 42 and first.chat.type == "private" and first.from_user.id == 123456
    assert first.text == "Pick one & go" and first.entities[0].type == "bold" and first.entities[0].length == 4
    assert first.reply_markup == markup and second.reply_markup is None

    [call, _, _] = await fake.wait_for("sendMessage", count=3)
    assert call.args["chat_id"] == 42 and call.args["text"] == "<b>Pick</b> one &amp; go"
    assert call.args["reply_markup"] == {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"},
                                                              {"text": "No", "callback_data": "no"}]]}
    assert call.args["link_preview_options"] == {"is_disabled": True}   # PTB 22 turns the old flag into this
    assert call.response["message_id"] == first.message_id and not call.failed
    assert [m["text"] for m in fake.sent_to(42)] == ["Pick one & go", "plain"]


async def test_edit_answer_and_chat_action(fake: FakeTelegram) -> None:
    async with make_bot(fake) as bot:
        msg = await bot.send_message(chat_id=5, text="Choose",
                                     reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]]))
        edited = await bot.edit_message_text("Chosen: A", chat_id=5, message_id=msg.message_id)
        assert edited.text == "Chosen: A" and edited.reply_markup is None and edited.edit_date is not None
        again = await bot.edit_message_reply_markup(chat_id=5, message_id=msg.message_id)
        assert again.message_id == msg.message_id
        assert await bot.answer_callback_query("123", text="ok") is True
        assert await bot.send_chat_action(chat_id=5, action="typing") is True
    assert fake.calls_to("answerCallbackQuery")[0].args == {"callback_query_id": "123", "text": "ok"}


async def test_retry_after_without_and_with_ptb_timedelta(fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.fail_next("sendMessage", status=429, retry_after=3)
    fake.fail_next("sendMessage", status=429, retry_after=3)
    async with make_bot(fake) as bot:
        # PTB 22.8 without PTB_TIMEDELTA: retry_after is an int, and EVERY read of it warns,
        # including two reads inside RetryAfter.__init__ (so merely raising it warns twice).
        monkeypatch.delenv("PTB_TIMEDELTA", raising=False)
        with pytest.warns(PTBDeprecationWarning, match="retry_after") as raised:
            with pytest.raises(RetryAfter) as err:
                await bot.send_message(chat_id=1, text="hi")
        assert len(raised) == 2
        with pytest.warns(PTBDeprecationWarning, match="retry_after"):
            assert err.value.retry_after == 3
        assert str(err.value) == "Flood control exceeded. Retry in 3 seconds"

        # PTB_TIMEDELTA=1 (read at each access, not at import): a timedelta and no warning
        monkeypatch.setenv("PTB_TIMEDELTA", "1")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(RetryAfter) as err2:
                await bot.send_message(chat_id=1, text="hi")
            assert err2.value.retry_after == timedelta(seconds=3)
        assert str(err2.value) == "Flood control exceeded. Retry in 0:00:03"

        sent = await bot.send_message(chat_id=1, text="hi")   # the faults are used up
    failed = [c for c in fake.calls_to("sendMessage") if c.failed]
    assert [(c.status, c.injected) for c in failed] == [(429, True), (429, True)]
    assert sent.message_id == 1                                # failed sends use no message id


async def test_errors_map_to_ptb_exceptions(fake: FakeTelegram) -> None:
    async with make_bot(fake) as bot:
        with pytest.raises(BadRequest, match="Invalid file_id"):   # PTB drops "Bad Request: ", capitalizes
            await bot.get_file("nope")
        fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(chat_id=1, text="x")
        fake.fail_next("sendMessage", status=403)
        with pytest.raises(Forbidden, match="blocked"):
            await bot.send_message(chat_id=1, text="x")
        fake.fail_next("sendMessage", status=500)
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(chat_id=1, text="x")
        fake.fail_next("sendMessage", status=502, body=NGINX_502)
        with pytest.raises(NetworkError, match=r"Bad Gateway \(502\)"):
            await bot.send_message(chat_id=1, text="x")
        # only the chat the fault is meant for
        fake.fail_next("sendMessage", status=429, retry_after=1, chat_id=2)
        assert (await bot.send_message(chat_id=1, text="x")).chat.id == 1
        with pytest.raises(RetryAfter), warnings.catch_warnings():
            warnings.simplefilter("ignore", PTBDeprecationWarning)    # see the retry_after test
            await bot.send_message(chat_id=2, text="x")
        # what Telegram itself refuses
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await bot.send_message(chat_id=1, text="1 < 2 <b>", parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(chat_id=1, text="x" * 4097)
        assert (await bot.send_message(chat_id=1, text="&lt;" * 4096, parse_mode="HTML")).text == "<" * 4096
    statuses = [(c.status, c.injected) for c in fake.calls_to("sendMessage") if c.failed]
    assert statuses == [(400, True), (403, True), (500, True), (502, True), (429, True), (400, False), (400, False)]


async def test_timeout_still_takes_effect(fake: FakeTelegram) -> None:
    fake.delay_next("sendMessage", 1.0)
    async with make_bot(fake, request=HTTPXRequest(read_timeout=0.3)) as bot:
        with pytest.raises(TimedOut):
            await bot.send_message(chat_id=9, text="slow")
        await asyncio.sleep(0.9)
    [call] = fake.calls_to("sendMessage")
    assert call.delayed == 1.0 and not call.failed
    assert [m["text"] for m in fake.sent_to(9)] == ["slow"]     # sent although the client gave up


async def test_get_updates_offset_limit_and_long_poll(fake: FakeTelegram) -> None:
    fake.add_file("PHOTO1", PNG)
    ids = [
        fake.push_update(command_update(100, "/start", payload="campaign42", first_name="Olga")),
        fake.push_update(text_update(100, "hello")),
        fake.push_update(photo_update(100, "PHOTO1", caption="damage")),
        fake.push_update(document_update(100, "DOC1", "invoice.pdf", "application/pdf")),
    ]
    assert ids == [1, 2, 3, 4]
    async with make_bot(fake) as bot:
        sent = await bot.send_message(chat_id=100, text="Pick",
                                      reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]]))
        fake.push_update(callback_update(100, "go", message_id=sent.message_id))

        updates = await bot.get_updates(limit=2)
        assert [type(u) for u in updates] == [Update, Update] and [u.update_id for u in updates] == [1, 2]
        start = updates[0].message
        assert start.text == "/start campaign42" and start.entities[0].type == "bot_command"
        assert start.from_user.first_name == "Olga" and start.chat.type == "private"
        assert updates[1].message.text == "hello" and updates[1].message.message_id == 2

        updates = await bot.get_updates(offset=3)           # confirms 1 and 2
        assert fake.confirmed_offset == 3 and [u.update_id for u in updates] == [3, 4, 5]
        photo = updates[0].message
        assert photo.caption == "damage" and photo.photo[-1].file_id == "PHOTO1" and len(photo.photo) == 4
        assert updates[1].message.document.file_name == "invoice.pdf"
        cq = updates[2].callback_query
        assert cq.data == "go" and cq.message.message_id == sent.message_id and cq.from_user.id == 100
        assert cq.message.reply_markup.inline_keyboard[0][0].text == "Go"   # the message the fake sent
        assert sent.message_id == 5           # one id sequence per chat: the customer's 4, then the bot's

        assert [u.update_id for u in await bot.get_updates(offset=5)] == [5]   # unconfirmed come back

        t0 = time.monotonic()
        assert await bot.get_updates(offset=6, timeout=30) == ()            # a tuple; waits min(30, 1.0) s
        assert 0.9 <= time.monotonic() - t0 < 2.5 and fake.updates == []

        later = asyncio.get_running_loop().call_later(0.2, fake.push_update, text_update(100, "late"))
        t0 = time.monotonic()
        [late] = await bot.get_updates(offset=6, timeout=30)                  # wakes on push
        assert late.message.text == "late" and time.monotonic() - t0 < 0.9
        later.cancel()
    assert fake.calls_to("getUpdates")[1].args == {"offset": 3}


async def test_concurrent_get_updates_conflict(fake: FakeTelegram) -> None:
    # two bot instances polling (one Bot's own get_updates pool has a single connection)
    async with make_bot(fake) as bot, make_bot(fake) as other:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await fake.wait_for("getUpdates")
        second = asyncio.create_task(other.get_updates(timeout=5))
        with pytest.raises(Conflict, match="terminated by other getUpdates"):
            await first
        fake.push_update(text_update(1, "x"))
        assert len(await second) == 1
    assert [c.status for c in fake.calls_to("getUpdates")] == [409, 200]


async def test_get_file_and_download(fake: FakeTelegram) -> None:
    info = fake.add_file("PHOTO1", PNG, file_path="photos/file_1.jpg")
    assert info == {"file_id": "PHOTO1", "file_unique_id": info["file_unique_id"], "file_size": len(PNG),
                    "file_path": "photos/file_1.jpg"}
    async with make_bot(fake) as bot:
        f = await bot.get_file("PHOTO1")
        assert f.file_path == f"{fake.base_file_url}{fake.token}/photos/file_1.jpg"   # PTB makes it absolute
        assert f.file_size == len(PNG)
        assert bytes(await f.download_as_bytearray()) == PNG
        fake.fail_next("download", status=502)
        with pytest.raises(NetworkError):
            await f.download_as_bytearray()
    assert [c.args["file_path"] for c in fake.calls_to("download")] == ["photos/file_1.jpg"] * 2


async def test_webhook_registration_and_delivery(fake: FakeTelegram) -> None:
    received: list[tuple[dict, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with make_bot(fake) as bot:
            assert await bot.set_webhook("https://bot.example.com/telegram/webhook", secret_token="s3cret_tok-1",
                                         allowed_updates=["message", "callback_query"])
            [call] = fake.calls_to("setWebhook")
            assert call.args["url"] == "https://bot.example.com/telegram/webhook"
            assert call.args["secret_token"] == "s3cret_tok-1"
            assert call.args["allowed_updates"] == ["message", "callback_query"]
            assert (await bot.get_webhook_info()).url == "https://bot.example.com/telegram/webhook"
            with pytest.raises(Conflict, match="webhook is active"):
                await bot.get_updates()
            with pytest.raises(BadRequest, match="an https url must be provided"):   # lower-cased by PTB
                await bot.set_webhook("http://bot.example.com/hook")
            assert await bot.delete_webhook()
            assert (await bot.get_webhook_info()).url == ""
            assert await bot.get_updates() == ()
        async with aiohttp.ClientSession() as session:
            upd = text_update(77, "via webhook")
            assert await deliver_webhook(session, f"http://127.0.0.1:{port}/hook", upd, "s3cret_tok-1") == 200
            assert await deliver_webhook(session, f"http://127.0.0.1:{port}/hook", upd, None) == 200
    finally:
        await runner.cleanup()
    assert received == [(upd, "s3cret_tok-1"), (upd, None)]


async def test_httpx_and_ptb_log_the_token(fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    """Not a fake feature: documents that httpx (INFO) and PTB (DEBUG) put the token in log records.

    (Other tests leave bot.logs' redacting handler on the root logger; it rewrites the shared
    record before caplog sees it, so the token may show as ``***`` here.)
    """
    caplog.set_level(logging.DEBUG)
    # bot.logs.setup_logging (run by other tests) leaves "httpx" at WARNING; set it here explicitly
    caplog.set_level(logging.INFO, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="telegram")
    async with make_bot(fake):
        pass
    [httpx_line] = [r for r in caplog.records if r.name == "httpx"]
    assert httpx_line.levelno == logging.INFO
    url = rf"{re.escape(fake.url)}/(bot{re.escape(fake.token)}|(bot)?\*\*\*)/getMe"
    assert re.fullmatch(rf'HTTP Request: POST {url} "HTTP/1.1 200 OK"', httpx_line.getMessage())
    urls = [r for r in caplog.records if r.name == "telegram.Bot" and "Set Bot API URL" in r.getMessage()]
    assert urls and all(r.levelno == logging.DEBUG for r in urls)
