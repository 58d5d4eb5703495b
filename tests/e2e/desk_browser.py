"""The /agent desk in headless Chromium, for the browser tests: a tab logged in with an agent account."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from conftest import Running


async def desk_tab(page: Any, r: Running, email: str, password: str, *, errors: list[str] | None = None,
                   viewport: tuple[int, int] = (1400, 900)) -> Any:
    """A new browser context of ``page``'s browser (its own cookies) on /agent, logged in as ``email``;
    its tab. JavaScript errors are collected in ``errors`` (default: a new list, ``tab.errors``)."""
    ctx = await page.context.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    tab = await ctx.new_page()
    tab.errors = errors if errors is not None else []
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    await tab.goto(r.url + "/agent")
    await tab.locator("#login-email").fill(email)
    await tab.locator("#login-password").fill(password)
    await tab.locator("#login-btn").click()
    await expect(tab.locator("#me-name")).to_contain_text("Signed in as")
    return tab
