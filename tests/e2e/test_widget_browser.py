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


async def test_agent_desk_page_claims_and_answers(running: Running, page) -> None:
    """A customer in the widget, an agent in the /agent page, both in the browser."""
    r = running
    customer = page
    await customer.goto(r.url + "/?chat=open")
    root = customer.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)
    for text in ("I want to complain", "payment", "AB123456", "I was charged twice <i>!</i>", "skip",
                 "agent"):
        before = await root.locator(".omnibot-msg.omnibot-bot").count()
        await root.locator("#omnibot-input").fill(text)
        await root.locator("#omnibot-send").click()
        await expect(root.locator(".omnibot-msg.omnibot-bot")).not_to_have_count(before)
    await expect(root.locator(".omnibot-msg.omnibot-bot .omnibot-text").last).to_contain_text("Customer Care")

    desk = await customer.context.new_page()
    await desk.goto(r.url + "/agent")
    await desk.locator("#login-name").fill("Bob Jones")
    await desk.locator("#login-token").fill("test-agent-token")
    await desk.locator("#login-btn").click()
    item = desk.locator(".queue-item")
    await expect(item).to_have_count(1, timeout=10_000)
    await item.first.click()
    # the whole context: captured fields (customer text shown literally) and the transcript
    await expect(desk.locator('#slots [data-slot="order_number"]')).to_contain_text("AB123456")
    await expect(desk.locator('#slots [data-slot="description"]')).to_contain_text("I was charged twice <i>!</i>")
    await expect(desk.locator("#transcript .msg.role-customer").first).to_contain_text("I want to complain")
    await desk.locator("#claim-btn").click()
    await expect(root.locator(".omnibot-msg.omnibot-system .omnibot-text").last).to_contain_text(
        "Bob from Customer Care has joined")
    await desk.locator("#reply-input").fill("Hi, Bob here. I'll refund the second charge today.")
    await desk.locator("#reply-send").click()
    await expect(root.locator(".omnibot-msg.omnibot-agent .omnibot-text").last).to_have_text(
        "Hi, Bob here. I'll refund the second charge today.")
    # the customer answers; the desk shows it live
    await root.locator("#omnibot-input").fill("Great, thank you Bob")
    await root.locator("#omnibot-send").click()
    await expect(desk.locator("#transcript .msg.role-customer").last).to_contain_text("Great, thank you Bob",
                                                                                     timeout=10_000)
    # a complaint: Resolve asks for the outcome, previews what the customer is told, and confirms
    await desk.locator("#resolve-btn").click()
    await expect(desk.locator("#work-dialog")).to_be_visible()
    await desk.locator("#work-outcome").fill("the second charge is refunded")
    await expect(desk.locator("#work-preview")).to_contain_text("the second charge is refunded")
    await desk.locator("#work-confirm").click()
    await expect(root.locator(".omnibot-msg.omnibot-system .omnibot-text").filter(has_text="resolved")
                 ).to_contain_text("the second charge is refunded", timeout=10_000)
    await expect(desk.locator(".queue-item")).to_have_count(0)


async def test_agent_desk_lists_complaints_resolves_one_and_shows_sla_alerts(running: Running, page) -> None:
    """A complaint filed in the widget without asking for a person is on the desk's list; the agent
    resolves it there and the widget hears the result; an SLA alert appears on the desk live."""
    from datetime import timedelta

    from bot.app import SERVICES

    r = running
    await page.goto(r.url + "/?chat=open")
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)
    for text in ("I want to complain", "shipping", "AB123456", "The parcel never came", "skip", "no"):
        before = await root.locator(".omnibot-msg.omnibot-bot").count()
        await root.locator("#omnibot-input").fill(text)
        await root.locator("#omnibot-send").click()
        await expect(root.locator(".omnibot-msg.omnibot-bot")).not_to_have_count(before)
    await expect(root.locator(".omnibot-msg.omnibot-bot .omnibot-text").last).to_contain_text("C-1001")

    desk = await page.context.new_page()
    await desk.goto(r.url + "/agent")
    await desk.locator("#login-name").fill("Bob Jones")
    await desk.locator("#login-token").fill("test-agent-token")
    await desk.locator("#login-btn").click()
    ticket = desk.locator('.ticket-item[data-ref="C-1001"]')
    await expect(ticket).to_contain_text("shipping", timeout=10_000)

    # an SLA warning reaches the open desk live
    services = r.app[SERVICES]
    real = services.tickets.clock
    services.tickets.clock = lambda: real() + timedelta(hours=20)
    assert [a.level for a in await services.sla.check()] == ["near"]
    await expect(desk.locator("#sla-alerts li").first).to_contain_text("SLA warning: complaint C-1001",
                                                                       timeout=10_000)
    services.tickets.clock = real

    await ticket.locator("button.resolve-ticket").click()
    await expect(desk.locator("#work-dialog")).to_be_visible()
    await desk.locator("#work-outcome").fill("A replacement is on its way")
    await desk.locator("#work-confirm").click()
    await expect(root.locator(".omnibot-msg .omnibot-text").filter(has_text="resolved your complaint C-1001")
                 ).to_contain_text("A replacement is on its way", timeout=10_000)
    await expect(root.locator(".omnibot-msg.omnibot-bot .omnibot-text").last).to_contain_text("How satisfied")
    await expect(desk.locator(".ticket-item")).to_have_count(0)
