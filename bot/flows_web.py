"""The flow versions over HTTP, for admins (README "Changing flows on a running bot", docs/protocols.md).

* ``GET /admin/flows``: a page with the version serving, a Reload button, the last reload's
  outcome (with its errors, ``file:line: reason``) and the history with a Roll back button each.
* ``GET /admin/api/flows``: the same as JSON.
* ``POST /admin/api/reload``: load the flow files as a new version (``omnibot reload`` calls it).
* ``POST /admin/api/flows/rollback`` ``{"version": N}``: serve version N's stored texts again.

Who may: an admin account (its session or personal token), or, while no account exists, the shared
``agent_desk.token`` as a Bearer token (as for ``/admin/metrics``).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
from typing import Any

from aiohttp import web

from bot.config import Config
from bot.errors import StorageUnavailable
from bot.flow_versions import FlowVersions, ReloadResult

log = logging.getLogger(__name__)

HISTORY = 50


class FlowsWeb:
    def __init__(self, versions: FlowVersions, *, desk: Any, config: Config) -> None:
        self.versions = versions
        self.desk = desk           # handoff.desk_web.AgentDeskWeb, or None when the desk is off
        self.config = config

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/admin/flows", self.page)
        r.add_get("/admin/api/flows", self.api)
        r.add_post("/admin/api/reload", self.reload)
        r.add_post("/admin/api/flows/rollback", self.rollback)
        r.add_get("/admin/api/flows/graph", self.graph)

    # -- auth ---------------------------------------------------------------------------------------

    async def who(self, request: web.Request) -> str | None:
        """The admin acting (their name; ``shared token`` while no account exists), or None."""
        auth = request.headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth.startswith("Bearer ") else ""
        token = self.config.agent_desk.token.get_secret_value()
        shared_ok = bool(bearer and token) and hmac.compare_digest(bearer.encode(), token.encode())
        if self.desk is None:
            return "shared token" if shared_ok else None
        if not await self.desk._have_accounts() and shared_ok and not request.headers.get("X-Omnibot-Agent"):
            return "shared token"
        from handoff.roles import can

        account = await self.desk.account_of(request)
        return account.name if account is not None and can(account, "configure") else None

    async def _require(self, request: web.Request) -> str:
        who = await self.who(request)
        if who is None:
            raise web.HTTPUnauthorized(text=json.dumps({"error": "an admin account (or, while no account exists, "
                                                                 "the shared agent token) is needed"}),
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": 'Bearer realm="omnibot"'})
        return who

    # -- handlers -----------------------------------------------------------------------------------

    async def _state(self) -> dict[str, Any]:
        out = self.versions.status()
        try:
            out["history"] = [v.to_dict() for v in await self.versions.store.flow_versions(HISTORY)]
        except StorageUnavailable:
            out["history"] = []
        return out

    async def api(self, request: web.Request) -> web.Response:
        await self._require(request)
        return web.json_response(await self._state())

    async def reload(self, request: web.Request) -> web.Response:
        who = await self._require(request)
        return _result(await self.versions.reload(by=who))

    async def rollback(self, request: web.Request) -> web.Response:
        who = await self._require(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": 'the body must be JSON: {"version": N}'}, status=400)
        number = body.get("version") if isinstance(body, dict) else None
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            return web.json_response({"error": '"version" must be a version number (1, 2, ...)'}, status=400)
        return _result(await self.versions.rollback(number, by=who), missing_is_404=True)

    async def graph(self, request: web.Request) -> web.Response:
        """``?flow=NAME``: the serving version's flow drawn as SVG (``&format=mermaid``: its Mermaid
        source, as ``omnibot graph`` prints it). 400 without a flow, 404 for an unknown one."""
        await self._require(request)
        from flows.graph import mermaid, svg
        loaded = self.versions.current
        name = request.query.get("flow", "")
        if loaded is None:
            return web.json_response({"error": "no flow version serves yet"}, status=503)
        fs = loaded.engine.flows
        if not name:
            return web.json_response({"error": "say which flow: ?flow=NAME", "flows": sorted(fs.flows)}, status=400)
        if name not in fs.flows:
            return web.json_response({"error": f"no flow {name!r} in version {loaded.number}",
                                      "flows": sorted(fs.flows)}, status=404)
        if request.query.get("format") == "mermaid":
            return web.Response(text=mermaid(fs, name), content_type="text/plain")
        return web.Response(text=svg(fs, name), content_type="image/svg+xml",
                            headers={"Cache-Control": "no-cache"})

    async def page(self, request: web.Request) -> web.Response:
        if await self.who(request) is None:
            raise web.HTTPFound("/agent")        # log in there, then come back
        loaded = self.versions.current
        names = sorted(loaded.engine.flows.flows) if loaded is not None else []
        return web.Response(text=_page(await self._state(), names), content_type="text/html")


def _result(res: ReloadResult, *, missing_is_404: bool = False) -> web.Response:
    """200 when the version serves (new or unchanged); 422 when the files were refused (the old version
    serves; ``errors`` say why); 404 for a rollback to a version that does not exist; 503 when storage
    could not keep the version."""
    body = res.to_dict()
    if res.ok:
        return web.json_response(body)
    first = res.errors[0] if res.errors else ""
    if first.startswith("storage is unavailable"):
        return web.json_response(body | {"error": first}, status=503, headers={"Retry-After": "5"})
    if missing_is_404 and first.startswith("there is no version"):
        return web.json_response(body | {"error": first}, status=404)
    return web.json_response(body | {"error": f"the flows were refused ({len(res.errors)} problem(s)); "
                                              f"version {res.version} keeps serving"}, status=422)


def _page(s: dict[str, Any], flows: list[str] | None = None) -> str:
    e = html.escape
    last = s.get("last")
    if last is None:
        outcome = "<p>No reload since this instance started.</p>"
    elif last["ok"]:
        outcome = (f"<p class=ok>Last reload ({e(last['at'])}, by {e(last['by'])}): version {last['version']} serves"
                   + (" (the files had not changed)" if not last["changed"] else f" (was {last['previous']})")
                   + f", {last['seconds']} s.</p>")
    else:
        outcome = (f"<div class=bad><p>Last reload ({e(last['at'])}, by {e(last['by'])}) was refused; version "
                   f"{last['version']} keeps serving. {len(last['errors'])} problem(s):</p><pre id=errors>"
                   + e("\n".join(last["errors"])) + "</pre></div>")
    rows = "".join(
        f"<tr><td>{v['number']}</td><td><code>{e(v['hash'][:12])}</code></td><td>{e(v['loaded_at'][:19])}</td>"
        f"<td>{e(v['loaded_by'])}</td><td>{e(v['note'])}</td><td>"
        + ("serving" if v["number"] == s["version"] else
           f"<button class=rollback data-version={v['number']}>Roll back to {v['number']}</button>")
        + "</td></tr>" for v in s.get("history", []))
    differ = ("<p class=bad>This instance's files differ from the version serving (it came from another "
              "instance or a rollback).</p>" if s.get("files_differ") else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>omnibot flows</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{text-align:left;padding:.2em 1em .2em 0}}.ok{{color:#15692c}}.bad{{color:#a3231b}}
pre{{background:#f8eeee;padding:1em;white-space:pre-wrap}}</style></head><body>
<h1>Flows</h1>
<p>Version <b id=version>{s['version']}</b> serves (<code>{e(str(s['hash'])[:12])}</code>), from {e(s['path'])}.</p>
{differ}
<p><button id=reload>Reload the flow files</button> <span id=status></span></p>
{outcome}
<h2>Flow diagrams</h2>
<p><select id=flow>{"".join(f"<option>{e(n)}</option>" for n in (flows or []))}</select>
<a id=mermaid href="#">Mermaid source</a></p>
<p><img id=graph alt="the flow's steps and where each can go" style="max-width:100%"></p>
<h2>History</h2>
<table><tr><th>Version</th><th>Hash</th><th>Loaded (UTC)</th><th>By</th><th>Note</th><th></th></tr>{rows}</table>
<script>
async function post(url, body) {{
  const status = document.getElementById("status");
  status.textContent = "working... (the current version serves meanwhile)";
  const r = await fetch(url, {{method: "POST", credentials: "same-origin",
                               headers: {{"Content-Type": "application/json"}}, body: JSON.stringify(body || {{}})}});
  const j = await r.json().catch(() => ({{}}));
  status.textContent = r.ok ? "done" : (j.error || ("failed: " + r.status));
  location.reload();
}}
document.getElementById("reload").onclick = () => post("/admin/api/reload");
const pick = document.getElementById("flow");
function draw() {{
  if (!pick.value) return;
  const q = "/admin/api/flows/graph?flow=" + encodeURIComponent(pick.value);
  document.getElementById("graph").src = q;
  document.getElementById("mermaid").href = q + "&format=mermaid";
}}
pick.onchange = draw; draw();
for (const b of document.querySelectorAll("button.rollback"))
  b.onclick = () => post("/admin/api/flows/rollback", {{version: Number(b.dataset.version)}});
</script></body></html>"""
