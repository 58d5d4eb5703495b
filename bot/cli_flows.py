"""``omnibot reload`` and ``omnibot flows history|rollback|export`` (README "Changing flows on a
running bot").

``reload`` and ``rollback`` ask the running bot over HTTP (``POST /admin/api/reload``,
``/admin/api/flows/rollback``; docs/protocols.md) with an admin's token; ``history`` and
``export`` read the database and work whether the bot runs or not.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from bot.cli import CONFIG_HELP, _load, main
from bot.config import Config


def _http_options(f: Any) -> Any:
    for opt in reversed([
        click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP),
        click.option("--url", metavar="URL",
                     help="the running bot (default: http://server.host:server.port from the config)"),
        click.option("--token", envvar="OMNIBOT_ADMIN_TOKEN", metavar="TOKEN",
                     help="an admin's personal token (omnibot agent token EMAIL), also from $OMNIBOT_ADMIN_TOKEN; "
                          "default: agent_desk.token, which works while no agent account exists"),
    ]):
        f = opt(f)
    return f


def _read_store(config_path: str | None, work: Any) -> Any:
    """Run ``work(store)`` on the configured database, read-only (a SQLite file beside a running
    omnibot); errors exit 1 with the reason."""
    import asyncio
    import sqlite3

    from bot.errors import OmnibotError
    from bot.report import open_store_for_report
    from bot.storage.admin import redact

    url = _load(config_path).storage_url()

    async def go() -> Any:
        store = await open_store_for_report(url)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (FileNotFoundError, OmnibotError, sqlite3.Error, OSError) as exc:
        click.echo(f"error: {redact(str(exc), url)}", err=True)
        sys.exit(1)


def _base_url(config: Config, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{host}:{config.server.port}"


def _post(config_path: str | None, url: str | None, token: str | None, path: str,
          body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST to the running bot; exits 2 when it cannot be reached or refuses the token."""
    config = _load(config_path)
    base = _base_url(config, url)
    token = token or config.agent_desk.token.get_secret_value()
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:    # training may take a while
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = {}
        if exc.code == 401:
            click.echo("error: not authorised: give an admin's personal token with --token or "
                       "$OMNIBOT_ADMIN_TOKEN (omnibot agent token EMAIL)", err=True)
            sys.exit(2)
        if exc.code == 404 and "error" not in answer:
            click.echo(f"error: {base} has no {path}: is it an omnibot of this version?", err=True)
            sys.exit(2)
        return exc.code, answer
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        click.echo(f"error: cannot reach the running bot at {base}: {reason} (is `omnibot run` running? "
                   "--url gives its address)", err=True)
        sys.exit(2)


def _report(status: int, r: dict[str, Any]) -> None:
    if r.get("ok"):
        if r.get("changed"):
            was = f" (was {r['previous']})" if r.get("previous") else ""
            click.echo(f"version {r['version']} serves{was}; loaded in {r.get('seconds', 0)} s")
        else:
            click.echo(f"unchanged: version {r['version']} serves (the files are that version's)")
        return
    for e in r.get("errors") or []:
        click.echo(e, err=True)
    click.echo(f"error: {r.get('error') or f'refused ({status})'}", err=True)
    sys.exit(1)


@main.command("reload", short_help="load changed flow files into the running bot (no restart)")
@_http_options
def reload_cmd(config_path: str | None, url: str | None, token: str | None) -> None:
    """Validate the flow files, train in the background and switch the running bot to them.

    Until the new version is ready the current one answers; conversations in the
    middle of a flow finish on the version they started on. If the files have
    errors, they are printed as file:line: reason, the running version keeps
    serving, and the exit status is 1. With several instances, all of them move.
    (Sending SIGHUP to `omnibot run`, or the button on /admin/flows, does the same.)

    \b
    Exit status: 0 the new (or unchanged) version serves; 1 the files were
    refused; 2 the bot could not be reached or the token was refused.

    \b
    Examples:
      omnibot reload
      omnibot reload --url http://10.0.0.5:8080 --token omb_...
    """
    status, r = _post(config_path, url, token, "/admin/api/reload", {})
    _report(status, r)


@main.group()
def flows() -> None:
    """The flow versions the bot served: history, rollback, export.

    \b
    Every reload (and every start with changed files) keeps a version with a
    number, its files' hash, who loaded it and the texts of its files.
    """


@flows.command("history", short_help="the versions served, newest first")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
def flows_history(config_path: str | None, limit: int, as_json: bool) -> None:
    """Versions newest first: number, hash, when (UTC), by whom, note. The first line is
    the version the bot serves."""
    async def work(store: Any) -> Any:
        return await store.flow_versions(limit)

    versions = _read_store(config_path, work)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    if not versions:
        click.echo("no flow versions yet (omnibot run keeps the first)")
        return
    rows = [("VERSION", "HASH", "LOADED (UTC)", "BY", "NOTE")] + [
        (f"{v.number}{' *' if i == 0 else ''}", v.hash[:12], v.loaded_at.strftime("%Y-%m-%d %H:%M:%S"),
         v.loaded_by, v.note) for i, v in enumerate(versions)]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    click.echo("(* serving)")


@flows.command("rollback", short_help="serve an earlier version again (running bot)")
@_http_options
@click.argument("number", type=click.IntRange(min=1))
def flows_rollback(config_path: str | None, url: str | None, token: str | None, number: int) -> None:
    """Serve version NUMBER's stored files again, as a new version ("rollback to NUMBER").

    The running bot serves exactly the texts kept with that version, whatever the
    files on disk say now. The files are not changed: the next reload or restart
    loads them again (omnibot flows export NUMBER DIR writes that version's files).
    Exits 1 if there is no such version or it no longer validates.
    """
    status, r = _post(config_path, url, token, "/admin/api/flows/rollback", {"version": number})
    _report(status, r)


@flows.command("export", short_help="write a version's files into a folder")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("number", type=click.IntRange(min=1))
@click.argument("folder", type=click.Path(file_okay=False))
def flows_export(config_path: str | None, number: int, folder: str) -> None:
    """Write version NUMBER's flow files, exactly as kept, into FOLDER (created if needed;
    files of the same name are replaced)."""
    async def work(store: Any) -> Any:
        return await store.flow_version(number)

    v = _read_store(config_path, work)
    if v is None:
        click.echo(f"error: there is no version {number} (omnibot flows history lists them)", err=True)
        sys.exit(1)
    root = Path(folder).resolve()
    for name, text in v.files.items():
        p = (root / name).resolve()
        if not p.is_relative_to(root):
            click.echo(f"error: a stored file name leaves the folder: {name}", err=True)
            sys.exit(1)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    click.echo(f"version {number}: {len(v.files)} file(s) written to {root}")
