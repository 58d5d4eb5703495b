"""A reply that could not be delivered never looks sent (issue 21, item 1).

Real python-telegram-bot against the fake Bot API, which answers 403 "bot was blocked by the
user" (or keeps failing with 502) for one chat; the agent works the web desk over HTTP and its
WebSocket, as the agent page does.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from playwright.async_api import expect

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient
from e2e.test_telegram import fake, polling, say  # noqa: F401 (pytest fixtures)
from e2e.test_widget_browser import page  # noqa: F401 (pytest fixture)
from fakes.telegram_api import FakeTelegram, text_update

BLOCKED = "the customer blocked the bot on Telegram"


async def _claimed_handoff(r: Running, fake: FakeTelegram, chat_id: int) -> dict[str, Any]:  # noqa: F811
    await say(fake, chat_id, "I want to talk to a person", expect="queue")
    [h] = await agent_queue(r)
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200, await resp.text()
    return h


async def _context(r: Running, hid: str) -> dict[str, Any]:
    async with r.http.get(f"{r.url}/agent/api/handoffs/{hid}", headers=agent_headers()) as resp:
        assert resp.status == 200
        return (await resp.json())["context"]


async def _next_change(ws: aiohttp.ClientWebSocketResponse, event: str, timeout: float = 2.0) -> dict[str, Any]:
    """The next ``changed`` frame for ``event`` on the agent socket, within ``timeout`` seconds."""
    async def read() -> dict[str, Any]:
        while True:
            frame = await ws.receive_json()
            if frame.get("type") == "changed" and frame.get("event") == event:
                return frame
    return await asyncio.wait_for(read(), timeout)


async def _reply(r: Running, hid: str, text: str) -> dict[str, Any]:
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                           json={"text": text}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["message"]


async def test_blocked_telegram_customer_reply_is_marked_not_delivered(
        polling: Running, fake: FakeTelegram) -> None:  # noqa: F811
    r = polling
    # the customer also uses the web chat, linked to Telegram with a one-time code
    web = ChatClient(r.http, r.ws_url)
    welcome = await web.connect()
    try:
        [m] = await web.say("link my accounts")
        code = re.search(r'"link (\d{6})"', m["text"])
        assert code, m["text"]
        await say(fake, 4242, f"link {code.group(1)}", expect="Done: your accounts are linked")
    finally:
        await web.close()
    visitor = (await r.services.store.identities(
        (await r.services.store.open_conversation("telegram", "4242")).customer_id))
    web_ids = [ext for ch, ext in visitor if ch == "webchat"]
    assert len(web_ids) == 1 and welcome["token"]

    h = await _claimed_handoff(r, fake, 4242)
    ctx = await _context(r, h["id"])
    assert ctx["unreachable"] is None            # every message so far reached the customer

    # now the customer blocks the bot: every send to that chat answers 403
    fake.fail_next("sendMessage", status=403, chat_id=4242, times=1000)
    async with r.http.ws_connect(f"{r.url}/agent/ws", headers=agent_headers()) as ws:
        msg = await _reply(r, h["id"], "Your refund is on its way.")
        assert msg["status"] == "pending" and msg["error"] is None
        frame = await _next_change(ws, "delivery_failed")
    assert frame["handoff_id"] == h["id"] and frame["conversation_id"] == h["conversation_id"]
    assert (frame["message_id"], frame["reason"], frame["channel"]) == (msg["id"], BLOCKED, "telegram")
    assert frame["sender"] == "Anna"              # the name the customer would have seen
    assert any(c.failed and str(c.args.get("chat_id")) == "4242" for c in fake.calls_to("sendMessage"))

    # storage tells the same story to a desk that missed the event
    ctx = await _context(r, h["id"])
    [out] = [m for m in ctx["transcript"] if m["id"] == msg["id"]]
    assert (out["status"], out["error"]) == ("failed", BLOCKED)
    assert all(m["error"] is None for m in ctx["transcript"] if m["id"] != msg["id"])
    assert ctx["unreachable"]["channel"] == "telegram" and ctx["unreachable"]["reason"] == BLOCKED
    assert ctx["unreachable"]["since"] == out["at"]
    [other] = ctx["other_channels"]
    assert (other["channel"], other["external_id"]) == ("webchat", web_ids[0])
    assert other["conversation_id"]

    # the customer writes again on Telegram: reachable there once more
    before = len(ctx["transcript"])
    fake.push_update(text_update(4242, "hello? are you there"))
    for _ in range(100):
        ctx = await _context(r, h["id"])
        if len(ctx["transcript"]) > before:
            break
        await asyncio.sleep(0.05)
    assert ctx["transcript"][-1]["direction"] == "in"
    assert ctx["unreachable"] is None


async def test_retries_exhausted_is_announced_like_a_refusal(
        polling: Running, fake: FakeTelegram) -> None:  # noqa: F811
    r = polling
    h = await _claimed_handoff(r, fake, 5151)
    fake.fail_next("sendMessage", status=502, chat_id=5151, times=1000)   # Telegram down for this chat
    async with r.http.ws_connect(f"{r.url}/agent/ws", headers=agent_headers()) as ws:
        msg = await _reply(r, h["id"], "Are you still there?")
        # 8 attempts with backoff capped at 0.2 s (tests' delivery config)
        frame = await _next_change(ws, "delivery_failed", timeout=5.0)
    max_attempts = r.services.config.delivery.max_attempts
    assert frame["message_id"] == msg["id"] and frame["handoff_id"] == h["id"]
    assert frame["reason"].startswith(f"not delivered after {max_attempts} attempts: ")
    tries = [c for c in fake.calls_to("sendMessage") if str(c.args.get("chat_id")) == "5151" and c.failed]
    assert len(tries) == max_attempts
    ctx = await _context(r, h["id"])
    [out] = [m for m in ctx["transcript"] if m["id"] == msg["id"]]
    assert (out["status"], out["error"]) == ("failed", frame["reason"])
    assert ctx["unreachable"]["reason"] == frame["reason"]
    assert ctx["other_channels"] == []           # no other channel known for this customer


async def test_agent_page_marks_the_reply_not_delivered_live(polling: Running, fake: FakeTelegram,  # noqa: F811
                                                             page) -> None:  # noqa: F811
    """The /agent page in Debian's chromium: the reply shows "sending…", then "not delivered" with
    the reason and the banner, without a reload."""
    r = polling
    await _claimed_handoff(r, fake, 7070)
    desk = page
    await desk.goto(r.url + "/agent")
    await desk.locator("#login-name").fill("Anna Smith")
    await desk.locator("#login-token").fill("test-agent-token")
    await desk.locator("#login-btn").click()
    await expect(desk.locator("#conn")).to_have_text("Live", timeout=10_000)
    await desk.locator(".queue-item").first.click()
    await expect(desk.locator("#reply-form")).to_be_visible()
    await expect(desk.locator("#unreachable")).to_be_hidden()

    # blocked, and Telegram takes 1.5 s to say so: the page first shows the reply as sending
    fake.delay_next("sendMessage", 1.5, chat_id=7070)
    fake.fail_next("sendMessage", status=403, chat_id=7070, times=1000)
    await desk.locator("#reply-input").fill("We have sent a new parcel.")
    await desk.locator("#reply-send").click()
    mine = desk.locator("#transcript .msg.role-agent").last
    await expect(mine).to_contain_text("sending…")
    await expect(mine).to_contain_text("not delivered", timeout=5_000)
    await expect(mine.locator(".undelivered")).to_have_text(f"Not delivered: {BLOCKED}")
    await expect(mine).not_to_contain_text("sending…")
    banner = desk.locator("#unreachable")
    await expect(banner).to_have_text(f"Not reachable on Telegram: {BLOCKED}. No other channel known.")
