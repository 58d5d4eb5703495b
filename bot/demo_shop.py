"""The demo shop's orders API, served by omnibot itself under ``/demo/api`` (config
``integrations.demo_api``), so that the demo flows' ``call:`` steps have a system to ask.

It stands in for a real shop's API: a few fixed orders, kept in memory (an address change lasts
until restart), a bearer token, and loopback callers only (omnibot calling itself), so it exposes
nothing when the server listens publicly.

    GET  /demo/api/orders/{number}            200 {number, status, status_text, eta, carrier, address, items}
                                              404 {error}
    POST /demo/api/orders/{number}/address    {"address": "..."} -> 200 the order, 409 {error} once shipped,
                                              404, 400 for a missing or too long address

A POST carrying an ``Idempotency-Key`` that was seen before gets the first answer again.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from bot.config import DemoApiConfig

PREFIX = "/demo/api"
MAX_ADDRESS = 200


def demo_orders(today: date | None = None) -> dict[str, dict[str, Any]]:
    """The demo orders, with delivery dates counted from ``today``."""
    d = today or date.today()

    def day(n: int) -> str:
        return (d + timedelta(days=n)).isoformat()

    return {
        "AB123456": {"number": "AB123456", "status": "shipped", "status_text": "on its way",
                     "eta": day(2), "carrier": "DHL", "address": "12 High Street, Bristol BS1 4DJ",
                     "items": [{"name": "Walking boots", "qty": 1}]},
        "CD234567": {"number": "CD234567", "status": "processing", "status_text": "being packed",
                     "eta": day(4), "carrier": None, "address": "5 Mill Lane, Leeds LS1 2AB",
                     "items": [{"name": "Rain jacket", "qty": 1}, {"name": "Wool socks", "qty": 2}]},
        "EF345678": {"number": "EF345678", "status": "delivered", "status_text": "delivered",
                     "eta": day(-3), "carrier": "UPS", "address": "Calle Mayor 3, 28013 Madrid",
                     "items": [{"name": "Backpack", "qty": 1}]},
        "GH456789": {"number": "GH456789", "status": "processing", "status_text": "waiting for stock",
                     "eta": day(9), "carrier": None, "address": "Jl. Sudirman 45, Jakarta 10220",
                     "items": [{"name": "Tent", "qty": 1}]},
    }


class DemoShop:
    """The demo orders API on the app (see the module docstring)."""

    def __init__(self, config: DemoApiConfig, *, today: date | None = None) -> None:
        self.config = config
        self.orders = demo_orders(today)
        self._answers: dict[str, tuple[int, dict[str, Any]]] = {}    # Idempotency-Key -> first answer
        self.calls: list[tuple[str, str]] = []                       # (method, path), for tests and demos

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PREFIX + "/orders/{number}", self.get_order)
        app.router.add_post(PREFIX + "/orders/{number}/address", self.change_address)

    def _check(self, request: web.Request) -> web.Response | None:
        try:
            loopback = ipaddress.ip_address(request.remote or "").is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return _error(403, "the demo API answers omnibot itself only (loopback)")
        if request.headers.get("Authorization") != "Bearer " + self.config.token.get_secret_value():
            return _error(401, "missing or wrong bearer token")
        self.calls.append((request.method, request.path))
        return None

    async def get_order(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        order = self.orders.get(request.match_info["number"].upper())
        if order is None:
            return _error(404, "no such order")
        return web.json_response(order)

    async def change_address(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        key = request.headers.get("Idempotency-Key", "")
        if key and key in self._answers:
            status, body = self._answers[key]
            return web.json_response(body, status=status)
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        address = data.get("address") if isinstance(data, dict) else None
        if not isinstance(address, str) or not address.strip() or len(address) > MAX_ADDRESS:
            return _error(400, f"address: a text of 1 to {MAX_ADDRESS} characters")
        order = self.orders.get(request.match_info["number"].upper())
        if order is None:
            status, body = 404, {"error": "no such order"}
        elif order["status"] != "processing":
            status, body = 409, {"error": "the order has already left the warehouse", "status": order["status"]}
        else:
            order["address"] = " ".join(address.split())
            status, body = 200, order
        if key:
            self._answers[key] = (status, dict(body))
        return web.json_response(body, status=status)


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)
