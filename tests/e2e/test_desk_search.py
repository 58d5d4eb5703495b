"""History and search on the agent desk, over real HTTP and the web chat: a complaint resolved
by an agent is found again by order number and by reference, opened, stays live (the customer's
late CSAT answer appears), and is reopened into the queue without a word to the customer."""

from __future__ import annotations

import asyncio

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient
from e2e.test_tickets_e2e import _file_complaint


async def _get(r: Running, path: str, status: int = 200) -> dict:
    async with r.http.get(r.url + path, headers=agent_headers()) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def _post(r: Running, path: str, body: dict | None = None, status: int = 200) -> dict:
    async with r.http.post(r.url + path, headers=agent_headers(), json=body or {}) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def test_resolved_complaint_found_opened_rated_late_and_reopened(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    desk = await r.http.ws_connect(r.url + "/agent/ws", headers=agent_headers())
    try:
        ref = await _file_complaint(c, "payment", "EF333333", "I was charged twice for one order.")
        await c.say("Yes, talk to a person", payload="yes", expect_text="queue")
        [h] = await agent_queue(r)
        await _post(r, f"/agent/api/handoffs/{h['id']}/claim")
        await _post(r, f"/agent/api/handoffs/{h['id']}/resolve", {"result": "we refunded the second charge"})
        await c.replies_until(lambda m: "How satisfied" in m["text"])
        assert await agent_queue(r) == []

        # found by order number (any case) and by reference, with its ticket and last handoff
        [hit] = (await _get(r, "/agent/api/search?q=ef333333"))["results"]
        assert hit["conversation_id"] == h["conversation_id"] and "details" in hit["matched"]
        assert hit["ticket"]["reference"] == ref and hit["ticket"]["status"] == "resolved"
        assert hit["ticket"]["csat"] is None and hit["handoff"]["id"] == h["id"]
        assert hit["handoff"]["state"] == "resolved" and hit["channel"] == "webchat"
        [by_ref] = (await _get(r, f"/agent/api/search?q={ref.lower()}"))["results"]
        assert by_ref["conversation_id"] == hit["conversation_id"] and by_ref["matched"] == ["reference"]
        assert "text" in (await _get(r, "/agent/api/search?q=charged%20twice"))["results"][0]["matched"]
        assert (await _get(r, "/agent/api/search?q=nothing-like-this"))["results"] == []

        # opened: the whole conversation, read-only
        cid = hit["conversation_id"]
        conv = await _get(r, f"/agent/api/conversations/{cid}")
        texts = [m["text"] for m in conv["transcript"]]
        assert "I was charged twice for one order." in texts
        assert any("How satisfied" in t for t in texts)
        [t] = conv["tickets"]
        assert (t["reference"], t["result"], t["csat"]) == (ref, "we refunded the second charge", None)
        assert [x["state"] for x in conv["handoffs"]] == ["resolved"] and conv["handoff"] is None
        await _get(r, "/agent/api/conversations/conv_nope", status=404)

        # the customer answers the survey later: the desk hears it, the conversation shows it
        await c.say("4", payload="4")
        await c.say("Quick and friendly, thanks", expect_text="Thanks for your feedback")

        async def csat_frame() -> dict:
            while True:
                f = await desk.receive_json()
                if f.get("event") == "csat":
                    return f
        frame = await asyncio.wait_for(csat_frame(), 5)
        assert (frame["conversation_id"], frame["reference"], frame["score"]) == (cid, ref, 4)
        [t] = (await _get(r, f"/agent/api/conversations/{cid}"))["tickets"]
        assert (t["csat"], t["csat_comment"]) == (4, "Quick and friendly, thanks")
        [hit] = (await _get(r, "/agent/api/search?q=EF333333"))["results"]
        assert hit["ticket"]["csat"] == 4

        # reopened: back in the queue with who and why, the customer told nothing
        before = len(c.messages)
        out = await _post(r, f"/agent/api/conversations/{cid}/reopen", {"note": "refund bounced"})
        assert out["handoff"]["state"] == "queued" and out["handoff"]["team"] == h["team"]
        assert out["handoff"]["reason"] == "reopened by Anna Smith: refund bounced"
        [q] = await agent_queue(r)
        assert q["id"] == out["handoff"]["id"] and q["conversation_id"] == cid
        await _post(r, f"/agent/api/conversations/{cid}/reopen", status=409)      # once is enough
        await asyncio.sleep(0.3)
        assert len(c.messages) == before
        conv = await _get(r, f"/agent/api/conversations/{cid}")
        assert conv["handoff"]["id"] == q["id"] and conv["tickets"][0]["status"] == "reopened"
        assert conv["handoffs"][-1]["reopened_by"] == "Anna Smith"
        assert conv["handoffs"][-1]["note"] == "refund bounced"
    finally:
        await desk.close()
        await c.close()


async def test_search_needs_an_agent(running: Running) -> None:
    for method, path in (("GET", "/agent/api/search?q=C-1001"), ("GET", "/agent/api/conversations/x"),
                         ("POST", "/agent/api/conversations/x/reopen")):
        async with running.http.request(method, running.url + path) as resp:
            assert resp.status == 401, path
