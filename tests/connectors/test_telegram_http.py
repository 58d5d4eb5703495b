"""AiohttpRequest: the real python-telegram-bot ``Bot`` over aiohttp against the fake Bot API.

HTTP answers are mapped by PTB's BaseRequest from the status and body we return; transport
failures (timeouts, a full pool, a refused connection) are ours to map, as HTTPXRequest does.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

from connectors.telegram import retry_after_seconds
from connectors.telegram_http import AiohttpRequest
from fakes.telegram_api import NGINX_502, FakeTelegram

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24 + b"fake-image-bytes"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    tg = FakeTelegram()
    await tg.start()
    try:
        yield tg
    finally:
        await tg.stop()


def make_bot(fake: FakeTelegram, token: str | None = None, **kw: float | int) -> Bot:
    return Bot(token or fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url,
               request=AiohttpRequest(**kw))  # type: ignore[arg-type]


async def test_round_trip_form_fields_uploads_and_downloads(fake: FakeTelegram) -> None:
    fake.add_file("DOC1", b"%PDF-1.4 invoice", file_path="documents/invoice.pdf")
    async with make_bot(fake) as bot:
        assert bot.username == fake.bot_username             # getMe in initialize()
        sent = await bot.send_message(chat_id=42, text="<b>Hi</b> &amp; 1 &lt; 2", parse_mode="HTML")
        assert sent.text == "Hi & 1 < 2" and sent.chat.id == 42
        photo = await bot.send_photo(chat_id=42, photo=PNG, caption="look")
        doc = await bot.send_document(chat_id=42, document=b"a,b\n1,2\n", filename="rows.csv")
        data = bytes(await (await bot.get_file("DOC1")).download_as_bytearray())
    msg = fake.calls_to("sendMessage")[0]
    assert msg.args["chat_id"] == 42 and msg.args["parse_mode"] == "HTML"
    assert msg.headers["content-type"] == "application/json"        # the Bot API takes JSON but for uploads
    assert msg.headers["user-agent"].startswith("python-telegram-bot")
    up = fake.calls_to("sendPhoto")[0]
    assert up.headers["content-type"].startswith("multipart/form-data")
    assert up.files["photo"]["content"] == PNG and up.args["caption"] == "look" and up.args["chat_id"] == 42
    assert photo.photo and doc.document.file_name == "rows.csv"
    assert fake.calls_to("sendDocument")[0].files["document"]["content"] == b"a,b\n1,2\n"
    assert data == b"%PDF-1.4 invoice"


async def test_http_errors_become_ptb_errors(fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    fake.fail_next("sendMessage", status=403)
    fake.fail_next("sendMessage", status=429, retry_after=7)
    fake.fail_next("sendMessage", status=500)
    fake.fail_next("sendMessage", status=502, body=NGINX_502)
    fake.fail_next("sendMessage", status=400, description="Bad Request: group chat was upgraded",
                   parameters={"migrate_to_chat_id": -100123})
    async with make_bot(fake) as bot:
        with pytest.raises(BadRequest, match="(?i)chat not found"):
            await bot.send_message(chat_id=1, text="x")
        with pytest.raises(Forbidden, match="blocked by the user"):
            await bot.send_message(chat_id=1, text="x")
        with pytest.raises(RetryAfter) as ra:
            await bot.send_message(chat_id=1, text="x")
        assert retry_after_seconds(ra.value) == 7
        with pytest.raises(NetworkError, match="Internal Server Error") as e500:
            await bot.send_message(chat_id=1, text="x")
        assert not isinstance(e500.value, BadRequest)
        with pytest.raises(NetworkError, match="Bad Gateway") as e502:
            await bot.send_message(chat_id=1, text="x")
        assert not isinstance(e502.value, (BadRequest, TimedOut))
        with pytest.raises(ChatMigrated) as mig:
            await bot.send_message(chat_id=1, text="x")
        assert mig.value.new_chat_id == -100123
        assert (await bot.send_message(chat_id=1, text="after the faults")).text == "after the faults"
    with pytest.raises(InvalidToken):
        async with make_bot(fake, token="999:wrong-token"):
            pass


async def test_read_timeout_is_timed_out(fake: FakeTelegram) -> None:
    fake.delay_next("sendMessage", 1.0)
    async with make_bot(fake, read_timeout=0.2) as bot:
        with pytest.raises(TimedOut) as exc:
            await bot.send_message(chat_id=9, text="slow")
        assert fake.token not in str(exc.value)
        # per call, as PTB passes it: a longer read timeout waits the delay out
        fake.delay_next("sendMessage", 0.4)
        assert (await bot.send_message(chat_id=9, text="patient", read_timeout=2)).text == "patient"


async def test_full_pool_is_a_pool_timeout_and_nothing_is_sent(fake: FakeTelegram) -> None:
    fake.delay_next("sendMessage", 0.8, chat_id=1)
    async with make_bot(fake, connection_pool_size=1, pool_timeout=0.1) as bot:
        slow = asyncio.create_task(bot.send_message(chat_id=1, text="slow"))
        await fake.wait_for("sendMessage")
        with pytest.raises(TimedOut, match="Pool timeout"):
            await bot.send_message(chat_id=2, text="queued too long")
        await slow
        assert (await bot.send_message(chat_id=2, text="now")).text == "now"      # the slot came back
    assert [c.args["text"] for c in fake.calls_to("sendMessage")] == ["slow", "now"]


async def test_refused_connection_is_network_error_without_the_token() -> None:
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "123456:secret-token-value-0123456789"
    bot = Bot(token, base_url=f"http://127.0.0.1:{port}/bot", request=AiohttpRequest(connect_timeout=1))
    with pytest.raises(NetworkError) as exc:
        await bot.initialize()
    assert not isinstance(exc.value, TimedOut)
    # getMe is a POST without a proxy: connectors/lean_http.py's connection, an OSError of its own
    assert str(exc.value).startswith("ConnectionRefusedError")
    assert token not in str(exc.value)
    await bot.shutdown()


async def test_server_hanging_up_is_network_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()                     # no answer at all
    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        bot = Bot("123:abc", base_url=f"http://127.0.0.1:{port}/bot", request=AiohttpRequest(read_timeout=3))
        with pytest.raises(NetworkError) as exc:
            await bot.initialize()
        assert not isinstance(exc.value, TimedOut)
        # mapped here, not by PTB's catch-all ("Unknown error in HTTP implementation")
        assert str(exc.value).startswith("ServerDisconnected")
        await bot.shutdown()
    finally:
        server.close()
        await server.wait_closed()


async def test_session_is_shared_and_reopened_after_shutdown(fake: FakeTelegram) -> None:
    req = AiohttpRequest(read_timeout=3)
    bot = Bot(fake.token, base_url=fake.base_url, request=req)
    async with bot:
        session = req._session
        await asyncio.gather(*(bot.send_message(chat_id=i, text="x") for i in range(5)))
        assert req._session is session
    assert session is not None and session.closed
    with pytest.raises(NetworkError, match="not initialized"):   # PTB wraps the RuntimeError
        await bot.send_message(chat_id=1, text="x")
    async with bot:                                               # initialize() opens a new one
        assert (await bot.send_message(chat_id=1, text="again")).text == "again"
    assert req.read_timeout == 3         # PTB sizes getUpdates' read timeout from it


async def test_proxy_from_the_environment_is_used_and_no_proxy_honoured(fake: FakeTelegram, monkeypatch) -> None:
    """HTTP(S)_PROXY is honoured as PTB's httpx client honours it, and NO_PROXY bypasses it.

    The environment is read once per host while the session is open (not in a thread per
    request, as aiohttp's trust_env does): a new session reads it again."""
    import aiohttp
    from aiohttp import web

    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:      # a forward proxy, absolute-form targets
        seen.append(request.method + " " + request.path)
        async with aiohttp.ClientSession() as http, http.request(
                request.method, f"{fake.base_url.rsplit('/bot', 1)[0]}{request.path_qs}",
                data=await request.read(), headers={"Content-Type": request.content_type}) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type=resp.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    try:
        req = AiohttpRequest(read_timeout=3)
        bot = Bot(fake.token, base_url=fake.base_url, request=req)
        async with bot:
            assert (await bot.send_message(chat_id=1, text="via proxy")).text == "via proxy"
            assert (await bot.send_message(chat_id=1, text="again")).text == "again"
        assert [s.rsplit("/", 1)[-1] for s in seen] == ["getMe", "sendMessage", "sendMessage"]
        assert req._lean is not None and req._lean.connections_made == 0     # a proxy: aiohttp's path
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        async with bot:                                  # a new session reads the environment again
            assert (await bot.send_message(chat_id=1, text="direct")).text == "direct"
        assert len(seen) == 3
        assert [c.args["text"] for c in fake.calls_to("sendMessage")] == ["via proxy", "again", "direct"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("request_class", ["aiohttp", "httpx"])
async def test_send_text_body_with_either_request_class(fake: FakeTelegram, request_class: str) -> None:
    """The connector's sendMessage hands its plain values to the request object as they are; both
    our AiohttpRequest (JSON body) and PTB's HTTPXRequest (form fields: ``json_parameters``) must
    send the same message (bench/omnibot_httpx.py runs the connector over HTTPXRequest)."""
    from telegram.request import HTTPXRequest

    from connectors.telegram import _Bot

    request = AiohttpRequest() if request_class == "aiohttp" else HTTPXRequest()
    bot = _Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url,
               request=request)  # type: ignore[arg-type]
    keyboard = {"inline_keyboard": [[{"text": "Yes ✓", "callback_data": "yes"}]]}
    async with bot:
        mid = await bot.send_text(chat_id=4242, text="Größe «L» <b>ok</b>", parse_mode="HTML",
                                  reply_markup=keyboard)
    assert mid.isdigit()
    if request_class == "aiohttp":       # getMe and sendMessage: the lean client, one keep-alive connection
        assert request._lean is not None and request._lean.connections_made == 1
    [call] = fake.calls_to("sendMessage")
    assert call.args["chat_id"] in (4242, "4242")
    assert call.args["text"] == "Größe «L» <b>ok</b>"
    assert call.args["parse_mode"] == "HTML"
    markup = call.args["reply_markup"]
    assert (json.loads(markup) if isinstance(markup, str) else markup) == keyboard
    preview = call.args["link_preview_options"]
    assert (json.loads(preview) if isinstance(preview, str) else preview) == {"is_disabled": True}
