"""WhatsApp end to end: signed webhook POSTs into the app, the connector against a fake Graph API."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from conftest import Running, agent_headers, serving, start_app, stop_app, until
from e2e.apps import APP_SECRET, T0, VERIFY, Clock, fake_server, frozen_clock, hook, wa_config
from e2e.chat import ChatClient
from e2e.test_agent_attachments import agent_upload
from e2e.test_tickets_e2e import _file_complaint
from fakes.whatsapp_api import (FakeWhatsApp, button_reply, contacts_message, deliver_webhook, image_message,
                                list_reply, location_message, sign, status_update, text_message)

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")

fake = fake_server(FakeWhatsApp)


async def _start(tmp_path: Path, fake: FakeWhatsApp, templates: str = "") -> tuple[Running, Clock]:
    r = await start_app(wa_config(tmp_path, fake, templates))
    return r, frozen_clock(r)


@pytest.fixture
async def app(tmp_path: Path, fake: FakeWhatsApp) -> AsyncIterator[tuple[Running, Clock]]:
    async with serving(wa_config(tmp_path, fake)) as r:
        yield r, frozen_clock(r)


def body_text(call: Any) -> str:
    a = call.args
    if a.get("type") == "text":
        return a["text"]["body"]
    if a.get("type") == "interactive":
        return a["interactive"]["body"]["text"]
    return json.dumps(a)


async def say(r: Running, fake: FakeWhatsApp, wa_id: str, text: str, expect: str, **kw: Any) -> Any:
    assert await deliver_webhook(r.http, hook(r), text_message(wa_id, text, ts=T0, **kw), APP_SECRET) == 200
    calls = await fake.wait_for("messages", predicate=lambda c: c.args.get("to") == wa_id and not c.failed
                                and expect in body_text(c))
    return calls[-1]


async def test_verification_handshake(app: tuple[Running, Clock]) -> None:
    r, _ = app
    q = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY}
    async with r.http.get(hook(r), params=q) as resp:
        assert resp.status == 200 and await resp.text() == "1158201444"
    async with r.http.get(hook(r), params={**q, "hub.verify_token": "wrong"}) as resp:
        assert resp.status == 403
    async with r.http.get(hook(r)) as resp:
        assert resp.status == 403


async def test_signed_text_answered_and_bad_input_refused(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, _ = app
    msg = text_message("4915100000001", "when are you open?", ts=T0, name="Maria Lopez")
    assert await deliver_webhook(r.http, hook(r), msg, "not-the-secret") == 401
    assert await deliver_webhook(r.http, hook(r), msg, None) == 401
    assert await r.services.store.open_conversation("whatsapp", "4915100000001") is None
    bad = b"{oops"
    async with r.http.post(hook(r), data=bad, headers={"X-Hub-Signature-256": sign(APP_SECRET, bad)}) as resp:
        assert resp.status == 400
    odd = json.dumps({"entry": "nope"}).encode()
    async with r.http.post(hook(r), data=odd, headers={"X-Hub-Signature-256": sign(APP_SECRET, odd)}) as resp:
        assert resp.status == 400
    assert await deliver_webhook(r.http, hook(r), msg, APP_SECRET) == 200
    # stored before the 200, the profile name on the customer
    conv = await r.services.store.open_conversation("whatsapp", "4915100000001")
    assert conv is not None
    assert (await r.services.store.get_customer(conv.customer_id)).display_name == "Maria Lopez"
    [answer] = await fake.wait_for("messages", predicate=lambda c: "Monday to Friday" in body_text(c))
    assert answer.args["to"] == "4915100000001" and answer.args["type"] == "text"
    assert await r.services.store.whatsapp_last_inbound("4915100000001") == T0


async def test_duplicate_delivery_answered_once(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, _ = app
    msg = text_message("4915100000002", "how long does shipping take", ts=T0, wamid="wamid.DUP1")
    assert await deliver_webhook(r.http, hook(r), msg, APP_SECRET) == 200
    await fake.wait_for("messages", predicate=lambda c: c.args["to"] == "4915100000002")
    assert await deliver_webhook(r.http, hook(r), msg, APP_SECRET) == 200
    await asyncio.sleep(1.0)
    assert len(fake.sent_to("4915100000002")) == 1
    conv = await r.services.store.open_conversation("whatsapp", "4915100000002")
    assert len([m for m in await r.services.store.history(conv.id) if m.direction == "in"]) == 1


async def test_statuses_out_of_order_and_failed(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, _ = app
    events = r.services.events.subscribe()
    call = await say(r, fake, "4915100000003", "when are you open?", "Monday to Friday")
    wamid = call.response["messages"][0]["id"]
    conv = await r.services.store.open_conversation("whatsapp", "4915100000003")

    async def out() -> Any:
        return [m for m in await r.services.store.history(conv.id) if m.direction == "out"][-1]

    await until(lambda: _status_is(r, conv.id, "sent"), what="the answer marked sent")
    # delivered arrives before sent, then read: never downgraded
    for st in ("delivered", "sent", "read", "delivered"):
        assert await deliver_webhook(r.http, hook(r), status_update(wamid, st, "4915100000003"), APP_SECRET) == 200
    assert (await r.services.store.whatsapp_status(wamid))["status"] == "read"
    assert (await out()).status == "sent"
    # a later failure (multi-device): the agent sees "not delivered", and the desks are told
    assert await deliver_webhook(r.http, hook(r), status_update(wamid, "failed", "4915100000003", code=131026),
                                 APP_SECRET) == 200
    m = await out()
    assert m.status == "failed" and "not delivered" in m.error and "131026" in m.error
    ev = await asyncio.wait_for(_next_event(events, "delivery_failed"), 3)
    assert ev.data["message_id"] == m.id and ev.data["channel"] == "whatsapp"
    # delivered after failed changes nothing; a status for a message not ours is ignored
    assert await deliver_webhook(r.http, hook(r), status_update(wamid, "delivered", "4915100000003"), APP_SECRET) == 200
    assert (await out()).status == "failed"
    assert await deliver_webhook(r.http, hook(r), status_update("wamid.NOTOURS", "failed", "1"), APP_SECRET) == 200


async def test_failed_status_before_the_send_returned(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    """The status overtakes the send: the send's answer is recorded as failed, not as sent."""
    r, _ = app
    conn = r.services.connectors["whatsapp"]
    events = r.services.events.subscribe()
    original = conn._graph                            # type: ignore[attr-defined]

    async def graph_then_status(method: str, path: str, **kw: Any) -> Any:
        res = await original(method, path, **kw)
        if path.endswith("/messages") and kw["json_body"]["to"] == "4915100000004":
            wamid = res["messages"][0]["id"]
            assert await deliver_webhook(r.http, hook(r), status_update(wamid, "failed", "4915100000004",
                                                                        code=131026), APP_SECRET) == 200
        return res

    conn._graph = graph_then_status                   # type: ignore[attr-defined]
    assert await deliver_webhook(r.http, hook(r), text_message("4915100000004", "when are you open?", ts=T0),
                                 APP_SECRET) == 200
    conv = await _conversation(r, "4915100000004")
    await until(lambda: _status_is(r, conv.id, "failed"), what="the answer marked failed")
    ev = await asyncio.wait_for(_next_event(events, "delivery_failed"), 3)
    assert "131026" in ev.data["reason"]


async def test_complaint_with_list_reply_button_reply_and_image(app: tuple[Running, Clock],
                                                                fake: FakeWhatsApp) -> None:
    r, _ = app
    wa = "4915100000005"
    ask = await say(r, fake, wa, "I want to make a complaint", "What is it about?")
    inter = ask.args["interactive"]
    assert inter["type"] == "list"                                   # 5 choices: more than 3 buttons
    rows = inter["action"]["sections"][0]["rows"]
    assert [row["id"] for row in rows] == ["product", "shipping", "payment", "service", "pricing"]
    assert all(len(row["title"]) <= 24 for row in rows) and len(inter["action"]["button"]) <= 20
    assert await deliver_webhook(r.http, hook(r), list_reply(wa, "product", "Product", ts=T0), APP_SECRET) == 200
    await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and "order number" in body_text(c))
    await say(r, fake, wa, "AB123456", "what happened")
    await say(r, fake, wa, "The vase arrived in pieces", "photo")
    fake.add_media("MEDIA1", PNG, "image/png")
    assert await deliver_webhook(r.http, hook(r), image_message(wa, "MEDIA1", caption="here", ts=T0), APP_SECRET) == 200
    [offer] = await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa
                                  and "talk to a member" in body_text(c))
    # "Yes, talk to a person" is 21 characters: too long for a reply button (20), so a list row (24)
    assert offer.args["interactive"]["type"] == "list"
    rows = offer.args["interactive"]["action"]["sections"][0]["rows"]
    assert rows[0] == {"id": "yes", "title": "Yes, talk to a person"}
    assert await deliver_webhook(r.http, hook(r), button_reply(wa, "yes", "Yes, talk to a person", ts=T0),
                                 APP_SECRET) == 200
    await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and "Complaints team" in body_text(c))
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [h] = (await resp.json())["handoffs"]
    async with r.http.get(f"{r.url}/agent/api/handoffs/{h['id']}", headers=agent_headers()) as resp:
        ctx = (await resp.json())["context"]
    assert h["channel"] == "whatsapp" and ctx["slots"]["category"] == "product"
    [photo] = ctx["slots"]["photos"]
    async with r.http.get(r.url + photo["url"], headers=agent_headers()) as resp:
        assert resp.status == 200 and await resp.read() == PNG


async def test_reply_buttons_for_three_short_choices(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    from bot.model import Button, Outbound
    r, _ = app
    wa = "4915100000006"
    await say(r, fake, wa, "when are you open?", "Monday to Friday")
    conv = await _conversation(r, wa)
    await r.services.store.commit_turn(conv.id, inbound_id=None, flow_state=None, keep_flow_state=True, replies=[
        Outbound("Which one?", buttons=(Button("Yes", "yes"), Button("No", "no"), Button("Maybe later", "later")))])
    r.services.delivery.wake()
    [c] = await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and c.args["type"] == "interactive")
    assert c.args["interactive"]["type"] == "button"
    assert [b["reply"]["id"] for b in c.args["interactive"]["action"]["buttons"]] == ["yes", "no", "later"]


async def test_location_and_contacts_kept_as_data(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, _ = app
    wa = "4915100000007"
    assert await deliver_webhook(r.http, hook(r), location_message(wa, 52.52, 13.405, name="Shop", ts=T0),
                                 APP_SECRET) == 200
    assert await deliver_webhook(r.http, hook(r), contacts_message(wa, "Jon Doe", "+49 170 1234567", ts=T0),
                                 APP_SECRET) == 200
    conv = await _conversation(r, wa)
    ins = [m for m in await r.services.store.history(conv.id) if m.direction == "in"]
    assert ins[0].text.startswith("[location] Shop") and json.loads(ins[0].payload[len("location:"):])["latitude"] == 52.52
    assert "Jon Doe" in ins[1].text and json.loads(ins[1].payload[len("contacts:"):])[0]["phones"] == ["+49 170 1234567"]


async def _handoff_claimed(r: Running, fake: FakeWhatsApp, wa: str) -> str:
    await say(r, fake, wa, "agent", "Customer Care")
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [h] = [x for x in (await resp.json())["handoffs"] if x["channel"] == "whatsapp"]
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200
    await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and "has joined" in body_text(c))
    return h["id"]


async def test_handoff_agent_reply_reaches_whatsapp_and_bot_is_silent(app: tuple[Running, Clock],
                                                                      fake: FakeWhatsApp) -> None:
    r, _ = app
    wa = "4915100000008"
    hid = await _handoff_claimed(r, fake, wa)
    before = len(fake.sent_to(wa))
    assert await deliver_webhook(r.http, hook(r), text_message(wa, "when are you open?", ts=T0), APP_SECRET) == 200
    await asyncio.sleep(1.0)
    assert len(fake.sent_to(wa)) == before                   # the agent owns it: no bot answer
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                           json={"text": "A new vase is on its way"}) as resp:
        assert resp.status == 200
    [c] = await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and "new vase" in body_text(c))
    assert c.args["text"]["body"] == "*Anna*: A new vase is on its way"


async def test_window_closed_without_template_is_not_sent(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, clock = app
    wa = "4915100000009"
    hid = await _handoff_claimed(r, fake, wa)
    clock.now = T0 + 23 * 3600                                # inside: free text
    window = await _reply_window(r, hid)                      # the desk shows it open, and until when
    assert window["open"] and window["closes_at"].startswith(
        datetime.fromtimestamp(T0 + 24 * 3600, timezone.utc).isoformat()[:16])
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                           json={"text": "Still checking"}) as resp:
        assert resp.status == 200
    await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and "Still checking" in body_text(c))
    clock.now = T0 + 25 * 3600                                # outside, and no template
    window = await _reply_window(r, hid)
    assert not window["open"] and "no template configured" in window["outside"]
    sent = len(fake.calls_to("messages"))
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                           json={"text": "Sorry for the wait"}) as resp:
        msg_id = (await resp.json())["message"]["id"]
    conv = await _conversation(r, wa)
    await until(lambda: _message_status(r, conv.id, msg_id, "failed"), what="the late reply marked failed")
    [m] = [m for m in await r.services.store.history(conv.id) if m.id == msg_id]
    assert "24-hour window" in m.error and "no template configured" in m.error
    assert len(fake.calls_to("messages")) == sent            # nothing went to WhatsApp


async def test_window_closed_with_template_sends_the_template(tmp_path: Path, fake: FakeWhatsApp) -> None:
    r, clock = await _start(tmp_path, fake, "templates: {default: {name: support_update, language: en_US}}")
    try:
        wa = "4915100000010"
        hid = await _handoff_claimed(r, fake, wa)
        clock.now = T0 + 2 * 86400
        async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                               json={"text": "Your refund\nis done"}) as resp:
            assert resp.status == 200
        [c] = await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and c.args["type"] == "template")
        tpl = c.args["template"]
        assert tpl["name"] == "support_update" and tpl["language"] == {"policy": "deterministic", "code": "en_US"}
        assert tpl["components"][0]["parameters"][0]["text"] == "*Anna*: Your refund is done"
        # the customer writes again: the window is open again, free text
        clock.now = T0 + 2 * 86400 + 60
        assert await deliver_webhook(r.http, hook(r), text_message(wa, "thanks", ts=int(clock.now)), APP_SECRET) == 200
        async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                               json={"text": "You're welcome"}) as resp:
            assert resp.status == 200
        await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and c.args["type"] == "text"
                            and "welcome" in body_text(c))
    finally:
        await stop_app(r)


async def test_transient_errors_retried_permanent_not(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, _ = app
    fake.fail_next("messages", status=400, code=131056, message="pair rate limit hit", to="4915100000011",
                   headers={"Retry-After": "0.2"})
    fake.fail_next("messages", status=503, code=None, message="upstream", to="4915100000011")
    await say(r, fake, "4915100000011", "when are you open?", "Monday to Friday")
    assert len(fake.sent_to("4915100000011", ok=False)) == 2 and len(fake.sent_to("4915100000011")) == 1

    fake.fail_next("messages", status=400, code=131026, message="Message undeliverable", to="4915100000012")
    assert await deliver_webhook(r.http, hook(r), text_message("4915100000012", "when are you open?", ts=T0),
                                 APP_SECRET) == 200
    conv = await _conversation(r, "4915100000012")
    await until(lambda: _status_is(r, conv.id, "failed"), what="the answer marked failed")
    await asyncio.sleep(0.5)
    assert len(fake.sent_to("4915100000012", ok=False)) == 1 and not fake.sent_to("4915100000012")
    [m] = [m for m in await r.services.store.history(conv.id) if m.direction == "out"]
    assert "could not deliver to this number" in m.error and "131026" in m.error


async def test_agent_image_is_uploaded_and_sent(app: tuple[Running, Clock], fake: FakeWhatsApp) -> None:
    r, _ = app
    wa = "4915100000013"
    hid = await _handoff_claimed(r, fake, wa)
    up = await agent_upload(r, PNG, "label.png")                     # as the desk's Attach button does
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                           json={"text": "Here is your return label", "attachments": [{"id": up["id"]}]}) as resp:
        assert resp.status == 200, await resp.text()
    [img] = await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and c.args["type"] == "image")
    assert fake.uploads[img.args["image"]["id"]][0] == PNG
    await fake.wait_for("messages", predicate=lambda c: c.args["to"] == wa and "return label" in body_text(c))


async def test_readyz_reports_whatsapp(app: tuple[Running, Clock]) -> None:
    r, _ = app
    for _ in range(100):
        async with r.http.get(r.url + "/readyz") as resp:
            body = await resp.json()
        if body["connectors"].get("whatsapp") == "ok":
            break
        await asyncio.sleep(0.05)
    assert resp.status == 200 and body["connectors"]["whatsapp"] == "ok"


async def test_readyz_failing_on_a_refused_token(tmp_path: Path, fake: FakeWhatsApp) -> None:
    config = wa_config(tmp_path, fake)
    config = config.model_copy(update={"whatsapp": config.whatsapp.model_copy(
        update={"access_token": type(config.whatsapp.access_token)("EAAG-wrong")})})
    r = await start_app(config)
    try:
        for _ in range(100):
            async with r.http.get(r.url + "/readyz") as resp:
                body = await resp.json()
            if body["connectors"]["whatsapp"] != "starting":
                break
            await asyncio.sleep(0.05)
        assert resp.status == 503
        assert body["connectors"]["whatsapp"] == "failing: the Graph API refused the access token"
    finally:
        await stop_app(r)


# -- helpers -----------------------------------------------------------------------------------

async def _reply_window(r: Running, hid: str) -> dict[str, Any]:
    async with r.http.get(f"{r.url}/agent/api/handoffs/{hid}", headers=agent_headers()) as resp:
        assert resp.status == 200
        return (await resp.json())["context"]["reply_window"]  # type: ignore[no-any-return]


async def _conversation(r: Running, wa: str) -> Any:
    conv = None

    async def found() -> bool:
        nonlocal conv
        conv = await r.services.store.open_conversation("whatsapp", wa)
        return conv is not None

    await until(found, what="the conversation")
    return conv


async def _status_is(r: Running, conv_id: str, status: str) -> bool:
    outs = [m for m in await r.services.store.history(conv_id) if m.direction == "out"]
    return bool(outs) and outs[-1].status == status


async def _message_status(r: Running, conv_id: str, msg_id: int, status: str) -> bool:
    return any(m.id == msg_id and m.status == status for m in await r.services.store.history(conv_id))


async def _next_event(q: "asyncio.Queue[Any]", kind: str) -> Any:
    while True:
        ev = await q.get()
        if ev.kind == kind:
            return ev


async def test_a_linked_customer_sees_their_web_chat_complaint_on_whatsapp(app: tuple[Running, Clock],
                                                                          fake: FakeWhatsApp) -> None:
    r, _ = app
    wa = "4915100000042"
    web = ChatClient(r.http, r.ws_url)
    await web.connect()
    try:
        ref = await _file_complaint(web, "shipping", "AB123456", "The parcel never came.")
        await web.say("No, that's all", payload="no")
        await say(r, fake, wa, f"what's the status of {ref}?", f"couldn't find a complaint {ref}")
        [m] = await web.say("link my accounts")
        code = re.search(r'"link (\d{6})"', m["text"])
        assert code, m["text"]
        await say(r, fake, wa, f"link {code.group(1)}", "Done: your accounts are linked")
        await say(r, fake, wa, f"what's the status of {ref}?", f"Your complaint {ref} about shipping")
    finally:
        await web.close()
