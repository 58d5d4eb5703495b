"""Complaint tickets end to end over the web chat: the reference with its deadline at once,
status on request for the owner only, and the ticket's priority ordering the agents' queue."""

from __future__ import annotations

from bot.app import SERVICES
from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient


async def _file_complaint(c: ChatClient, category: str, order: str, story: str) -> str:
    """Walk the demo complaint flow; return the reference the bot gave."""
    await c.say("I want to make a complaint", expect_text="What is it about?")
    await c.say(category.title(), payload=category)
    m = await _answer_order(c, order)
    assert "what happened" in m["text"]
    [m] = await c.say(story)
    assert "photo" in m["text"]
    msgs = await c.say("skip", expect_text="talk to a member of our team")
    [ref] = [m["text"] for m in msgs if "Your reference number is" in m["text"]]
    return ref.split("Your reference number is ")[1].split(".")[0]


async def _answer_order(c: ChatClient, order: str) -> dict:
    [m] = await c.say(order)
    if m["text"].startswith("You mentioned"):       # pre-filled from the story: confirm it
        [m] = await c.say("Yes", payload="prefill:yes")
    return m



async def test_reference_at_once_and_status_only_for_its_owner(running: Running) -> None:
    ada = ChatClient(running.http, running.ws_url)
    eve = ChatClient(running.http, running.ws_url)
    await ada.connect()
    await eve.connect()
    try:
        ref = await _file_complaint(ada, "shipping", "AB123456", "The parcel never came.")
        assert ref == "C-1001"
        [m] = await ada.say("No, that's all", payload="no")
        assert ref in m["text"]

        [m] = await ada.say(f"what's the status of {ref}?")
        assert m["text"].startswith(f"Your complaint {ref} about shipping: it is waiting for our")
        assert "We aim to resolve it by" in m["text"]
        [m] = await ada.say("any news on my complaint")
        assert f"Your complaint {ref}" in m["text"]

        [m] = await eve.say(f"what's the status of {ref}?")
        assert m["text"].startswith(f"I couldn't find a complaint {ref} under your name")
        assert "shipping" not in m["text"]
    finally:
        await ada.close()
        await eve.close()


async def test_an_urgent_complaint_goes_to_the_front_of_the_queue(running: Running) -> None:
    calm = ChatClient(running.http, running.ws_url)
    angry = ChatClient(running.http, running.ws_url)
    await calm.connect()
    await angry.connect()
    try:
        await _file_complaint(calm, "product", "AB111111", "The handle came off the mug.")
        await calm.say("Yes, talk to a person", payload="yes", expect_text="queue")
        await _file_complaint(angry, "product", "CD222222",
                              "THIRD TIME the kettle arrived broken!! My lawyer will hear about this")
        await angry.say("Yes, talk to a person", payload="yes", expect_text="queue")
        first, second = await agent_queue(running)
        assert first["priority"] > second["priority"]
        async with running.http.get(f"{running.url}/agent/api/handoffs/{first['id']}",
                                    headers=agent_headers()) as resp:
            ctx = (await resp.json())["context"]
        assert ctx["ticket"]["reference"] == "C-1002" and ctx["ticket"]["severity"] == "critical"
        assert any("urgency" in r for r in ctx["ticket"]["reasons"])
    finally:
        await calm.close()
        await angry.close()


async def test_resolution_tells_the_result_and_asks_for_satisfaction(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        ref = await _file_complaint(c, "payment", "EF333333", "I was charged twice for one order.")
        await c.say("Yes, talk to a person", payload="yes", expect_text="queue")
        [h] = await agent_queue(running)
        for action, body in (("claim", None), ("resolve", {"result": "we refunded the second charge"})):
            async with running.http.post(f"{running.url}/agent/api/handoffs/{h['id']}/{action}",
                                         headers=agent_headers(), json=body or {}) as resp:
                assert resp.status == 200, await resp.text()
        msgs = await c.replies_until(lambda m: "How satisfied" in m["text"])
        texts = [m["text"] for m in msgs]
        assert f"Anna resolved your complaint {ref}: we refunded the second charge" in texts
        [m] = await c.say("4", payload="4")
        assert "anything you'd like to add" in m["text"]
        [m] = await c.say("Quick and friendly, thanks")
        assert m["text"].startswith("Thanks for your feedback")

        store = running.app[SERVICES].store
        t = await store.get_ticket(ref)
        assert t is not None and t.status == "resolved" and t.resolved_by == "Anna Smith"
        assert t.result == "we refunded the second charge"
        assert (t.csat, t.csat_comment) == (4, "Quick and friendly, thanks")

        # status after resolution says so
        [m] = await c.say(f"status of {ref}")
        assert m["text"].startswith(f"Your complaint {ref} about payment was resolved on")
    finally:
        await c.close()


async def test_agents_work_complaints_from_the_ticket_list(running: Running) -> None:
    """A complaint filed without asking for a person is still the team's work: it is listed,
    and resolving it tells the customer where they wrote last, then asks for a score."""
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        ref = await _file_complaint(c, "product", "JK555555", "The zip broke the first time I used it.")
        await c.say("No, that's all", payload="no")
        async with running.http.get(running.url + "/agent/api/tickets") as resp:
            assert resp.status == 401
        async with running.http.get(running.url + "/agent/api/tickets", headers=agent_headers()) as resp:
            [t] = (await resp.json())["tickets"]
        assert t["reference"] == ref and t["handoff"] is None and t["overdue"] is False and t["due_at"]

        url = f"{running.url}/agent/api/tickets/{ref}/resolve"
        async with running.http.post(url, headers=agent_headers(), json={"result": "a new jacket is on its way"}) as r:
            assert r.status == 200 and (await r.json())["ticket"]["status"] == "resolved"
        msgs = await c.replies_until(lambda m: "How satisfied" in m["text"])
        assert msgs[0]["text"] == f"Anna resolved your complaint {ref}: a new jacket is on its way"
        async with running.http.post(url, headers=agent_headers(), json={}) as r:
            assert r.status == 409 and "already resolved" in (await r.json())["error"]
        async with running.http.post(f"{running.url}/agent/api/tickets/C-9999/resolve", headers=agent_headers(),
                                     json={}) as r:
            assert r.status == 404                  # no such complaint
        async with running.http.get(running.url + "/agent/api/tickets", headers=agent_headers()) as resp:
            assert (await resp.json())["tickets"] == []
    finally:
        await c.close()


async def test_a_complaint_in_the_queue_is_resolved_through_its_conversation(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        ref = await _file_complaint(c, "payment", "LM666666", "Charged twice.")
        await c.say("Yes, talk to a person", payload="yes", expect_text="queue")
        async with running.http.get(running.url + "/agent/api/tickets", headers=agent_headers()) as resp:
            [t] = (await resp.json())["tickets"]
        assert t["handoff"]["state"] == "queued"
        async with running.http.post(f"{running.url}/agent/api/tickets/{ref}/resolve", headers=agent_headers(),
                                     json={"result": "x"}) as r:
            assert r.status == 409 and "resolve that" in (await r.json())["error"]
        async with running.http.post(f"{running.url}/agent/api/tickets/{ref}/resolve", headers=agent_headers(),
                                     json={"result": 5}) as r:
            assert r.status == 400
    finally:
        await c.close()
