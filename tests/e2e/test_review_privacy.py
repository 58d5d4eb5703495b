"""Personal data in the review step and on the desk's websocket (README "Privacy"), over real HTTP
and a real /agent/ws socket, as agent accounts: an outcome proposed with a pasted card number is
kept, shown and finally told with the card masked, as replies and notes are; its e-mail address is
in clear to the agent who holds the conversation and masked to the supervisor who reviews it; a
compensation note arrives on every agent's socket masked as for one who holds nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from e2e.test_review_e2e import call, complaint, desk, told  # noqa: F401 (desk: the fixture)

CARD, EMAIL, PHONE = "4111 1111 1111 1111", "ann.privacy@shop.example", "+44 20 7946 0958"
OUTCOME = f"refunded to card {CARD}, receipt mailed to {EMAIL}"


async def test_a_proposed_outcome_is_kept_without_the_card_and_masked_to_the_reviewer(desk: Any) -> None:  # noqa: F811
    r, p = desk
    store = r.services.store
    cid, hid = await complaint(r, severity="high")
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve", {"result": OUTCOME})
    assert status == 202
    # the proposer holds the conversation: the e-mail in clear, the card never
    assert body["ticket"]["review"]["proposed_result"] == f"refunded to card **** **** **** 1111, receipt mailed to {EMAIL}"
    t = await store.get_ticket("C-1001")
    assert t is not None and CARD not in (t.proposed_result or "") and "**** **** **** 1111" in t.proposed_result

    # the reviewer does not hold it: masked in the list and in what approving answers
    [review] = (await call(r, p["sue"], "GET", "/agent/api/reviews"))[1]["reviews"]
    assert review["review"]["proposed_result"] == "refunded to card **** **** **** 1111, receipt mailed to a***@shop.example"
    [mine] = (await call(r, p["anna"], "GET", "/agent/api/reviews"))[1]["reviews"]
    assert EMAIL in mine["review"]["proposed_result"]
    status, body = await call(r, p["sue"], "POST", "/agent/api/tickets/C-1001/approve")
    assert status == 200 and body["told"] is True
    assert EMAIL not in json.dumps(body) and CARD not in json.dumps(body)

    # the customer is told the outcome as kept (the card masked), as an agent's reply would be
    said = [x for x in await told(r, cid) if "resolved your complaint C-1001" in x]
    assert said == [f"Anna resolved your complaint C-1001: refunded to card **** **** **** 1111, receipt mailed to {EMAIL}"]
    assert not [x for x in await told(r, cid) if CARD in x]


async def test_a_plain_resolve_outcome_is_told_without_the_card(desk: Any) -> None:  # noqa: F811
    r, p = desk
    cid, hid = await complaint(r, severity="normal")                 # no review: resolved at once
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/resolve", {"result": OUTCOME})
    assert status == 200 and CARD not in json.dumps(body)
    assert not [x for x in await told(r, cid) if CARD in x]
    t = await r.services.store.get_ticket("C-1001")
    assert t is not None and t.result is not None and CARD not in t.result and "**** **** **** 1111" in t.result


async def test_desk_socket_frames_are_masked(desk: Any) -> None:  # noqa: F811
    r, p = desk
    _, hid = await complaint(r, severity="normal")
    assert (await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    async with p["sue"].ws_connect(r.url + "/agent/ws") as ws:
        await asyncio.sleep(0.2)                        # subscribed before the event
        note = f"call {PHONE} or mail {EMAIL}; card {CARD}"
        status, body = await call(r, p["anna"], "POST", "/agent/api/tickets/C-1001/compensations",
                                  {"kind": "refund", "amount": 120, "note": note})
        assert status == 202
        assert body["compensation"]["note"] == f"call {PHONE} or mail {EMAIL}; card **** **** **** 1111"   # the holder
        while True:
            frame = await ws.receive_json(timeout=5)
            if frame.get("event") == "review" and frame["review"].get("what") == "compensation_pending":
                break
    text = json.dumps(frame, ensure_ascii=False)
    assert PHONE not in text and EMAIL not in text and CARD not in text and "7946" not in text
    assert frame["review"]["compensation"]["note"] == "call +*** *** 58 or mail a***@shop.example; card **** **** **** 1111"
    assert frame["handoff_id"] == hid and frame["review"]["reference"] == "C-1001"   # ids untouched
    # what the supervisor reads of it over HTTP is masked the same way
    [pending] = (await call(r, p["sue"], "GET", "/agent/api/compensations"))[1]["compensations"]
    assert pending["note"] == frame["review"]["compensation"]["note"]
