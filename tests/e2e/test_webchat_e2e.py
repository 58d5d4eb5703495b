"""End to end over a real WebSocket: complaint -> handoff -> agent -> customer -> resolve."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")



async def _agent(r: Running, hid: str, action: str, agent: str = "Anna Smith",
                 body: dict | None = None) -> tuple[int, dict]:
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/{action}", headers=agent_headers(agent),
                           json=body or {}) as resp:
        return resp.status, await resp.json()


async def _context(r: Running, hid: str) -> dict:
    async with r.http.get(f"{r.url}/agent/api/handoffs/{hid}", headers=agent_headers()) as resp:
        assert resp.status == 200
        return (await resp.json())["context"]


async def _upload(r: Running, token: str, data: bytes, name: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="image/png")
    async with r.http.post(r.url + "/webchat/upload", data=form,
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def test_complaint_handoff_agent_reply_resolve(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        # routine question
        [m] = await c.say("when are you open?")
        assert "Monday to Friday" in m["text"]

        # the complaint, step by step
        got = await c.say("I want to make a complaint", expect_text="What is it about?")
        assert [b["payload"] for b in got[-1]["buttons"]] == ["product", "shipping", "payment", "service",
                                                               "pricing"]
        [m] = await c.say("Shipping", payload="shipping")
        assert "order number" in m["text"]
        [m] = await c.say("it's 12345")                      # format check: re-asked
        assert "doesn't look like an order number" in m["text"]
        await c.reply()                                     # ...and the question again
        [m] = await c.say("my order is ab123456")
        assert "what happened" in m["text"]
        [m] = await c.say("The parcel never came. {{ 7*7 }} {% for x in y %}")
        assert "photo" in m["text"]
        status, up = await _upload(r, c.token or "", PNG, "box.png")
        assert status == 200 and up["kind"] == "image"
        ack = await c.send("", attachments=[{"id": up["id"]}])
        assert ack["type"] == "ack"
        msgs = await c.replies_until(lambda m: "talk to a member of our team" in m["text"])
        texts = [m["text"] for m in msgs]
        # hear, empathize, apologize -- in that order -- then the reference at once
        hear, ref = texts[0], texts[1]
        assert hear.index("Thank you") < hear.index("frustrating") < hear.index("sorry")
        assert "Your reference number is C-1001" in ref

        # the handoff: why, to whom, place in the queue
        [m] = await c.say("yes please", payload="yes")
        assert "Complaints team" in m["text"] and "complaint C-1001" in m["text"]
        assert "number 1 in the queue" in m["text"]
        [state] = [f for f in c.frames if f["type"] == "state"]
        assert state["state"] == "waiting" and state["team"] == "Complaints"

        # the customer writes while waiting: kept, the bot stays silent
        ack = await c.send("Please hurry, it was a birthday present")
        assert ack["type"] == "ack"
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.5)

        # the agent sees the whole context
        [h] = await agent_queue(r)
        assert h["state"] == "queued" and h["team"] == "complaints" and h["priority"] == 1
        assert h["channel"] == "webchat" and h["position"] == 1
        ctx = await _context(r, h["id"])
        assert ctx["slots"]["category"] == "shipping"
        assert ctx["slots"]["order_number"] == "AB123456"
        assert ctx["slots"]["description"] == "The parcel never came. {{ 7*7 }} {% for x in y %}"
        assert ctx["slots"]["photos"][0]["url"] == up["url"]
        assert ctx["reference"] == "C-1001" and "complaint C-1001" in ctx["reason"]
        assert ctx["conversation"]["channel"] == "webchat" and ctx["customer"]["id"]
        transcript = [m["text"] for m in ctx["transcript"]]
        assert "when are you open?" in transcript and "my order is ab123456" in transcript
        assert [m["text"] for m in ctx["waiting_messages"]] == ["Please hurry, it was a birthday present"]

        # the agent can open the photo; the customer's own token can too; nobody else
        async with r.http.get(r.url + up["url"], headers=agent_headers()) as resp:
            assert resp.status == 200 and await resp.read() == PNG
        async with r.http.get(r.url + up["url"], params={"token": c.token}) as resp:
            assert resp.status == 200
        async with r.http.get(r.url + up["url"]) as resp:
            assert resp.status == 403

        # claim: the customer is told who joined
        status, body = await _agent(r, h["id"], "claim")
        assert status == 200 and body["handoff"]["agent"] == "Anna Smith"
        m = await c.reply()
        assert m["role"] == "system" and m["text"].startswith("Anna from Complaints")
        status, body = await _agent(r, h["id"], "claim", agent="Bob Jones")
        assert status == 409 and "Anna Smith" in body["error"]

        # the agent's reply reaches the widget live
        status, body = await _agent(r, h["id"], "reply", body={"text": "Hi, I'm sorry! I'm on it."})
        assert status == 200
        m = await c.reply()
        assert m["role"] == "agent" and m["sender"] == "Anna" and m["text"] == "Hi, I'm sorry! I'm on it."
        # only the claimant may reply
        status, _ = await _agent(r, h["id"], "reply", agent="Bob Jones", body={"text": "hi"})
        assert status == 409

        # the customer's answer reaches the agent (and not the bot)
        await c.send("Thank you! {{ 7*7 }}")
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.3)
        ctx = await _context(r, h["id"])
        assert ctx["transcript"][-1]["text"] == "Thank you! {{ 7*7 }}"
        assert ctx["transcript"][-1]["role"] == "customer"

        # resolve: the customer is told the result, the queue empties, the survey starts
        status, body = await _agent(r, h["id"], "resolve", body={"result": "a new parcel is on its way"})
        assert status == 200 and body["handoff"]["state"] == "resolved"
        m = await c.reply()
        assert m["text"] == "Anna resolved your complaint C-1001: a new parcel is on its way"
        m = await c.reply()
        assert m["text"].startswith("How satisfied are you with how we handled C-1001?")
        assert [b["payload"] for b in m["buttons"]] == ["1", "2", "3", "4", "5"]
        assert await agent_queue(r) == []

        # a question instead of a score is answered, and the survey asked again
        got = await c.say("what payment methods do you accept", expect_text="How satisfied")
        assert "PayPal" in got[0]["text"]
    finally:
        await c.close()


async def test_human_at_any_point_and_hand_back(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        await c.say("I have a problem with my order", expect_text="What is it about?")
        [m] = await c.say("Product", payload="product")
        assert "order number" in m["text"]
        [m] = await c.say("can I talk to a human please")
        assert "Customer Care team" in m["text"] and "asked to talk to a person" in m["text"]
        [h] = await agent_queue(r)
        ctx = await _context(r, h["id"])
        assert ctx["slots"]["category"] == "product"          # what was captured travels along
        assert (await _agent(r, h["id"], "claim"))[0] == 200
        await c.reply()
        status, body = await _agent(r, h["id"], "release")
        assert status == 200 and body["handoff"]["state"] == "returned"
        m = await c.reply()
        assert "back with our assistant" in m["text"]
        [m] = await c.say("how long does shipping take")        # the bot answers again
        assert "working days" in m["text"]
    finally:
        await c.close()


async def test_resume_with_token_and_isolation(running: Running) -> None:
    r = running
    alice = ChatClient(r.http, r.ws_url)
    await alice.connect()
    await alice.say("what is your return policy")
    token = alice.token
    await alice.close()

    # a reloaded page resumes its own conversation, with history
    again = ChatClient(r.http, r.ws_url)
    w = await again.connect(token=token)
    assert w["token"] == token
    assert [m["text"] for m in w["history"]][0] == "what is your return policy"
    assert any("30 days" in m["text"] for m in w["history"])
    # only newer history when last_id is given
    w2 = await ChatClient(r.http, r.ws_url).connect(token=token, last_id=max(m["id"] for m in w["history"]))
    assert w2["history"] == []
    await again.close()

    # another customer gets nothing of Alice's
    bob = ChatClient(r.http, r.ws_url)
    wb = await bob.connect()
    assert wb["history"] == [] and wb["token"] != token
    await bob.close()

    # a forged token is refused with an error frame and a fresh session
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    eve = ChatClient(r.http, r.ws_url)
    w = await eve.connect(token=forged)
    assert w["history"] == [] and w["token"] != token
    assert any(f["type"] == "error" and f["code"] == "invalid_token" for f in eve.frames)
    # and cannot read Alice's photo or upload as her
    status, _ = await _upload(r, forged, PNG, "x.png")
    assert status == 401
    await eve.close()


async def test_bad_frames_keep_socket_usable(running: Running, config) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    assert c.ws is not None
    try:
        cases = [
            ("x" * (config.webchat.max_frame_bytes + 10), "too_large"),
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_frame"),
            (json.dumps({"type": "message", "text": "no client id"}), "bad_frame"),
            (json.dumps({"type": "message", "client_id": "a", "text": 5}), "bad_frame"),
            (json.dumps({"type": "message", "client_id": "b", "text": ""}), "bad_frame"),
            (json.dumps({"type": "message", "client_id": "c", "text": "x", "attachments": [{"id": "att_0"}]}),
             "bad_frame"),
            (json.dumps({"type": "nope"}), "bad_frame"),
        ]
        for raw, code in cases:
            await c.ws.send_str(raw)
            f = await c.expect(lambda f: f["type"] == "error")
            assert f["code"] == code, (raw[:40], f)
        # an oversized message is named, so the widget can mark it failed
        await c.ws.send_str(json.dumps({"type": "message", "client_id": "big-1", "text": "y" * 20000}))
        f = await c.expect(lambda f: f["type"] == "error")
        assert f["code"] == "too_large" and f["client_id"] == "big-1"
        await c.ws.send_bytes(b"\x00\x01")
        assert (await c.expect(lambda f: f["type"] == "error"))["code"] == "bad_frame"
        # still usable
        [m] = await c.say("hello")
        assert "Acme Shop assistant" in m["text"]
    finally:
        await c.close()


async def test_duplicate_client_message_id_is_one_message(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        a1 = await c.send("what payment methods do you accept", client_id="fixed-1")
        await c.reply()
        a2 = await c.send("what payment methods do you accept", client_id="fixed-1")
        assert a1["id"] == a2["id"] and a2["duplicate"] is True and a1["duplicate"] is False
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.4)                      # answered once
        # also after a reconnect
        await c.close()
        c2 = ChatClient(r.http, r.ws_url)
        await c2.connect(token=c.token)
        a3 = await c2.send("what payment methods do you accept", client_id="fixed-1")
        assert a3["id"] == a1["id"] and a3["duplicate"] is True
        await c2.close()
        conv = await r.services.store.latest_conversation("webchat", r.services.webchat.signer.verify(c.token))
        hist = await r.services.store.history(conv.id)
        assert [m.direction for m in hist] == ["in", "out"]
    finally:
        await c.close()


async def test_customer_text_is_never_a_template(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        await c.say("I want to complain", expect_text="What is it about?")
        await c.say("payment", payload="payment")
        await c.say("AB123456")
        await c.say("{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ config }}")
        msgs = await c.say("skip", expect_text="talk to a member")
        joined = " ".join(m["text"] for m in msgs)
        # (the deadline's date and time, "1 Dec, 14:49 UTC", may hold a 49 of its own)
        without_times = re.sub(r"\d{1,2} \w{3}, \d{2}:\d{2} UTC", "", joined)
        assert "49" not in without_times and "xxx" not in joined
        conv = await r.services.store.latest_conversation("webchat", r.services.webchat.signer.verify(c.token))
        state = await r.services.store.load_flow_state(conv.id)
        assert state["slots"]["description"] == "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ config }}"
    finally:
        await c.close()


async def test_agent_api_requires_login(running: Running) -> None:
    r = running
    async with r.http.get(r.url + "/agent/api/queue") as resp:
        assert resp.status == 401
    async with r.http.get(r.url + "/agent/api/queue", headers={"Authorization": "Bearer wrong",
                                                                "X-Omnibot-Agent": "x"}) as resp:
        assert resp.status == 401
    async with r.http.post(r.url + "/agent/login", json={"token": "wrong", "name": "A"}) as resp:
        assert resp.status == 401
    async with r.http.post(r.url + "/agent/login", json={"token": "test-agent-token", "name": "Anna"}) as resp:
        assert resp.status == 200
    async with r.http.get(r.url + "/agent/api/me") as resp:   # the cookie now identifies the agent
        assert resp.status == 200 and (await resp.json())["name"] == "Anna"
    async with r.http.get(r.url + "/agent") as resp:
        assert resp.status == 200 and "agent.js" in await resp.text()
    async with r.http.get(r.url + "/agent/static/agent.js") as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
    async with r.http.get(r.url + "/agent/static/..%2f..%2fbot%2fconfig.py") as resp:
        assert resp.status == 404
