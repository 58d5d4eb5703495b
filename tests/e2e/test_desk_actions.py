"""Transfer (to a team or an agent, with a note), take-over, internal notes and canned replies on the
/agent API, over real HTTP with agent accounts (handoff/desk_actions.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import FakeClock, Running
from e2e.chat import ChatClient
from e2e.test_agent_accounts import handoff

from bot.agents import add_agent, new_token, token_hash
from bot.model import utcnow

PEOPLE = [("Anna Smith", "anna@shop.test", ["support"], "agent"),
          ("Bob Lee", "bob@shop.test", ["support"], "agent"),
          ("Carl Diaz", "carl@shop.test", ["complaints"], "agent"),
          ("Sue Park", "sue@shop.test", ["support"], "supervisor"),
          ("Dora Gone", "dora@shop.test", ["support"], "agent")]


async def people(r: Running) -> dict[str, dict[str, str]]:
    """Each account's personal-token headers, by first name (Dora's account is disabled)."""
    out = {}
    for name, email, teams, role in PEOPLE:
        await add_agent(r.services.store, name=name, email=email, teams=teams, role=role, password="long enough")
        token = new_token()
        await r.services.store.set_agent_token(email, token_hash(token))
        out[name.split()[0].lower()] = {"Authorization": f"Bearer {token}"}
    await r.services.store.set_agent_disabled("dora@shop.test", True)
    return out


async def call(r: Running, who: dict[str, str], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    kw: dict[str, Any] = {"headers": who}
    if body is not None:
        kw["json"] = body
    async with r.http.request(method, r.url + path, **kw) as resp:
        return resp.status, await resp.json()


async def told(r: Running, hid: str) -> list[str]:
    h = await r.services.store.get_handoff(hid)
    assert h is not None
    return [m.text for m in await r.services.store.history(h.conversation_id, limit=100)]


async def test_transfer_to_an_agent_with_a_note(running: Running) -> None:
    r = running
    p = await people(r)
    hid = await handoff(r, "support", "v1")
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/transfer",
                              {"agent": "bob@shop.test", "note": "Wants the refund to card, not voucher"})
    assert status == 200, body
    assert body["handoff"]["state"] == "claimed" and body["handoff"]["agent"] == "Bob Lee"
    assert "Anna is transferring you to Bob from Customer Care, who can best help with this." in (await told(r, hid))[-1]
    # Bob sees the note with the handoff; the customer's messages never contain it
    status, detail = await call(r, p["bob"], "GET", f"/agent/api/handoffs/{hid}")
    [note] = detail["context"]["notes"]
    assert note["author"] == "Anna Smith" and "Wants the refund to card, not voucher" in note["text"]
    assert not [t for t in await told(r, hid) if "voucher" in t]
    # and Bob can reply at once (it is his)
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/reply", {"text": "Hi, Bob here"}))[0] == 200


async def test_transfer_rules(running: Running) -> None:
    r = running
    p = await people(r)
    hid = await handoff(r, "support", "v1")
    url = f"/agent/api/handoffs/{hid}/transfer"
    # bad input: 400
    for bad in ({}, {"team": 3}, {"agent": ["x"]}, {"note": "only a note"}):
        status, body = await call(r, p["anna"], "POST", url, bad)
        assert status == 400 and "error" in body, bad
    async with r.http.post(r.url + url, headers=p["anna"], data=b"not json") as resp:
        assert resp.status == 400 and "error" in await resp.json()
    assert (await call(r, p["anna"], "POST", url, {"team": "nope"}))[0] == 400
    assert (await call(r, p["anna"], "POST", url, {"agent": "nobody@shop.test"}))[0] == 400
    # an agent not in the team, or disabled: 400; the handoff is unchanged
    status, body = await call(r, p["anna"], "POST", url, {"agent": "Carl Diaz", "team": "support"})
    assert status == 400 and "not in team Customer Care" in body["error"]
    status, body = await call(r, p["anna"], "POST", url, {"agent": "dora@shop.test"})
    assert status == 400 and "disabled" in body["error"]
    assert (await r.services.store.get_handoff(hid)).state == "queued"  # type: ignore[union-attr]
    # an agent of another team: 403; unknown handoff: 404
    status, body = await call(r, p["carl"], "POST", url, {"team": "complaints"})
    assert status == 403 and "may not transfer" in body["error"]
    assert (await call(r, p["anna"], "POST", "/agent/api/handoffs/h_nope/transfer", {"team": "support"}))[0] == 404
    # held by another: an agent is refused by the roles (403), a supervisor by the queue (409)
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    assert (await call(r, p["anna"], "POST", url, {"team": "complaints"}))[0] == 403
    status, body = await call(r, p["sue"], "POST", url, {"team": "complaints"})
    assert status == 409 and "claimed by Bob Lee" in body["error"]
    # to a team with a note: back in that team's queue, Carl (complaints) sees the note
    status, body = await call(r, p["bob"], "POST", url, {"team": "complaints", "note": "order AB123456, twice"})
    assert status == 200 and body["handoff"]["state"] == "queued" and body["handoff"]["team"] == "complaints"
    assert "Bob is transferring you to our Complaints team" in (await told(r, hid))[-1]
    status, detail = await call(r, p["carl"], "GET", f"/agent/api/handoffs/{hid}")
    assert "order AB123456, twice" in detail["context"]["notes"][-1]["text"]


async def test_take_over_supervisor_any_time_agent_after_idle(running: Running) -> None:
    r = running
    p = await people(r)
    hid = await handoff(r, "support", "v1")
    url = f"/agent/api/handoffs/{hid}/take_over"
    status, body = await call(r, p["anna"], "POST", url)
    assert status == 409 and "claim it instead" in body["error"]          # nobody holds it
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/reply", {"text": "looking"}))[0] == 200
    assert (await call(r, p["carl"], "POST", url))[0] == 403              # another team
    assert (await call(r, p["bob"], "POST", url))[0] == 409               # his already

    clock = FakeClock(utcnow() + timedelta(minutes=14))
    r.services.queue.clock = clock
    status, body = await call(r, p["anna"], "POST", url)                  # Bob replied 14 min ago
    assert status == 409 and "after 15 min" in body["error"], body
    clock.now = utcnow() + timedelta(minutes=16)
    status, body = await call(r, p["anna"], "POST", url)
    assert status == 200 and body["handoff"]["agent"] == "Anna Smith"
    assert (await told(r, hid))[-1] == "Anna from Customer Care is taking over from Bob and will continue with you."
    status, detail = await call(r, p["bob"], "GET", f"/agent/api/handoffs/{hid}")
    assert "Anna Smith took over this conversation from Bob Lee" in detail["context"]["notes"][-1]["text"]
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/reply", {"text": "x"}))[0] in (403, 409)

    # a supervisor at once, without waiting
    clock.now = utcnow()
    status, body = await call(r, p["sue"], "POST", url)
    assert status == 200 and body["handoff"]["agent"] == "Sue Park"


async def test_take_over_idle_counts_from_the_claim(running: Running) -> None:
    r = running
    p = await people(r)
    hid = await handoff(r, "support", "v1")
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    r.services.queue.clock = FakeClock(utcnow() + timedelta(minutes=5))
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/take_over"))[0] == 409
    r.services.queue.clock = FakeClock(utcnow() + timedelta(minutes=15, seconds=5))
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/take_over"))[0] == 200


async def test_notes_never_reach_the_customer(running: Running) -> None:
    r = running
    p = await people(r)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        [m] = await c.say("can I talk to a human please")
        assert "Customer Care team" in m["text"]
        [h] = [h for h in await r.services.store.list_handoffs(states=["queued"])]
        cid = h.conversation_id
        url = f"/agent/api/conversations/{cid}/notes"
        for bad in ({}, {"text": 5}, {"text": "   "}):
            assert (await call(r, p["anna"], "POST", url, bad))[0] == 400, bad
        assert (await call(r, p["carl"], "POST", url, {"text": "x"}))[0] == 403
        assert (await call(r, p["anna"], "POST", "/agent/api/conversations/c_nope/notes", {"text": "x"}))[0] == 404
        status, body = await call(r, p["anna"], "POST", url, {"text": "SECRET-NOTE customer is a VIP {{ 7*7 }}"})
        assert status == 200 and body["note"]["via"] == "web"
        status, listed = await call(r, p["bob"], "GET", url)
        assert [n["text"] for n in listed["notes"]] == ["SECRET-NOTE customer is a VIP {{ 7*7 }}"]
        # the customer's socket gets nothing, and the messages table has no trace of it
        with pytest.raises(TimeoutError):
            await c.reply(timeout=0.5)
        assert not [m for m in await r.services.store.history(cid, limit=100) if "SECRET-NOTE" in m.text]
    finally:
        await c.close()


async def test_canned_replies_search_and_render(running: Running) -> None:
    r = running
    p = await people(r)
    hid = await handoff(r, "support", "v1")
    status, body = await call(r, p["anna"], "GET", "/agent/api/canned?q=refund")
    assert status == 200 and [c["name"] for c in body["canned"]] == ["refund_started"]
    status, body = await call(r, p["anna"], "GET", "/agent/api/canned")
    assert {"greeting", "closing", "refund_started"} <= {c["name"] for c in body["canned"]}
    # rendered for this handoff and agent; slot values are data, never templates
    h = await r.services.store.get_handoff(hid)
    state = {"slots": {"order_number": "AB{{ 7*7 }}", "reference": "C-1001"}}
    await r.services.store.commit_turn(h.conversation_id, inbound_id=None, replies=[],  # type: ignore[union-attr]
                                       flow_state=state)
    status, body = await call(r, p["anna"], "GET", f"/agent/api/handoffs/{hid}/canned/refund_started")
    assert status == 200, body
    assert "for order AB{{ 7*7 }}." in body["text"] and "Your reference is C-1001." in body["text"]
    status, body = await call(r, p["anna"], "GET", f"/agent/api/handoffs/{hid}/canned/greeting")
    assert "I'm Anna from Customer Care" in body["text"]
    assert (await call(r, p["anna"], "GET", f"/agent/api/handoffs/{hid}/canned/nope"))[0] == 404
    assert (await call(r, p["carl"], "GET", f"/agent/api/handoffs/{hid}/canned/greeting"))[0] == 403
