"""Why each handoff happened, through the real runtime over the web chat: the customer asking,
asking after the bot misunderstood them twice, and the complaint flow; then the per-agent
figures and the handoffs by cause on /admin/metrics over HTTP."""

from __future__ import annotations

from typing import Any

from conftest import AGENT_TOKEN, Running, agent_headers, agent_queue
from e2e.chat import ChatClient
from e2e.test_tickets_e2e import _file_complaint

BEARER = {"Authorization": f"Bearer {AGENT_TOKEN}"}


async def _misunderstood(c: ChatClient, text: str) -> None:
    """Send ``text`` and wait for the fallback's answer ("did you mean ...?" or "sorry, ...")."""
    ack = await c.send(text)
    assert ack["type"] == "ack"
    await c.replies_until(lambda m: m["text"].startswith(("Did you mean", "Sorry", "I'm still not sure")))


async def _new_handoff(running: Running, seen: set[str]) -> Any:
    """The one handoff queued since the ones in ``seen`` (which it joins)."""
    [h] = [h for h in await running.services.store.list_handoffs(states=["queued"]) if h.id not in seen]
    seen.add(h.id)
    return h


async def test_each_kind_of_handoff_records_its_cause(running: Running) -> None:
    asks, lost, complains = (ChatClient(running.http, running.ws_url) for _ in range(3))
    for c in (asks, lost, complains):
        await c.connect()
    seen: set[str] = set()
    try:
        await asks.say("I want to talk to a person", expect_text="queue")
        h = await _new_handoff(running, seen)
        assert (h.cause, h.context["agent_reason"]) == ("customer_asked", "asked for a person")
        assert h.reason == "you asked to talk to a person"          # what the customer was told stays

        await lost.say("hello", expect_text="Acme Shop assistant")
        for gibberish in ("frobnicate the quux", "purple monkey dishwasher"):        # not understood: the fallback
            await _misunderstood(lost, gibberish)
        await lost.say("agent", expect_text="queue")
        h = await _new_handoff(running, seen)
        assert h.cause == "misunderstood"
        assert h.context["agent_reason"] == "asked for a person after 2 misunderstood messages"

        ref = await _file_complaint(complains, "shipping", "AB123456", "The parcel never came.")
        await complains.say("Yes, talk to a person", payload="yes", expect_text="queue")
        h = await _new_handoff(running, seen)
        assert h.cause == "complaint"
        assert h.context["agent_reason"].startswith(f"complaint {ref} (shipping, ")
        assert "of your complaint" in h.reason

        # an agent claims, replies and resolves the first: the reply names the account
        first = next(q for q in await agent_queue(running) if q["reason"] == "you asked to talk to a person")
        for action, body in (("claim", None), ("reply", {"text": "Hello, Anna here."}), ("resolve", None)):
            async with running.http.post(f"{running.url}/agent/api/handoffs/{first['id']}/{action}",
                                         headers=agent_headers("Anna Smith"), json=body) as resp:
                assert resp.status == 200, await resp.text()
        transcript = await running.services.store.history(first["conversation_id"], limit=50)
        [reply] = [m for m in transcript if m.role == "agent"]
        assert reply.sender_name == "Anna" and '"agent":"Anna Smith"' in (reply.payload or "")

        async with running.http.get(running.url + "/admin/api/metrics?by=agent", headers=BEARER) as resp:
            assert resp.status == 200
            figures = await resp.json()
        assert figures["handoffs_by_cause"] == {"complaint": 1, "customer_asked": 1, "misunderstood": 1}
        anna = figures["agents"]["Anna Smith"]
        assert anna["handled"] == 1 and anna["first_response_s_median"] is not None
        assert anna["resolution_s_median"] is not None and anna["csat_answers"] == 0
        assert figures["containment"]["handed"] == 3 and figures["bot_containment"] == 0.0
        async with running.http.get(running.url + "/admin/metrics?by=agent", headers=BEARER) as resp:
            page = await resp.text()
        assert resp.status == 200 and "<h2>Agents</h2>" in page and "Anna Smith" in page
        assert "<th>misunderstood</th><td>1</td>" in page
    finally:
        for c in (asks, lost, complains):
            await c.close()


async def test_a_customer_left_with_a_fallback_is_abandoned_not_contained(running: Running) -> None:
    left, helped = ChatClient(running.http, running.ws_url), ChatClient(running.http, running.ws_url)
    await left.connect()
    await helped.connect()
    try:
        await left.say("hello", expect_text="Acme Shop assistant")
        await _misunderstood(left, "frobnicate the quux")
        await helped.say("hello", expect_text="Acme Shop assistant")
        await helped.say("What are your opening hours?", expect_text="open")
    finally:
        await left.close()
        await helped.close()
    async with running.http.get(running.url + "/admin/api/metrics", headers=BEARER) as resp:
        figures = await resp.json()
    c = figures["containment"]
    assert (c["conversations"], c["contained"], c["abandoned"], c["came_back"], c["handed"]) == (2, 1, 1, 0, 0)
    assert c["pending"] == 1 and figures["bot_containment"] == 0.5
