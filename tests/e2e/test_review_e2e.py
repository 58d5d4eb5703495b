"""Review and authority over real HTTP, as agent accounts: resolve with an outcome (required for a
complaint), a supervisor's review (sent back, then approved) before the customer hears anything,
and compensation within each role's authority, decided once; the report's figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bot import report as rep
from bot.agents import add_agent
from bot.model import Inbound, Outbound
from bot.storage import HandoffSpec, Ticket
from conftest import Running, make_config, start_app, stop_app

PASSWORD = "correct horse battery"
REVIEW = """
complaints:
  review: {enabled: true, min_severity: high}
  authority: {currency: EUR, agent: 50, supervisor: 500, admin: null}
"""
PEOPLE = [("anna", "Anna Smith", "complaints", "agent"), ("bob", "Bob Lee", "complaints", "agent"),
          ("sue", "Sue Park", "complaints", "supervisor"), ("sam", "Sam Ito", "support", "supervisor"),
          ("ada", "Ada Root", "support", "admin")]


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[tuple[Running, dict[str, aiohttp.ClientSession]]]:
    r = await start_app(make_config(tmp_path, REVIEW))
    people: dict[str, aiohttp.ClientSession] = {}
    try:
        for key, name, team, role in PEOPLE:
            await add_agent(r.services.store, name=name, email=f"{key}@shop.test", teams=[team], role=role,
                            password=PASSWORD, known_teams=list(r.services.config.handoff.teams))
            people[key] = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            async with people[key].post(r.url + "/agent/login",
                                        json={"email": f"{key}@shop.test", "password": PASSWORD}) as resp:
                assert resp.status == 200
        yield r, people
    finally:
        for s in people.values():
            await s.close()
        await stop_app(r)


async def call(r: Running, http: aiohttp.ClientSession, method: str, path: str, body: Any = None,
               **kw: Any) -> tuple[int, Any]:
    if body is not None:
        kw["json"] = body
    async with http.request(method, r.url + path, **kw) as resp:
        return resp.status, await resp.json()


async def complaint(r: Running, *, severity: str, ext: str = "ada", ref: str = "C-1001",
                    handoff: bool = True) -> tuple[str, str | None]:
    """A web-chat customer's complaint (with its handoff to the complaints team); (conversation, handoff)."""
    store = r.services.store
    got = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=f"{ext}:1",
                                             text="the lamp arrived broken"))
    cid = got.conversation.id
    t = await store.create_ticket(Ticket(reference=ref, customer_id=got.customer.id, conversation_id=cid,
                                     status="received", category="product", severity=severity,
                                     department="customer_care", team="complaints", priority=2,
                                     created_at=datetime.now(timezone.utc)))
    if not handoff:
        return cid, None
    await store.commit_turn(cid, inbound_id=got.message.id, flow_state=None, replies=[Outbound("connecting you")],
                            handoff=HandoffSpec(team="complaints", reason="complaint", priority=2,
                                                context={"ticket": t.summary(), "reference": ref},   # as the flow does
                                                message=lambda position: Outbound(f"you are number {position}")))
    h = await store.active_handoff(cid)
    assert h is not None
    return cid, h.id


async def told(r: Running, cid: str) -> list[str]:
    """Everything the customer was sent (the outbox included)."""
    return [m.text for m in await r.services.store.history(cid) if m.direction == "out"]


async def test_resolve_needs_the_outcome_for_a_complaint(desk: Any) -> None:
    r, p = desk
    cid, hid = await complaint(r, severity="normal")
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve", {})
    assert status == 400 and "needs its outcome" in body["error"]
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve", {"result": "  "})
    assert status == 400
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve", {"result": 5})
    assert status == 400 and "must be text" in body["error"]
    async with p["anna"].post(f"{r.url}/agent/api/handoffs/{hid}/resolve", data="{nope",
                              headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    assert (await r.services.store.get_handoff(hid)).state == "claimed"   # type: ignore[union-attr]
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve",
                              {"result": "a new lamp is on its way"})
    assert status == 200 and body["proposed"] is False and body["handoff"]["state"] == "resolved"
    assert "Anna resolved your complaint C-1001: a new lamp is on its way" in await told(r, cid)

    # a conversation without a complaint resolves without an outcome, as before
    other = await r.services.store.record_inbound(Inbound(channel="webchat", external_id="eve",
                                                          platform_message_id="eve:1", text="a person please"))
    await r.services.store.commit_turn(other.conversation.id, inbound_id=other.message.id, flow_state=None,
                                       replies=[], handoff=HandoffSpec(team="complaints", reason="asked", priority=0,
                                                                       context={}, message=lambda n: Outbound("wait")))
    h2 = await r.services.store.active_handoff(other.conversation.id)
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{h2.id}/resolve", {}))[0] == 200  # type: ignore[union-attr]

    # from the ticket list, too
    await complaint(r, severity="low", ext="tom", ref="C-1002", handoff=False)
    status, body = await call(r, p["anna"], "POST", "/agent/api/tickets/C-1002/resolve", {})
    assert status == 400 and "needs its outcome" in body["error"]


async def test_a_review_sent_back_then_approved_tells_the_customer_only_then(desk: Any) -> None:
    r, p = desk
    store = r.services.store
    cid, hid = await complaint(r, severity="high")
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    before = await told(r, cid)
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve",
                              {"result": "refund of 40 EUR"})
    assert status == 202 and body["proposed"] is True
    assert body["ticket"]["review"]["state"] == "pending" and body["ticket"]["review"]["proposed_by"] == "Anna Smith"
    # the customer hears nothing; the conversation stays with Anna
    assert await told(r, cid) == before
    h = await store.get_handoff(hid)
    assert h is not None and (h.state, h.agent) == ("claimed", "Anna Smith")
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve", {"result": "again"})
    assert status == 409 and "waits for a supervisor" in body["error"]

    # only a supervisor of the team (or an admin) reviews
    for who in ("anna", "bob", "sam"):
        status, body = await call(r, p[who], "POST", "/agent/api/tickets/C-1001/approve")
        assert status == 403 and "only a supervisor of the team, or an admin" in body["error"], who
    status, body = await call(r, p["sue"], "POST", "/agent/api/tickets/C-1001/return", {})
    assert status == 400 and "note" in body["error"]
    assert (await call(r, p["sue"], "GET", "/agent/api/reviews"))[1]["reviews"][0]["may_decide"] is True
    assert (await call(r, p["sam"], "GET", "/agent/api/reviews"))[1]["reviews"] == []
    status, body = await call(r, p["sue"], "POST", "/agent/api/tickets/C-1001/return",
                              {"note": "offer a replacement as well"})
    assert status == 200 and body["ticket"]["review"]["state"] == "returned"
    assert await told(r, cid) == before

    # the proposer sees the note, and proposes again
    [mine] = (await call(r, p["anna"], "GET", "/agent/api/reviews"))[1]["reviews"]
    assert mine["review"]["note"] == "offer a replacement as well" and mine["may_decide"] is False
    status, _ = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve",
                           {"result": "refund of 40 EUR and a new lamp"})
    assert status == 202
    assert await told(r, cid) == before

    status, body = await call(r, p["sue"], "POST", "/agent/api/tickets/C-1001/approve")
    assert status == 200 and body["told"] is True
    after = await told(r, cid)
    assert "Anna resolved your complaint C-1001: refund of 40 EUR and a new lamp" in after
    assert any("satisf" in t for t in after[after.index(
        "Anna resolved your complaint C-1001: refund of 40 EUR and a new lamp"):])          # then the survey
    t = await store.get_ticket("C-1001")
    assert t is not None and t.resolved_at is not None and (t.reviewed_by, t.review_state) == ("Sue Park", "approved")
    assert t.communicated_at is not None and t.result == "refund of 40 EUR and a new lamp"
    assert (await store.get_handoff(hid)).state == "resolved"           # type: ignore[union-attr]
    status, body = await call(r, p["sue"], "POST", "/agent/api/tickets/C-1001/approve")
    assert status == 409                                                  # decided once
    actions = [e.action for e in await store.audit_log(customer_id=t.customer_id)]
    # the claim and the resolve that told the customer are the desks' own entries (handoff.queue)
    assert actions == ["claim", "propose_resolution", "return_resolution", "propose_resolution",
                       "approve_resolution", "resolve"]


async def test_an_admin_approves_a_ticket_list_proposal(desk: Any) -> None:
    r, p = desk
    cid, _ = await complaint(r, severity="critical", handoff=False)
    status, body = await call(r, p["bob"], "POST", "/agent/api/tickets/C-1001/resolve", {"result": "full refund"})
    assert status == 202 and await told(r, cid) == []
    status, body = await call(r, p["ada"], "POST", "/agent/api/tickets/C-1001/approve")
    assert status == 200 and body["told"] is True
    assert "Bob resolved your complaint C-1001: full refund" in await told(r, cid)
    status, body = await call(r, p["sue"], "POST", "/agent/api/tickets/C-9999/approve")
    assert status == 404


async def test_compensation_within_authority_or_approved_once(desk: Any) -> None:
    r, p = desk
    await complaint(r, severity="normal")
    url = "/agent/api/tickets/C-1001/compensations"
    assert (await call(r, p["anna"], "GET", "/agent/api/authority"))[1] == {
        "currency": "EUR", "limit": 50, "kinds": ["refund", "replacement", "discount"], "role": "agent"}
    status, body = await call(r, p["anna"], "POST", url, {"kind": "refund", "amount": 30, "note": "late"})
    assert status == 200 and body["compensation"]["state"] == "granted"
    assert body["compensation"]["decided_by"] == "Anna Smith"
    status, body = await call(r, p["anna"], "POST", url, {"kind": "refund", "amount": 120})
    assert status == 202 and body["compensation"]["state"] == "pending"
    big = body["compensation"]["id"]
    for who in ("anna", "sam"):
        status, body = await call(r, p[who], "POST", f"/agent/api/compensations/{big}/approve")
        assert status == 403, who
    [pending] = (await call(r, p["sue"], "GET", "/agent/api/compensations"))[1]["compensations"]
    assert pending["id"] == big and pending["may_decide"] is True
    status, body = await call(r, p["sue"], "POST", f"/agent/api/compensations/{big}/approve", {"note": "ok"})
    assert status == 200 and (body["compensation"]["state"], body["compensation"]["decided_by"]) == (
        "approved", "Sue Park")
    status, body = await call(r, p["ada"], "POST", f"/agent/api/compensations/{big}/reject")
    assert status == 409                                                   # decided once

    # above the supervisor's own limit: an admin decides
    status, body = await call(r, p["anna"], "POST", url, {"kind": "replacement", "amount": 800})
    huge = body["compensation"]["id"]
    status, body = await call(r, p["sue"], "POST", f"/agent/api/compensations/{huge}/approve")
    assert status == 403 and "above your authority" in body["error"]
    status, body = await call(r, p["sue"], "POST", f"/agent/api/compensations/{huge}/reject", {"note": "too much"})
    assert status == 200 and body["compensation"]["state"] == "rejected"

    for bad in ({"kind": "cash", "amount": 5}, {"kind": "refund", "amount": "5"}, {"kind": "refund", "amount": -1},
                {"kind": "refund", "amount": True}, {"kind": "refund", "amount": 5, "note": 7}, ["refund"]):
        status, body = await call(r, p["anna"], "POST", url, bad)
        assert status == 400 and body["error"], bad
    assert (await call(r, p["anna"], "POST", "/agent/api/tickets/C-7777/compensations",
                       {"kind": "refund", "amount": 5}))[0] == 404
    assert (await call(r, p["sam"], "POST", url, {"kind": "refund", "amount": 5}))[0] == 403   # not his team
    assert (await call(r, p["sue"], "POST", f"/agent/api/compensations/{big}/maybe"))[0] == 404

    status, body = await call(r, p["anna"], "GET", url)
    kept = [(c["kind"], c["amount"], c["state"], c["decided_by"]) for c in body["compensations"]]
    assert kept == [("refund", 30, "granted", "Anna Smith"), ("refund", 120, "approved", "Sue Park"),
                    ("replacement", 800, "rejected", "Sue Park")]
    assert all(c["decided_at"] for c in body["compensations"])

    figures = await rep.report(r.services.store, complaints=r.services.config.complaints)
    assert figures["compensation"] == {"product": {"refund": {"count": 2, "total": 150.0, "currency": "EUR"}}}
    assert (figures["compensation_pending"], figures["compensation_rejected"]) == (0, 1)
    text = rep.render(figures)
    assert "communicate SLA breaches 0" in text and "refund 2 (150.00 EUR)" in text


async def test_review_and_communicate_breaches_in_the_report(desk: Any) -> None:
    r, p = desk
    await complaint(r, severity="high", handoff=False)
    await call(r, p["anna"], "POST", "/agent/api/tickets/C-1001/resolve", {"result": "refund"})
    cfg = r.services.config.complaints
    now = datetime.now(timezone.utc)
    figures = await rep.report(r.services.store, complaints=cfg, now=now + timedelta(hours=3))
    assert (figures["reviews"], figures["review_breaches"]) == (1, 0)
    figures = await rep.report(r.services.store, complaints=cfg, now=now + timedelta(hours=5))
    assert figures["review_breaches"] == 1 and "review SLA breaches     1" in rep.render(figures)
