"""Transfer with a note, internal notes and a canned reply in the /agent page, in headless Chromium:
two agents logged in with their own accounts; the customer's web chat never receives a note."""

from __future__ import annotations

from typing import Any

from conftest import Running
from e2e.chat import ChatClient
from e2e.desk_browser import desk_tab
from e2e.test_widget_browser import page  # noqa: F401 (pytest fixture)
from playwright.async_api import expect

from bot.agents import add_agent

PASSWORD = "correct horse battery"


async def desk_of(page: Any, r: Running, email: str, errors: list[str]) -> Any:  # noqa: F811
    """A logged-in /agent tab with its own cookies."""
    return await desk_tab(page, r, email, PASSWORD, errors=errors)


async def test_two_agents_claim_note_canned_reply_and_transfer(running: Running, page) -> None:  # noqa: F811
    r = running
    for name, email in [("Anna Smith", "anna@shop.test"), ("Bob Lee", "bob@shop.test")]:
        await add_agent(r.services.store, name=name, email=email, teams=["support"], role="agent", password=PASSWORD)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    errors: list[str] = []
    try:
        [m] = await c.say("can I talk to a human please")
        assert "Customer Care team" in m["text"]
        anna = await desk_of(page, r, "anna@shop.test", errors)
        bob = await desk_of(page, r, "bob@shop.test", errors)

        await anna.locator(".queue-item").first.click()
        await anna.locator("#claim-btn").click()
        await expect(anna.locator("#reply-form")).to_be_visible(timeout=10_000)

        # an internal note: in the transcript, marked as a note
        await anna.locator("#note-input").fill("SECRET: she is a <b>VIP</b>, be generous")
        await anna.locator("#note-add").click()
        note = anna.locator("#transcript .desk-note")
        await expect(note).to_have_count(1, timeout=10_000)
        await expect(note).to_contain_text("Internal note · Anna Smith")
        await expect(note).to_contain_text("SECRET: she is a <b>VIP</b>, be generous")
        assert await anna.locator("#transcript .desk-note b").count() == 0

        # a canned reply: "/" opens the list, typing filters it, Enter inserts it rendered, editable
        box = anna.locator("#reply-input")
        await box.click()
        await box.press("/")
        await expect(anna.locator("#canned-menu .canned-item").first).to_be_visible()
        await box.type("greet")
        await expect(anna.locator("#canned-menu .canned-item")).to_have_count(1)
        await box.press("Enter")
        await expect(box).to_have_value("Hi, I'm Anna from Customer Care. I've read everything so far, so there's no "
                                        "need to repeat it. Give me a moment to look into this.")
        await box.press("End")
        await box.type(" :)")
        await box.press("Enter")          # now Enter sends
        sent = await c.expect(lambda f: f["type"] == "message" and f["message"]["role"] == "agent", timeout=10)
        assert sent["message"]["text"].endswith("look into this. :)")

        # transfer to Bob with a note
        await anna.locator("#transfer-btn").click()
        await anna.locator("#transfer-agent").select_option("bob@shop.test")
        await anna.locator("#transfer-note").fill("Refund to card, not voucher")
        await anna.locator("#transfer-submit").click()
        told = await c.expect(lambda f: f["type"] == "message" and "transferring" in f["message"]["text"], timeout=10)
        assert told["message"]["text"].startswith("Anna is transferring you to Bob from Customer Care")
        await expect(anna.locator("#reply-form")).to_be_hidden(timeout=10_000)

        # Bob has it, and sees both notes
        await bob.locator(".queue-item").first.click()
        await expect(bob.locator("#reply-form")).to_be_visible(timeout=10_000)
        notes = bob.locator("#transcript .desk-note")
        await expect(notes).to_have_count(2, timeout=10_000)
        await expect(notes.nth(1)).to_contain_text("Refund to card, not voucher")
        await expect(notes.nth(0)).to_contain_text("SECRET")

        # the customer's socket and the messages table never had a note
        assert not [f for f in c.frames if "SECRET" in str(f) or "voucher" in str(f)]
        [h] = await r.services.store.list_handoffs(states=["claimed"])
        assert not [m for m in await r.services.store.history(h.conversation_id, limit=200)
                    if "SECRET" in m.text or "voucher" in m.text]
        assert errors == [], f"JavaScript errors on the desk: {errors}"
    finally:
        await c.close()
