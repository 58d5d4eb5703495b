"""Privacy on the web desk, over the real /agent HTTP API with agent accounts, on SQLite and PostgreSQL
(README "Privacy"): e-mail and phone in clear to the agent who holds the conversation and masked to
the others (handoff, queue, search, conversation record, notes), negative controls untouched; the
reveal for a supervisor (403 for an agent), audited; an agent's reply and note with a card number
stored masked; an audit entry for each desk action (login, failed login, claim, transfer, take-over,
resolve, reveal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bot.agents import add_agent, new_token, token_hash
from bot.model import Inbound, Outbound
from bot.storage.base import HandoffSpec
from conftest import Running, start_app, stop_app
from e2e.test_privacy_e2e import pg_or_sqlite_config

EMAIL, PHONE = "ann.privacy@shop.example", "+44 20 7946 0958"
NEGATIVE = "order AB123456 of 2026-11-30 cost €1,234.56, see C-1042"
PASSWORD = "long enough password"
PEOPLE = [("Anna Smith", "anna@shop.test", "agent"), ("Bob Lee", "bob@shop.test", "agent"),
          ("Sue Park", "sue@shop.test", "supervisor")]


@pytest.fixture(params=["sqlite", "postgresql"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    r = await start_app(pg_or_sqlite_config(request, tmp_path))
    try:
        yield r
    finally:
        await stop_app(r)


async def people(r: Running) -> dict[str, dict[str, str]]:
    out = {}
    for name, email, role in PEOPLE:
        await add_agent(r.services.store, name=name, email=email, teams=["support"], role=role, password=PASSWORD)
        token = new_token()
        await r.services.store.set_agent_token(email, token_hash(token))
        out[name.split()[0].lower()] = {"Authorization": f"Bearer {token}"}
    return out


async def waiting_customer(r: Running, ext: str = "v1") -> tuple[str, str]:
    """A web-chat customer who gave their e-mail and phone and waits for support: (handoff, conversation)."""
    store = r.services.store
    got = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=f"{ext}:1",
                                             text=f"please mail {EMAIL} or call {PHONE}; {NEGATIVE}"))
    await store.commit_turn(got.conversation.id, inbound_id=got.message.id,
                            flow_state={"flow": None, "slots": {"email": EMAIL, "order_number": "AB123456"}},
                            replies=[Outbound("connecting you")],
                            handoff=HandoffSpec(team="support", reason="asked for a person", priority=1, context={},
                                                message=lambda position: Outbound(f"you are number {position}")))
    h = await store.active_handoff(got.conversation.id)
    assert h is not None
    return h.id, got.conversation.id


async def call(r: Running, who: dict[str, str], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    kw: dict[str, Any] = {"headers": who}
    if body is not None:
        kw["json"] = body
    async with r.http.request(method, r.url + path, **kw) as resp:
        return resp.status, await resp.json()


def clear(data: Any) -> bool:
    text = json.dumps(data, ensure_ascii=False)
    return EMAIL in text and PHONE in text


def masked(data: Any) -> bool:
    text = json.dumps(data, ensure_ascii=False)
    return (EMAIL not in text and "ann.privacy" not in text and "7946" not in text
            and "a***@shop.example" in text and all(x in text for x in ("AB123456", "2026-11-30", "C-1042")))


async def test_the_holder_sees_email_and_phone_others_see_them_masked(app: Running) -> None:
    r = app
    p = await people(r)
    hid, cid = await waiting_customer(r)
    # nobody holds it yet: masked to every agent
    status, body = await call(r, p["anna"], "GET", f"/agent/api/handoffs/{hid}")
    assert status == 200 and masked(body)
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    await call(r, p["anna"], "POST", f"/agent/api/conversations/{cid}/notes", {"text": f"she prefers {PHONE}"})

    for path in (f"/agent/api/handoffs/{hid}", f"/agent/api/conversations/{cid}", "/agent/api/queue",
                 "/agent/api/search?q=AB123456", f"/agent/api/conversations/{cid}/notes"):
        status, mine = await call(r, p["anna"], "GET", path)
        assert status == 200, (path, mine)
        status, theirs = await call(r, p["bob"], "GET", path)
        assert status == 200, (path, theirs)
        if path.endswith("/notes"):
            assert PHONE in json.dumps(mine) and PHONE not in json.dumps(theirs) and "+*** *** 58" in json.dumps(theirs)
            continue
        assert clear(mine), path                     # Anna holds it
        assert masked(theirs), (path, theirs)        # Bob does not
    status, detail = await call(r, p["bob"], "GET", f"/agent/api/handoffs/{hid}")
    assert detail["context"]["customer"]["contacts"]["emails"] == ["a***@shop.example"]
    assert detail["context"]["slots"].get("order_number", "AB123456") == "AB123456"


async def test_reveal_is_for_a_supervisor_and_audited(app: Running) -> None:
    r = app
    p = await people(r)
    hid, cid = await waiting_customer(r)
    url = f"/agent/api/conversations/{cid}/reveal"
    status, body = await call(r, p["bob"], "POST", url, {"reason": "checking"})
    assert status == 403 and "supervisor" in body["error"]
    assert (await call(r, p["sue"], "POST", url, {"reason": 5}))[0] == 400
    async with r.http.post(r.url + url, headers=p["sue"], data=b"not json") as resp:
        assert resp.status == 400 and "error" in await resp.json()
    assert (await call(r, p["sue"], "POST", "/agent/api/conversations/conv_nope/reveal"))[0] == 404
    status, body = await call(r, p["sue"], "POST", url, {"reason": f"customer {EMAIL} asked"})
    assert status == 200 and clear(body["transcript"]) and body["slots"]["email"] == EMAIL
    entries = await r.services.store.audit_log(actor="agent:Sue Park")
    [reveal] = [e for e in entries if e.action == "reveal"]
    assert reveal.target == cid and reveal.customer_id == body["customer"]["id"]
    assert EMAIL not in json.dumps(reveal.detail)         # the audit log keeps no personal data
    assert not [e for e in await r.services.store.audit_log(actor="agent:Bob Lee") if e.action == "reveal"]


async def test_an_agent_reply_or_note_with_a_card_number_is_stored_masked(app: Running) -> None:
    r = app
    p = await people(r)
    hid, cid = await waiting_customer(r)
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/reply",
                              {"text": "is it 4111 1111 1111 1111 cvv 123? order AB123456"})
    assert status == 200 and "4111 1111 1111 1111" not in body["message"]["text"]
    status, _ = await call(r, p["anna"], "POST", f"/agent/api/conversations/{cid}/notes",
                           {"text": "card 5500-0000-0000-0004 on C-1042"})
    assert status == 200
    texts = [m.text for m in await r.services.store.history(cid, limit=100)]
    assert "is it **** **** **** 1111 cvv ***? order AB123456" in texts
    assert not [t for t in texts if "4111 1111" in t]
    notes = [n.text for n in await r.services.store.notes_of(cid)]
    assert notes == ["card **** **** **** 0004 on C-1042"]


async def test_audit_entries_of_each_desk_action(app: Running) -> None:
    r = app
    p = await people(r)
    store = r.services.store
    hid, cid = await waiting_customer(r)
    customer = (await store.get_conversation(cid)).customer_id   # type: ignore[union-attr]
    async with aiohttp.ClientSession() as browser:
        async with browser.post(r.url + "/agent/login", json={"email": "anna@shop.test", "password": "wrong"}) as resp:
            assert resp.status == 401
        async with browser.post(r.url + "/agent/login", json={"email": "nobody@shop.test", "password": "x"}) as resp:
            assert resp.status == 401
        async with browser.post(r.url + "/agent/login", json={"email": "anna@shop.test", "password": PASSWORD}) as resp:
            assert resp.status == 200
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    assert (await call(r, p["sue"], "POST", f"/agent/api/handoffs/{hid}/take_over"))[0] == 200
    assert (await call(r, p["sue"], "POST", f"/agent/api/handoffs/{hid}/transfer", {"agent": "Bob Lee"}))[0] == 200
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/resolve"))[0] == 200
    assert (await call(r, p["sue"], "POST", f"/agent/api/conversations/{cid}/reveal"))[0] == 200
    assert (await call(r, p["sue"], "POST", f"/agent/api/conversations/{cid}/reopen", {"note": "again"}))[0] == 200

    def of(actor: str, entries: list[Any]) -> list[tuple[str, str | None]]:
        return [(e.action, e.target) for e in entries if e.actor == actor]

    everything = await store.audit_log()
    assert of("agent:Anna Smith", everything) == [("login_failed", "anna@shop.test"), ("login", "anna@shop.test"),
                                                 ("claim", hid)]
    assert ("login_failed", "nobody@shop.test") in of("unknown", everything)
    sue = of("agent:Sue Park", everything)
    assert sue[:3] == [("take_over", hid), ("transfer", hid), ("reveal", cid)] and sue[3][0] == "reopen"
    assert of("agent:Bob Lee", everything) == [("resolve", hid)]
    about = {e.action for e in await store.audit_log(customer_id=customer)}
    assert about == {"claim", "take_over", "transfer", "resolve", "reveal", "reopen"}
    [transfer] = [e for e in everything if e.action == "transfer"]
    assert transfer.detail == {"from_team": "support", "team": "support", "to": "Bob Lee"}
