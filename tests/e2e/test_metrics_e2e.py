"""/metrics (Prometheus) and /admin/metrics over a running app, after a real complaint."""

from __future__ import annotations

from conftest import AGENT_TOKEN, Running
from e2e.chat import ChatClient
from e2e.test_tickets_e2e import _file_complaint

BEARER = {"Authorization": f"Bearer {AGENT_TOKEN}"}


async def test_prometheus_and_admin_metrics(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        await _file_complaint(c, "shipping", "AB123456", "The parcel never came.")
    finally:
        await c.close()

    async with running.http.get(running.url + "/metrics") as resp:
        assert resp.status == 401                      # figures about the business are not public
    async with running.http.get(running.url + "/metrics", headers=BEARER) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        body = await resp.text()
    assert 'omnibot_messages_in_total{channel="webchat"}' in body
    assert 'omnibot_tickets{category="shipping"} 1.0' in body
    assert "omnibot_turn_seconds_bucket" in body and "omnibot_conversations 1.0" in body

    async with running.http.get(running.url + "/admin/api/metrics?by=channel", headers=BEARER) as resp:
        figures = await resp.json()
    assert figures["tickets"] == 1 and figures["groups"]["webchat"]["tickets"] == 1
    async with running.http.get(running.url + "/admin/api/metrics?by=weekday", headers=BEARER) as resp:
        assert resp.status == 400

    async with running.http.get(running.url + "/admin/metrics", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/agent"
    async with running.http.get(running.url + "/admin/metrics", headers=BEARER) as resp:
        page = await resp.text()
    assert resp.status == 200 and "Complaints by category" in page and "shipping" in page
