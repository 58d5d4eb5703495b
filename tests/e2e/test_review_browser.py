"""Review and authority on the /agent desk in headless Chromium: resolve asks for the outcome
(required for a complaint) and confirms what the customer will be told; a supervisor sends a
proposed resolution back and then approves it (the customer hears nothing before); an agent
over their authority limit needs a supervisor's approval."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from playwright.async_api import expect

from bot.agents import add_agent
from conftest import Running, make_config, start_app, stop_app, until
from e2e.desk_browser import desk_tab
from e2e.test_review_e2e import REVIEW, complaint, told
from e2e.test_widget_browser import page  # noqa: F401 (fixture)

PASSWORD = "correct horse battery"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Running]:
    r = await start_app(make_config(tmp_path, REVIEW))
    try:
        for name, email, role in [("Anna Smith", "anna@shop.test", "agent"), ("Sue Park", "sue@shop.test", "supervisor")]:
            await add_agent(r.services.store, name=name, email=email, teams=["complaints"], role=role,
                            password=PASSWORD, known_teams=list(r.services.config.handoff.teams))
        yield r
    finally:
        await stop_app(r)


async def log_in(page: Any, r: Running, email: str) -> Any:  # noqa: F811
    """A new browser context (its own cookies) logged in as ``email``; its tab."""
    return await desk_tab(page, r, email, PASSWORD, viewport=(1280, 900))


async def claim_first(tab: Any) -> None:
    await tab.locator(".queue-item").first.click()
    await tab.locator("#claim-btn").click()
    await expect(tab.locator("#resolve-btn")).to_be_visible()


async def resolve_with(tab: Any, outcome: str) -> None:
    await tab.locator("#resolve-btn").click()
    await expect(tab.locator("#work-dialog")).to_be_visible()
    await tab.locator("#work-outcome").fill(outcome)
    await tab.locator("#work-confirm").click()
    await expect(tab.locator("#work-dialog")).to_be_hidden()


async def test_resolve_asks_for_the_outcome_and_confirms(app: Running, page) -> None:  # noqa: F811
    r = app
    cid, hid = await complaint(r, severity="normal")
    anna = await log_in(page, r, "anna@shop.test")
    await claim_first(anna)
    await anna.locator("#resolve-btn").click()
    await expect(anna.locator("#work-dialog")).to_be_visible()
    await anna.locator("#work-confirm").click()                          # no outcome: refused
    await expect(anna.locator("#work-error")).to_contain_text("needs its outcome")
    assert (await r.services.store.get_handoff(hid)).state == "claimed"  # type: ignore[union-attr]
    await anna.locator("#work-outcome").fill("a new lamp is on its way")
    await expect(anna.locator("#work-preview")).to_have_text("Anna resolved your complaint C-1001: a new lamp is on its way")
    await anna.locator("#work-confirm").click()
    await expect(anna.locator("#work-dialog")).to_be_hidden()
    await until(lambda: _resolved(r, hid), what="resolved")
    assert "Anna resolved your complaint C-1001: a new lamp is on its way" in await told(r, cid)
    assert anna.errors == []


async def _resolved(r: Running, hid: str) -> bool:
    return (await r.services.store.get_handoff(hid)).state == "resolved"   # type: ignore[union-attr]


async def test_review_sent_back_then_approved_and_compensation_over_authority(app: Running, page) -> None:  # noqa: F811
    r, store = app, app.services.store
    cid, hid = await complaint(r, severity="high")
    anna = await log_in(page, r, "anna@shop.test")
    sue = await log_in(page, r, "sue@shop.test")
    await claim_first(anna)
    before = await told(r, cid)

    await resolve_with(anna, "refund of 40 EUR")
    await expect(anna.locator("#review-banner")).to_contain_text("In review")
    assert await told(r, cid) == before                                   # the customer hears nothing
    assert (await store.get_handoff(hid)).state == "claimed"              # type: ignore[union-attr]

    # Sue sends it back with a note; Anna sees the note and proposes again
    item = sue.locator(".review-item", has_text="C-1001")
    await expect(item.locator(".review-approve")).to_be_visible(timeout=12_000)
    await expect(anna.locator(".review-item .review-approve")).to_have_count(0)   # an agent cannot approve
    await item.locator(".review-return").click()
    await sue.locator("#work-note").fill("offer a replacement as well")
    await sue.locator("#work-confirm").click()
    await expect(anna.locator("#review-banner")).to_contain_text("offer a replacement as well", timeout=12_000)
    assert await told(r, cid) == before
    await anna.locator("#resolve-btn").click()
    await expect(anna.locator("#work-returned")).to_contain_text("offer a replacement as well")
    await anna.locator("#work-outcome").fill("refund of 40 EUR and a new lamp")
    await anna.locator("#work-confirm").click()
    await expect(anna.locator("#work-dialog")).to_be_hidden()

    # over Anna's authority (50 EUR): Sue approves it
    await anna.locator("#compensate-btn").click()
    await anna.locator("#work-kind").select_option("refund")
    await anna.locator("#work-amount").fill("120")
    await anna.locator("#work-comp-note").fill("broken twice")
    await anna.locator("#work-confirm").click()
    await expect(anna.locator("#toast")).to_contain_text("above your authority")
    [c] = await store.compensations_of("C-1001")
    assert c.state == "pending"
    comp = sue.locator(".comp-item", has_text="C-1001")
    await expect(comp.locator(".comp-approve")).to_be_visible(timeout=12_000)
    await comp.locator(".comp-approve").click()
    await until(lambda: _comp(r), what="compensation approved")

    await expect(item.locator(".review-approve")).to_be_visible(timeout=12_000)
    assert await told(r, cid) == before
    await item.locator(".review-approve").click()
    await until(lambda: _resolved(r, hid), what="approved and resolved")
    assert "Anna resolved your complaint C-1001: refund of 40 EUR and a new lamp" in await told(r, cid)
    assert anna.errors == [] and sue.errors == []


async def _comp(r: Running) -> bool:
    return [(c.state, c.decided_by) for c in await r.services.store.compensations_of("C-1001")] == [
        ("approved", "Sue Park")]
