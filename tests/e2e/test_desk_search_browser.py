"""History and search in the /agent page, in headless Chromium: a resolved complaint found by its
order number, its transcript read-only, the customer's late CSAT appearing live, then reopened."""

from __future__ import annotations

from playwright.async_api import expect

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient
from e2e.test_tickets_e2e import _file_complaint
from e2e.test_widget_browser import page  # noqa: F401  (the Chromium page fixture)


async def test_desk_finds_a_resolved_complaint_and_shows_the_late_csat(running: Running, page) -> None:  # noqa: F811
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        ref = await _file_complaint(c, "payment", "EF333333", "Charged twice <b>again</b>")
        await c.say("Yes, talk to a person", payload="yes", expect_text="queue")
        [h] = await agent_queue(r)
        for action, body in (("claim", {}), ("resolve", {"result": "refunded the second charge"})):
            async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/{action}", headers=agent_headers(),
                                   json=body) as resp:
                assert resp.status == 200, await resp.text()
        await c.replies_until(lambda m: "How satisfied" in m["text"])

        desk = page
        await desk.goto(r.url + "/agent")
        await desk.locator("#login-name").fill("Bob Jones")
        await desk.locator("#login-token").fill("test-agent-token")
        await desk.locator("#login-btn").click()
        await expect(desk.locator(".queue-empty").first).to_have_text("Nobody is waiting.", timeout=10_000)

        await desk.locator("#search-input").fill("ef333333")
        await desk.locator("#search-btn").click()
        item = desk.locator(".search-item")
        await expect(item).to_have_count(1, timeout=10_000)
        await expect(item).to_contain_text(f"{ref} · resolved")
        await expect(item).to_contain_text("Order EF333333")
        await item.click()

        # the transcript, read-only, customer text literal; the ticket without a score yet
        view = desk.locator("#history")
        await expect(view.locator("#history-transcript .msg.role-customer").filter(
            has_text="Charged twice <b>again</b>")).to_have_count(1)
        assert await view.locator("#history-transcript b").count() == 0
        ticket = view.locator(f'.history-ticket[data-ref="{ref}"]')
        await expect(ticket).to_contain_text("Result: refunded the second charge")
        await expect(ticket).to_contain_text("No CSAT answer yet.")
        await expect(desk.locator("#reply-form")).to_be_hidden()
        await expect(desk.locator("#reopen-btn")).to_be_visible()

        # the customer answers the survey now: the open view shows it without a reload
        await c.say("5", payload="5")
        await c.say("Sorted <i>fast</i>", expect_text="Thanks for your feedback")
        await expect(ticket.locator(".csat")).to_have_text("CSAT 5/5", timeout=10_000)
        await expect(ticket.locator(".comment")).to_have_text("“Sorted <i>fast</i>”")
        await expect(item.locator(".csat")).to_have_text("CSAT 5/5")

        # reopened: back in the queue, and the desk opens it there
        desk.once("dialog", lambda d: d.accept("customer says the refund bounced"))
        await desk.locator("#reopen-btn").click()
        queued = desk.locator(".queue-item")
        await expect(queued).to_have_count(1, timeout=10_000)
        await expect(queued).to_contain_text("reopened by Bob Jones: customer says the refund bounced")
        await expect(desk.locator("#conv")).to_be_visible()
        await expect(desk.locator("#claim-btn")).to_be_visible()
    finally:
        await c.close()
