"""The "Reveal" button of the /agent desk in headless Chromium (README "Privacy",
handoff/static/desk_privacy.js): an agent never has it; a supervisor who does not hold the
conversation sees the e-mail and phone masked, reveals them with a reason (asked, kept in the audit
log) and reads them in clear in a dialog; once they hold it themselves the button goes (they see
everything in clear already); on the past conversation, found by search, it is there again."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from conftest import Running
from e2e.desk_browser import desk_tab
from e2e.test_privacy_desk import EMAIL, PASSWORD, PHONE, people, waiting_customer
from e2e.test_widget_browser import page  # noqa: F401 (the Chromium page fixture)


async def log_in(page: Any, r: Running, email: str) -> Any:  # noqa: F811
    return await desk_tab(page, r, email, PASSWORD)


async def test_a_supervisor_reveals_masked_data_from_the_desk(running: Running, page: Any) -> None:  # noqa: F811
    r = running
    p = await people(r)
    hid, cid = await waiting_customer(r)

    # an agent: masked, and no button to reveal
    bob = await log_in(page, r, "bob@shop.test")
    await bob.locator(".queue-item").first.click()
    await expect(bob.locator("#transcript")).to_contain_text("a***@shop.example")
    await expect(bob.locator("#claim-btn")).to_be_visible()
    await expect(bob.locator("#reveal-btn")).to_be_hidden()

    # a supervisor who does not hold it: masked too, and the button
    sue = await log_in(page, r, "sue@shop.test")
    await sue.locator(".queue-item").first.click()
    await expect(sue.locator("#transcript")).to_contain_text("a***@shop.example")
    assert EMAIL not in await sue.locator("#transcript").inner_text()
    button = sue.locator("#reveal-btn")
    await expect(button).to_be_visible()

    # cancelling the reason asks nothing of the server
    sue.once("dialog", lambda d: d.dismiss())
    await button.click()
    await expect(sue.locator("#reveal-dialog")).to_be_hidden()
    assert not [e for e in await r.services.store.audit_log(actor="agent:Sue Park") if e.action == "reveal"]

    sue.once("dialog", lambda d: d.accept("the customer asked for a copy"))
    await button.click()
    shown = sue.locator("#reveal-dialog")
    await expect(shown).to_be_visible()
    await expect(shown).to_contain_text(f"please mail {EMAIL} or call {PHONE}")
    await expect(shown).to_contain_text("Revealed to Sue Park")
    await expect(shown.locator("dd").filter(has_text=EMAIL)).to_have_count(1)     # the captured e-mail slot
    [entry] = [e for e in await r.services.store.audit_log(actor="agent:Sue Park") if e.action == "reveal"]
    assert entry.target == cid and entry.detail["reason"] == "the customer asked for a copy"
    await sue.locator("#reveal-close").click()
    await expect(shown).to_be_hidden()
    assert EMAIL not in await sue.locator("#transcript").inner_text()          # the desk itself stays masked
    assert EMAIL not in await sue.content()                                   # and the clear text is gone

    # once she holds it, everything is in clear already: no button
    await sue.locator("#claim-btn").click()
    await expect(sue.locator("#transcript")).to_contain_text(EMAIL)
    await expect(button).to_be_hidden()

    # resolved, found again by its order number: the past conversation, masked, and Reveal there too
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/resolve", headers=p["sue"], json={}) as resp:
        assert resp.status == 200, await resp.text()
    await sue.locator("#search-input").fill("AB123456")
    await sue.locator("#search-btn").click()
    await sue.locator(".search-item").first.click()
    await expect(sue.locator("#history-transcript")).to_contain_text("a***@shop.example")
    sue.once("dialog", lambda d: d.accept(""))
    await sue.locator("#history-reveal-btn").click()
    await expect(shown).to_be_visible()
    await expect(shown).to_contain_text(f"please mail {EMAIL} or call {PHONE}")
    reveals = [e for e in await r.services.store.audit_log(actor="agent:Sue Park") if e.action == "reveal"]
    assert len(reveals) == 2 and "reason" not in reveals[-1].detail
    assert bob.errors == [] and sue.errors == []
