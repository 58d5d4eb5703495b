"""The web desk's views over real HTTP: Mine / Unassigned / All counts and unread messages per agent,
read marks, customer tier and tags (with their 400s and 403s), and the hand-over card's captured
details labelled as the flow labels them."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.model import Inbound
from conftest import Running, agent_headers
from e2e.chat import ChatClient
from e2e.test_agent_accounts import accounts, call, handoff, login, sessions  # noqa: F401 (fixture)
from e2e.test_tickets_e2e import _file_complaint


async def queue(r: Running, http: aiohttp.ClientSession) -> dict[str, Any]:
    status, body = await call(r, http, "GET", "/agent/api/queue")
    assert status == 200, body
    return body


def unread_of(body: dict[str, Any]) -> dict[str, int]:
    return {h["id"]: h["unread"] for h in body["handoffs"]}


async def test_views_counts_and_unread_follow_claims_and_reads(running: Running,
                                                               sessions: dict[str, aiohttp.ClientSession]) -> None:  # noqa: F811
    r = running
    await accounts(r)
    h1 = await handoff(r, "support", "v1")
    h2 = await handoff(r, "support", "v2")
    anna, bob, carl = sessions["anna"], sessions["bob"], sessions["carl"]
    for http, email in ((anna, "anna@shop.test"), (bob, "bob@shop.test"), (carl, "carl@shop.test")):
        assert (await login(r, http, email))[0] == 200

    a = await queue(r, anna)
    assert a["counts"] == {"mine": 0, "unassigned": 2, "all": 2}
    assert a["unread"] == {"mine": 0, "unassigned": 2, "all": 2}     # "a person please", never opened
    assert {h["view"] for h in a["handoffs"]} == {"unassigned"}
    assert (await queue(r, carl))["counts"] == {"mine": 0, "unassigned": 0, "all": 0}   # another team

    assert (await call(r, anna, "POST", f"/agent/api/handoffs/{h1}/claim"))[0] == 200
    a, b = await queue(r, anna), await queue(r, bob)
    assert a["counts"] == {"mine": 1, "unassigned": 1, "all": 2}
    assert b["counts"] == {"mine": 0, "unassigned": 1, "all": 2}
    assert {h["id"]: h["view"] for h in b["handoffs"]} == {h1: "other", h2: "unassigned"}

    # Anna opens it: read for her, still unread for Bob
    cid = next(h["conversation_id"] for h in a["handoffs"] if h["id"] == h1)
    status, body = await call(r, anna, "POST", f"/agent/api/conversations/{cid}/read")
    assert status == 200 and body["unread"] == 0
    assert unread_of(await queue(r, anna)) == {h1: 0, h2: 1}
    assert unread_of(await queue(r, bob)) == {h1: 1, h2: 1}
    assert (await queue(r, anna))["unread"] == {"mine": 0, "unassigned": 1, "all": 1}

    # the customer writes again: unread for Anna, in her Mine view, and the preview is their text
    await r.services.store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="v1:2",
                                                  text="are you there?"))
    a = await queue(r, anna)
    assert unread_of(a) == {h1: 1, h2: 1} and a["unread"]["mine"] == 1
    assert next(h for h in a["handoffs"] if h["id"] == h1)["last_message"] == "are you there?"

    # read up to a message's time: what came later stays unread
    status, body = await call(r, anna, "POST", f"/agent/api/conversations/{cid}/read",
                              json={"at": "2000-01-01T00:00:00+00:00"})
    assert status == 200 and body["unread"] == 1

    for bad in ({"at": "yesterday"}, {"at": 5}, ["x"], {"at": "2026-01-01T09:00:00"}):
        status, body = await call(r, anna, "POST", f"/agent/api/conversations/{cid}/read", json=bad)
        assert status == 400 and "at" in body["error"], (bad, body)
    status, body = await call(r, anna, "POST", f"/agent/api/conversations/{cid}/read", data="{not json")
    assert status == 400
    assert (await call(r, carl, "POST", f"/agent/api/conversations/{cid}/read"))[0] == 403
    assert (await call(r, anna, "POST", "/agent/api/conversations/conv_nope/read"))[0] == 404
    assert (await call(r, r.http, "POST", f"/agent/api/conversations/{cid}/read"))[0] == 401


async def test_agents_edit_tier_and_tags_of_their_teams_customers(running: Running,
                                                                  sessions: dict[str, aiohttp.ClientSession]) -> None:  # noqa: F811
    r = running
    await accounts(r)
    hid = await handoff(r, "support", "v1")
    anna, carl = sessions["anna"], sessions["carl"]
    for http, email in ((anna, "anna@shop.test"), (carl, "carl@shop.test")):
        assert (await login(r, http, email))[0] == 200
    status, detail = await call(r, anna, "GET", f"/agent/api/handoffs/{hid}")
    customer = detail["context"]["customer"]
    assert customer["tier"] is None and customer["tags"] == []
    cus = customer["id"]
    assert customer["display"] == f"Web visitor {cus[-4:]}"          # no name known: never the cus_ id

    path = f"/agent/api/customers/{cus}"
    for bad, why in (({}, "tier"), ({"tier": 3}, "tier must be text"), ({"tags": "vip"}, "tags must be a list"),
                     ({"tags": ["ok", 7]}, "tags must be a list"), ({"tags": [""]}, "each tag"),
                     ({"tags": ["x" * 41]}, "each tag"), ({"tags": [f"t{i}" for i in range(21)]}, "at most 20"),
                     ({"tier": "a\nb"}, "one line"), ({"name": "Bob"}, "unknown field 'name'"), ([1], "tier")):
        status, body = await call(r, anna, "PATCH", path, json=bad)
        assert status == 400 and why in body["error"], (bad, body)
    status, body = await call(r, anna, "PATCH", path, data="nope")
    assert status == 400
    status, body = await call(r, carl, "PATCH", path, json={"tier": "gold"})     # a complaints agent
    assert status == 403 and "none of their conversations is in your teams" in body["error"]
    assert (await call(r, anna, "PATCH", "/agent/api/customers/cus_nobody", json={"tier": "gold"}))[0] == 404
    assert (await call(r, r.http, "PATCH", path, json={"tier": "gold"}))[0] == 401

    status, body = await call(r, anna, "PATCH", path, json={"tier": " Gold ", "tags": ["VIP", "vip", " late  payer "]})
    assert status == 200 and body == {"id": cus, "tier": "Gold", "tags": ["VIP", "late payer"]}
    status, detail = await call(r, anna, "GET", f"/agent/api/handoffs/{hid}")
    assert (detail["context"]["customer"]["tier"], detail["context"]["customer"]["tags"]) == ("Gold", ["VIP", "late payer"])
    status, body = await call(r, anna, "PATCH", path, json={"tier": None})      # tags kept
    assert body == {"id": cus, "tier": None, "tags": ["VIP", "late payer"]}


async def test_captured_details_are_the_flows_fields_with_its_labels(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        ref = await _file_complaint(c, "shipping", "GH444444", "The parcel never arrived")
        await c.say("Yes, talk to a person", payload="yes", expect_text="queue")
    finally:
        await c.close()
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [row] = (await resp.json())["handoffs"]
    assert row["last_message"] == "Yes, talk to a person"           # the customer's, not the bot's reply
    async with r.http.get(r.url + f"/agent/api/handoffs/{row['id']}", headers=agent_headers()) as resp:
        ctx = (await resp.json())["context"]
    assert ctx["flow"] == "complaint"
    fields = {f["label"]: f.get("text") or f["value"] for f in ctx["fields"]}
    assert fields == {"Problem area": "Shipping", "Order number": "GH444444",
                      "What happened": "The parcel never arrived", "Asked for a person now": "Yes, talk to a person",
                      "Reference": ref}
    # slots the flow does not ask (the action's ticket_due, ...) are not captured details
    assert set(ctx["slots"]) == {"category", "order_number", "description", "want_human", "reference"}
    assert ctx["customer"]["tickets"][0]["reference"] == ref and ctx["customer"]["tickets"][0]["csat"] is None
