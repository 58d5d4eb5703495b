"""The widget in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from conftest import Running, agent_headers

CHROMIUM = os.environ.get("OMNIBOT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic",
        # keep the browser on loopback: no lookups of Google's hosts on a closed network
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"]


@pytest.fixture
async def page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run scripts/install-test-deps.sh (make test does)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        pg = await context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        await browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


async def test_widget_chat_handoff_and_reload(running: Running, page, tmp_path: Path) -> None:
    r = running
    await page.goto(r.url + "/?chat=open")
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)

    async def send(text: str) -> None:
        await root.locator("#omnibot-input").fill(text)
        await root.locator("#omnibot-send").click()

    bot = root.locator(".omnibot-msg.omnibot-bot .omnibot-text")
    await send("when are you open?")
    await expect(bot.last).to_contain_text("Monday to Friday")

    # customer text is shown literally, never as HTML or a template
    await send("<b>bold?</b> {{ 7*7 }}")
    mine = root.locator(".omnibot-msg.omnibot-customer .omnibot-text").last
    await expect(mine).to_have_text("<b>bold?</b> {{ 7*7 }}")
    assert await root.locator("#omnibot-messages b").count() == 0
    await expect(root.locator(".omnibot-msg.omnibot-customer").last).to_have_attribute("data-status", "sent")

    # a quick-reply button
    await send("I want to complain")
    await expect(bot.last).to_contain_text("What is it about?")
    await root.locator("button.omnibot-quick", has_text="Shipping").last.click()
    await expect(bot.last).to_contain_text("order number")

    # a human, at any point
    await send("talk to a person")
    await expect(bot.last).to_contain_text("Customer Care team")
    await expect(root.locator("#omnibot-banner")).to_contain_text("queue")

    # the agent claims and answers; the widget shows it live
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [h] = (await resp.json())["handoffs"]
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/reply", headers=agent_headers(),
                           json={"text": "Hello, this is Anna. Let me check your parcel."}) as resp:
        assert resp.status == 200
    agent = root.locator(".omnibot-msg.omnibot-agent")
    await expect(agent.last.locator(".omnibot-text")).to_have_text("Hello, this is Anna. Let me check your parcel.")
    await expect(agent.last).to_contain_text("Anna")
    await page.screenshot(path=str(tmp_path / "widget.png"))

    # reload: the same conversation comes back with its history
    count = await root.locator(".omnibot-msg").count()
    await page.reload()
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)
    await expect(root.locator(".omnibot-msg")).to_have_count(count)
    await expect(root.locator(".omnibot-msg.omnibot-agent .omnibot-text").last).to_have_text(
        "Hello, this is Anna. Let me check your parcel.")

    # and the customer's next message reaches the agent
    await send("Thanks Anna!")
    await expect(root.locator(".omnibot-msg.omnibot-customer").last).to_have_attribute("data-status", "sent")
    async with r.http.get(f"{r.url}/agent/api/handoffs/{h['id']}", headers=agent_headers()) as resp:
        ctx = (await resp.json())["context"]
    assert ctx["transcript"][-1]["text"] == "Thanks Anna!"
