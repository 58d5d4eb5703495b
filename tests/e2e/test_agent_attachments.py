"""An agent attaches an image or a PDF to a reply (the desk's Attach button: POST /agent/api/upload,
then the reply names the file): it reaches the customer on their channel, and only they (and
agents) can open the copy the web chat links to."""

from __future__ import annotations

from typing import Any

import aiohttp

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient
from e2e.test_telegram import PNG, fake, polling, say  # noqa: F401 (pytest fixtures)
from fakes.telegram_api import FakeTelegram

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def agent_upload(r: Running, data: bytes, name: str, *, headers: dict[str, str] | None = None,
                       status: int = 200) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    async with r.http.post(r.url + "/agent/api/upload", data=form,
                           headers=agent_headers() if headers is None else headers) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def _claimed(r: Running) -> str:
    [h] = await agent_queue(r)
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200
    return h["id"]  # type: ignore[no-any-return]


async def _reply(r: Running, hid: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(), json=body) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def test_web_chat_customer_gets_the_agents_file_and_only_they_can_open_it(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    other = ChatClient(r.http, r.ws_url)
    await other.connect()
    try:
        await c.say("talk to a person", expect_text="Customer Care")
        hid = await _claimed(r)
        # refused: no agent, not an image or PDF, a file nobody uploaded, a customer's own upload
        await agent_upload(r, PNG, "x.png", headers={}, status=401)
        await agent_upload(r, b"#!/bin/sh\necho hi\n", "run.sh", status=415)
        await _reply(r, hid, {"text": "here", "attachments": [{"id": "att_" + "0" * 24}]}, status=400)
        await _reply(r, hid, {"text": "here", "attachments": "att_1"}, status=400)
        png = await agent_upload(r, PNG, "label.png")
        pdf = await agent_upload(r, PDF, "invoice.pdf")
        assert (png["kind"], pdf["kind"], pdf["mime"]) == ("image", "file", "application/pdf")
        sent = (await _reply(r, hid, {"text": "Your label and invoice",
                                      "attachments": [{"id": png["id"]}, {"id": pdf["id"]}]}))["message"]
        m = (await c.replies_until(lambda m: "label and invoice" in m["text"]))[-1]
        assert [a["name"] for a in m["attachments"]] == ["label.png", "invoice.pdf"]
        assert m["id"] == sent["id"]
        url = m["attachments"][0]["url"]
        assert png["id"] not in url                                   # the customer's own copy
        async with r.http.get(f"{r.url}{url}?token={c.token}") as resp:
            assert resp.status == 200 and await resp.read() == PNG
        async with r.http.get(f"{r.url}{url}?token={other.token}") as resp:
            assert resp.status == 403
        async with r.http.get(f"{r.url}{url}", headers=agent_headers()) as resp:
            assert resp.status == 200
        # a file alone, with no text
        only = await agent_upload(r, PNG, "photo.png")
        await _reply(r, hid, {"attachments": [{"id": only["id"]}]})
        m2 = (await c.replies_until(lambda m: bool(m.get("attachments"))
                                    and m["attachments"][0]["name"] == "photo.png"))[-1]
        assert m2["text"] == ""
    finally:
        await c.close()
        await other.close()


async def test_telegram_customer_gets_the_agents_photo_and_document(polling: Running,  # noqa: F811
                                                                    fake: FakeTelegram) -> None:  # noqa: F811
    await say(fake, 777, "talk to a person", expect="queue")
    hid = await _claimed(polling)
    png = await agent_upload(polling, PNG, "label.png")
    pdf = await agent_upload(polling, PDF, "invoice.pdf")
    await _reply(polling, hid, {"text": "Your label and invoice", "attachments": [{"id": png["id"]}, {"id": pdf["id"]}]})
    await fake.wait_for("sendDocument", predicate=lambda c: str(c.args.get("chat_id")) == "777")
    [photo] = [c for c in fake.calls_to("sendPhoto") if str(c.args.get("chat_id")) == "777"]
    [doc] = [c for c in fake.calls_to("sendDocument") if str(c.args.get("chat_id")) == "777"]
    assert any("label and invoice" in m.get("text", "") for m in fake.sent_to(777))
    assert photo.files and doc.files
