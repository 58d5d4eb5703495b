"""End to end over a real WebSocket with the learned NLU and the demo flows (the default setup):
paraphrases, out of scope, a complaint inside a FAQ with the order number pre-filled, urgency."""

from __future__ import annotations

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient



async def test_a_paraphrase_never_seen_reaches_the_right_answer(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        # none of these words are an example of the opening_hours intent
        [m] = await c.say("till what hour can I reach your support people on saturdays?")
        assert "Monday to Friday" in m["text"] and "Saturday" in m["text"]
        [m] = await c.say("how many days until my package gets to me")
        assert "delivery takes" in m["text"]
    finally:
        await c.close()


async def test_out_of_scope_gets_did_you_mean_buttons_then_a_human(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        [m] = await c.say("what is the capital city of peru")
        titles = [b["title"] for b in m["buttons"]]
        assert len(titles) == 2 and all(b["payload"].startswith("intent:") for b in m["buttons"])
        assert m["text"] == f"Did you mean {titles[0]} or {titles[1]}?"
        # a button is the customer's answer: it runs that topic
        [m] = await c.say(titles[0], payload=m["buttons"][0]["payload"])
        assert not m["text"].startswith("Did you mean")

        await c.say("how tall is mount everest")
        await c.say("recommend me a good pasta recipe")
        [m] = await c.say("who won the football world cup in 1998")
        assert "talk to a person" in m["text"]          # after max_misses: a human is offered
        assert [b["payload"] for b in m["buttons"]] == ["intent:human"]
    finally:
        await c.close()


async def test_a_complaint_inside_a_faq_is_offered_the_complaint_flow_prefilled(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        [m] = await c.say("how long does delivery take?")
        assert "delivery takes" in m["text"]
        # a payment question that is really a complaint, with the order number in it
        got = await c.say("do you accept paypal? your card page charged me twice for order AB123456",
                          expect_text="open a complaint")
        assert "PayPal" in got[0]["text"]                            # the question is answered...
        offer = got[-1]
        assert [b["payload"] for b in offer["buttons"]] == ["intent:complaint"]   # ...and filing offered
        got = await c.say(offer["buttons"][0]["title"], payload="intent:complaint",
                          expect_text="Let me check I have this right")
        # the category and order number given earlier are confirmed in one question, not asked again
        m = got[-1]
        assert "- category: Payment\n- order number: AB123456\n" in m["text"]
        assert [b["payload"] for b in m["buttons"]] == ["prefill:yes", "prefill:no"]
        [m] = await c.say("Yes", payload="prefill:yes")
        assert "photo" in m["text"]
    finally:
        await c.close()


async def test_saying_no_to_a_prefilled_value_asks_normally(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        got = await c.say("my parcel AB123456 never arrived, this is the third time!!",
                          expect_text="Let me check I have this right")
        assert "- category: Shipping\n- order number: AB123456\n- description: “my parcel" in got[-1]["text"]
        [m] = await c.say("no", payload="prefill:no")
        assert m["text"] == "What is it about?"
        [m] = await c.say("Shipping", payload="shipping")
        assert m["text"].startswith("Let me check I have this right:\n- order number: AB123456")
        [m] = await c.say("no", payload="prefill:no")
        assert "What's your order number?" in m["text"]
        [m] = await c.say("it is CD654321")
        assert "what happened" in m["text"]
    finally:
        await c.close()


async def test_anger_raises_the_handoff_priority(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        got = await c.say("let me talk to a real person NOW, third time I'm asking!!", expect_text="queue")
        # the customer is told why and to whom, in the flow's words (no internal cues)
        assert "because you asked to talk to a person." in got[-1]["text"] and "urgent" not in got[-1]["text"]
        [h] = await agent_queue(running)
        assert h["priority"] == 1                 # the human flow's 0, +1 for "elevated"
        async with running.http.get(f"{running.url}/agent/api/handoffs/{h['id']}",
                                    headers=agent_headers()) as resp:
            ctx = (await resp.json())["context"]
        assert ctx["signals"]["urgency_level"] == "elevated"
        assert "third time" in ctx["signals"]["urgency_reasons"]
    finally:
        await c.close()
