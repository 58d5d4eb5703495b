"""The demo shop end to end over the real web chat (README "Calling your systems"): "where is my
order?" and "can I change my delivery address?" answered from the demo orders API omnibot serves
itself under /demo/api, through the real call: step and aiohttp client."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import AsyncIterator

import pytest

from conftest import Running, make_config, start_app, stop_app
from e2e.chat import ChatClient

SHOP = {"Authorization": "Bearer demo-shop-token"}


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    r = await start_app(make_config(tmp_path, "nlu: {matcher: lexical}"))
    try:
        yield r
    finally:
        await stop_app(r)


async def test_where_is_my_order(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        [m] = await c.say("where is my order?")
        assert m["text"].startswith("Sure, let me check. What's your order number?")
        [m] = await c.say("it's AB123456")
        eta = (date.today() + timedelta(days=2)).isoformat()
        assert m["text"] == f"Your order AB123456 is on its way with DHL. Expected delivery: {eta}."
        [m] = await c.say("where is my package")
        [m] = await c.say("EF345678")
        assert m["text"].startswith("Your order EF345678 was delivered on ")
        [m] = await c.say("track my order")
        [m] = await c.say("ZZ000000")
        assert m["text"].startswith("I can't find an order ZZ000000.")
    finally:
        await c.close()


async def test_changing_the_delivery_address_works_only_before_shipping(running: Running) -> None:
    r = running
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        [m] = await c.say("can I change my delivery address?")
        assert m["text"].startswith("I can change the address while your order is still in our warehouse.")
        [m] = await c.say("AB123456")
        assert m["text"].startswith("Order AB123456 has already left our warehouse")

        await c.say("i would like to use a new address for my order")
        [m] = await c.say("CD234567")
        assert m["text"].startswith("What's the new delivery address?")
        [m] = await c.say("7 New Road, Leeds LS2 9XY")
        assert m["text"] == "Deliver order CD234567 to: 7 New Road, Leeds LS2 9XY?"
        assert [b["title"] for b in m["buttons"]] == ["Yes, change it", "No, keep the old one"]
        [m] = await c.say("yes")
        assert m["text"].startswith("Done: order CD234567 will be delivered to the new address.")
    finally:
        await c.close()
    async with r.http.get(r.url + "/demo/api/orders/CD234567", headers=SHOP) as resp:
        assert resp.status == 200
        assert (await resp.json())["address"] == "7 New Road, Leeds LS2 9XY"


async def test_the_demo_api_wants_its_token(running: Running) -> None:
    async with running.http.get(running.url + "/demo/api/orders/AB123456") as resp:
        assert resp.status == 401
    async with running.http.get(running.url + "/demo/api/orders/NOPE", headers=SHOP) as resp:
        assert resp.status == 404 and (await resp.json()) == {"error": "no such order"}
    async with running.http.post(running.url + "/demo/api/orders/CD234567/address", headers=SHOP,
                                 data="not json") as resp:
        assert resp.status == 400


async def test_the_shop_being_down_hands_over_politely(tmp_path: Path) -> None:
    # the endpoint points at a port nothing listens on
    r = await start_app(make_config(tmp_path, "nlu: {matcher: lexical}\nintegrations:\n  endpoints:\n"
                                              "    shop: {base_url: 'http://127.0.0.1:9', timeout: 1, retries: 0}"))
    try:
        c = ChatClient(r.http, r.ws_url)
        await c.connect()
        try:
            await c.say("where is my order?")
            got = await c.say("AB123456", expect_text="I'm passing you to our")
            assert got[0]["text"] == "I'm sorry, I can't reach our order system right now."
            assert "because I couldn't check it automatically" in got[-1]["text"]
        finally:
            await c.close()
    finally:
        await stop_app(r)
