"""The desk's views in headless Chromium, one browser for the module: two agents logged in, the
Mine / Unassigned / All tabs and their counts changing live when one claims, unread badges that
clear when the conversation is opened, the tab title's count, and a customer's tier and tags that
stay after a reload."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from bot.events import Event
from bot.model import Inbound
from conftest import Running
from e2e.test_agent_accounts import PASSWORD, accounts, handoff
from e2e.test_widget_browser import page  # noqa: F401 (fixture: the module's one browser)


async def log_in(tab: Page, r: Running, email: str) -> None:
    await tab.goto(r.url + "/agent")
    await tab.locator("#login-email").fill(email)
    await tab.locator("#login-password").fill(PASSWORD)
    await tab.locator("#login-btn").click()
    await expect(tab.locator("#views")).to_be_visible(timeout=10_000)


async def test_two_agents_views_unread_title_and_customer_profile(running: Running, page: Page) -> None:  # noqa: F811
    r = running
    await accounts(r)
    h1 = await handoff(r, "support", "v1")
    h2 = await handoff(r, "support", "v2")
    anna = page
    bob = await (await anna.context.browser.new_context()).new_page()     # his own cookies
    await log_in(anna, r, "anna@shop.test")
    await log_in(bob, r, "bob@shop.test")

    for tab in (anna, bob):
        await tab.locator("#view-all").click()
        await expect(tab.locator(".queue-item")).to_have_count(2)
        await expect(tab.locator("#view-unassigned .count")).to_have_text("2")
        await expect(tab.locator("#view-mine .count")).to_have_text("0")
        await expect(tab).to_have_title("(2) Agent desk · omnibot")     # two waiting, nothing of mine unread
        # never opened: the customer's message is unread, and the row is never called cus_...
        await expect(tab.locator(f'.queue-item[data-handoff-id="{h1}"] .unread')).to_have_text("1")
        await expect(tab.locator(f'.queue-item[data-handoff-id="{h1}"] .qi-name')).to_have_text(
            re.compile(r"^Web visitor [0-9a-f]{4}$"))

    # Anna opens and claims the first: it is read for her, and both desks' tabs change live
    await anna.locator(f'.queue-item[data-handoff-id="{h1}"]').click()
    await expect(anna.locator(f'.queue-item[data-handoff-id="{h1}"] .unread')).to_have_count(0)
    await anna.locator("#claim-btn").click()
    await expect(anna.locator("#view-mine .count")).to_have_text("1")
    await expect(anna.locator("#view-unassigned .count")).to_have_text("1")
    await expect(bob.locator("#view-unassigned .count")).to_have_text("1", timeout=10_000)
    await expect(bob.locator("#view-mine .count")).to_have_text("0")
    await expect(bob.locator(f'.queue-item[data-handoff-id="{h1}"] .unread')).to_have_text("1")   # his: unread
    await bob.locator("#view-unassigned").click()
    await expect(bob.locator(".queue-item")).to_have_count(1)
    await bob.keyboard.press("1")                                         # the keys switch views too
    await expect(bob.locator("#view-mine")).to_have_attribute("aria-selected", "true")
    await expect(bob.locator("#queue .queue-empty")).to_have_text("Nothing assigned to you.")

    # Anna looks at the other conversation; her customer writes: unread in Mine, in the title
    await anna.locator(f'.queue-item[data-handoff-id="{h2}"]').click()
    await expect(anna.locator(f'.queue-item[data-handoff-id="{h2}"] .unread')).to_have_count(0)
    await expect(anna).to_have_title("(1) Agent desk · omnibot")
    got = await r.services.store.record_inbound(Inbound(channel="webchat", external_id="v1",
                                                        platform_message_id="v1:2", text="hello? still there"))
    r.services.events.publish(Event("message", got.conversation.id, h1))
    await expect(anna.locator(f'.queue-item[data-handoff-id="{h1}"] .unread')).to_have_text("1", timeout=10_000)
    await expect(anna.locator("#view-mine .unread")).to_have_text("1")
    await expect(anna).to_have_title("(2) Agent desk · omnibot")
    await expect(anna.locator(f'.queue-item[data-handoff-id="{h1}"] .qi-last')).to_have_text("hello? still there")
    await anna.locator(f'.queue-item[data-handoff-id="{h1}"]').click()       # opened: read
    await expect(anna.locator(f'.queue-item[data-handoff-id="{h1}"] .unread')).to_have_count(0)
    await expect(anna.locator("#view-mine .unread")).to_be_hidden()
    await expect(anna).to_have_title("(1) Agent desk · omnibot")

    # tier and tags, kept after a reload; the customer panel never shows the internal id
    panel = anna.locator("#customer-panel")
    await expect(panel.locator(".cp-name")).to_have_text(re.compile(r"^Web visitor [0-9a-f]{4}$"))
    await panel.locator("#tier-input").fill("Gold")
    await panel.locator("#tier-input").press("Enter")
    await expect(panel.locator(".cp-status")).to_have_text("Saved")
    for tag in ("vip", "late payer"):
        await panel.locator("#tag-input").fill(tag)
        await panel.locator("#tag-input").press("Enter")
        await expect(panel.locator(f'.tag[data-tag="{tag}"]')).to_have_count(1)
    await panel.locator('.tag[data-tag="vip"] .tag-x').click()
    await expect(panel.locator(".tag")).to_have_count(1)
    await anna.reload()
    await expect(anna.locator("#tier-input")).to_have_value("Gold", timeout=10_000)
    await expect(anna.locator("#customer-panel .tag")).to_have_text(["late payer×"])
    await expect(anna.locator("#context-header .tier")).to_have_text("Gold")
    assert "cus_" not in await anna.locator("#conv").inner_text()
    await bob.context.close()
