"""The /agent login form in headless Chromium: with accounts it asks for e-mail and password, and
each agent sees their own teams' queue."""

from __future__ import annotations

from playwright.async_api import expect

from bot.agents import add_agent
from conftest import Running
from e2e.test_agent_accounts import handoff
from e2e.test_widget_browser import page  # noqa: F401 (fixture)


async def test_two_agents_log_in_with_email_and_password(running: Running, page) -> None:  # noqa: F811
    r = running
    await page.goto(r.url + "/agent")
    await expect(page.locator("#login-token")).to_be_visible()          # first run: the shared token
    await expect(page.locator("#login-email")).to_be_hidden()
    for name, email, team in [("Anna Smith", "anna@shop.test", "support"), ("Carl Diaz", "carl@shop.test",
                                                                            "complaints")]:
        await add_agent(r.services.store, name=name, email=email, teams=[team], role="agent",
                        password="correct horse battery")
    await handoff(r, "support", "v1")
    await handoff(r, "complaints", "v2")

    for email, name, team in [("anna@shop.test", "Anna Smith", "Customer Care"),
                              ("carl@shop.test", "Carl Diaz", "Complaints")]:
        desk = await page.context.browser.new_context()                  # its own cookies
        tab = await desk.new_page()
        await tab.goto(r.url + "/agent")
        await expect(tab.locator("#login-email")).to_be_visible()
        await expect(tab.locator("#login-token")).to_be_hidden()
        await tab.locator("#login-email").fill(email)
        await tab.locator("#login-password").fill("wrong password")
        await tab.locator("#login-btn").click()
        await expect(tab.locator("#login-error")).to_have_text("wrong e-mail or password")
        await tab.locator("#login-password").fill("correct horse battery")
        await tab.locator("#login-btn").click()
        await expect(tab.locator("#me-name")).to_have_text(f"Signed in as {name}")
        await expect(tab.locator(".queue-item")).to_have_count(1, timeout=10_000)
        await expect(tab.locator(".queue-item")).to_contain_text(team)
        await desk.close()
