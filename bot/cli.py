"""The ``omnibot`` command line."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from bot import __version__
from bot.config import Config, load_config
from bot.errors import ConfigError, FlowValidationError, OmnibotError, StoreError
from bot.logs import configure_logging, setup_logging

log = logging.getLogger("omnibot")

CONFIG_HELP = "config file (default: ./config.yaml; all defaults if it does not exist)"


def _load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(f"error: invalid configuration: {exc}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omnibot")
def main() -> None:
    """omnibot: a self-hosted omnichannel customer-service bot with human handoff.

    \b
    Quick start:
      omnibot run                 start the bot (web chat at http://127.0.0.1:8080/,
                                  agent desk at /agent)
      omnibot validate            check the flows before you deploy them
      omnibot reload              load changed flows into the running bot (no restart)
      omnibot flows history       the flow versions served; flows rollback N
      omnibot graph FLOW          a flow as a Mermaid diagram; omnibot schema: the flow JSON Schema
      omnibot shell               chat with the flows in this terminal
      omnibot test                run the conversation tests next to the flows (CI)
      omnibot nlu eval ...        measure intent matching on your own data
      omnibot report              service figures: response times, CSAT, SLA breaches...
      omnibot db status           the database: schema version, rows per table
      omnibot db copy --from URL --to URL
                                  move to another database (SQLite -> PostgreSQL)
      omnibot agent add ...       agent accounts for the desks (list, set, disable, enable, token)
      omnibot customer export ... a customer's data in one file; customer erase ... erases it
      omnibot audit               who did what (exports, erasures, retention, desk actions)
    """


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--host", help="listen address (overrides server.host)")
@click.option("--port", type=int, help="listen port (overrides server.port; 0 = any free port)")
def run(config_path: str | None, host: str | None, port: int | None) -> None:
    """Start the bot: web chat, agent desk and every channel enabled in config.

    SIGHUP reloads the flow files without a restart (as `omnibot reload` does).
    Its threads share one malloc arena (less memory, the same speed; README "Start-up"):
    set MALLOC_ARENA_MAX to choose another limit.
    """
    from bot.heap import one_arena
    one_arena()   # before any thread starts: one malloc arena keeps the idle RSS low and steady (bot/heap.py)
    config = _load(config_path)
    configure_logging(config)
    server = config.server.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    # The SQLite thread hands every result back through the GIL; with the default 5 ms
    # switch interval a busy event loop makes each of those hand-offs wait up to 5 ms.
    sys.setswitchinterval(0.0005)
    built: list[Any] = []

    async def main() -> None:
        # one event loop for building and serving: PostgreSQL's connections belong to the loop
        built.append(await _build(config))
        await _serve(built[0], config, server.host, server.port)

    try:
        asyncio.run(main())
    except FlowValidationError as exc:
        click.echo(f"error: the flows in {config.resolve(config.flows.path)} have "
                   f"{len(exc.errors)} problem(s):", err=True)
        for e in exc.errors:
            click.echo(f"  {e}", err=True)
        sys.exit(1)
    except OmnibotError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        if not built:
            raise
        click.echo(f"error: cannot listen on {server.host}:{server.port}: {exc.strerror or exc}", err=True)
        sys.exit(1)


async def _serve(app, config: Config, host: str, port: int) -> None:  # type: ignore[no-untyped-def]
    import signal

    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        base = f"http://{host}:{bound}"
        from bot.app import listening
        listening(app, f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{bound}")
        from bot.heap import settle
        settle()   # start-up objects leave the collector's work (bot/heap.py)
        token = config.agent_desk.token.get_secret_value()
        lines = [f"omnibot {__version__} is running",
                 f"  web chat:    {base}/",
                 f"  agent desk:  {base}/agent"]
        if token == "demo-agent-token":
            lines.append("               (demo agent token: demo-agent-token; set OMNIBOT_AGENT_TOKEN "
                         "before exposing this server)")
        lines.append("  stop with Ctrl+C")
        click.echo("\n".join(lines), err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[Any]] = set()

        def hangup() -> None:     # SIGHUP: reload the flows (as `omnibot reload` does)
            from bot.app import SERVICES
            versions = app[SERVICES].flows
            if versions is not None:
                task = asyncio.create_task(versions.reload(by="SIGHUP"), name="flows reload (SIGHUP)")
                reloads.add(task)
                task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hangup)
        await stop.wait()
        click.echo("stopping...", err=True)
    finally:
        await runner.cleanup()


async def _build(config: Config):  # type: ignore[no-untyped-def]
    from bot.app import build_app
    return await build_app(config)


@main.command()
@click.argument("flows_dir", required=False, type=click.Path())
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
def validate(flows_dir: str | None, config_path: str | None) -> None:
    """Check flow files (and canned/ replies) and report every error as file:line: reason.

    Also reports a team or department name in the config given by language that
    leaves out one of the flows' settings.languages.supported.
    FLOWS_DIR defaults to flows.path from the config. Exits 1 if anything is wrong.
    Warnings (exit 0): slots only ever cleared, steps nothing reaches, intents with
    fewer than 5 examples, and pairs of intents whose examples the matcher confuses.
    """
    from flows import load_flows

    config = _load(config_path)
    path = Path(flows_dir) if flows_dir else config.resolve(config.flows.path)
    from handoff.canned import load_canned

    try:
        errors: list = []
        try:
            fs = load_flows(path, teams=config.handoff.teams.keys(), endpoints=config.integrations.endpoints.keys())
        except FlowValidationError as exc:
            errors += exc.errors
        flows_ok = errors == []
        try:
            canned = load_canned(path, fs.settings.languages if errors == [] else None)   # canned/
        except FlowValidationError as exc:
            errors += exc.errors
        if flows_ok:      # team and department names given by language, in config (bot/names.py)
            from bot.names import name_errors

            errors += name_errors(config, config_path, fs.settings.languages)
        if errors:
            raise FlowValidationError(errors)
    except FlowValidationError as exc:
        for e in exc.errors:
            click.echo(str(e), err=True)
        click.echo(f"{len(exc.errors)} error(s) in {path}", err=True)
        sys.exit(1)
    from flows.lint import intent_lines, lint

    warnings = lint(fs, intent_files=intent_lines(fs.files))
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    steps = sum(len(f.steps) for f in fs.flows.values())
    examples = sum(len(i.examples) for i in fs.intents.values())
    click.echo(f"OK: {len(fs.flows)} flows ({steps} steps), {len(fs.intents)} intents "
               f"({examples} examples) in {len(fs.files)} file(s) under {path}"
               + (f"; {len(canned)} canned replies" if len(canned) else "")
               + (f"; {len(warnings)} warning(s)" if warnings else ""))


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--flows", "flows_dir", type=click.Path(), help="flows folder (overrides flows.path)")
@click.option("--log", "log_level", type=click.Choice(["WARNING", "INFO", "DEBUG"]), default=None,
              help="show omnibot's log with tracebacks at this level (default: warnings, one line each)")
def shell(config_path: str | None, flows_dir: str | None, log_level: str | None) -> None:
    """Chat with the flows in this terminal (in-memory storage; nothing is kept).

    \b
    A number picks one of the bot's buttons. A handoff shows the card an
    agent would see (reason, captured fields, ticket); the shell then plays
    the agent, so the conversation goes on:
      /agent claim, /agent reply TEXT, /agent resolve OUTCOME, /agent back
    Also: /state (flow, step, slots, language), /reset (a new customer),
    /card, /help, /quit.
    """
    from bot.console import quiet_logging, run_shell

    config = _load(config_path)
    configure_logging(config, level=log_level or "WARNING")
    if not log_level:
        quiet_logging()
    if flows_dir:
        config = config.model_copy(update={"flows": config.flows.model_copy(update={"path": str(Path(flows_dir).resolve())})})
    try:
        asyncio.run(run_shell(config))
    except FlowValidationError as exc:
        for e in exc.errors:
            click.echo(str(e), err=True)
        sys.exit(1)
    except (KeyboardInterrupt, EOFError):
        click.echo("")


@main.command("test")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--flows", "flows_dir", type=click.Path(file_okay=False),
              help="the flows the tests run against (default: the folder holding PATH's tests/ folder, "
                   "else flows.path)")
@click.option("--matcher", type=click.Choice(["learned", "lexical"]),
              help="intent matcher (overrides nlu.matcher; lexical needs no model and starts at once)")
@click.option("-k", "keyword", metavar="TEXT", help="only the tests whose name contains TEXT")
@click.option("-v", "--verbose", is_flag=True, help="one line per test instead of dots")
@click.option("-x", "--exitfirst", is_flag=True, help="stop at the first failing test")
@click.option("--junit", "junit", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="also write the results as JUnit XML to FILE (for CI systems)")
@click.option("--log", "log_level", type=click.Choice(["WARNING", "INFO", "DEBUG"]), default=None,
              help="show omnibot's log at this level (default: errors only)")
def test_cmd(path: str | None, config_path: str | None, flows_dir: str | None, matcher: str | None,
             keyword: str | None, verbose: bool, exitfirst: bool, junit: str | None, log_level: str | None) -> None:
    """Run the conversation tests in PATH (default: the tests/ folder of flows.path).

    \b
    A test is a conversation written in YAML next to the flows
    (flows/<yours>/tests/*.yaml): what the customer says or presses, and what
    must follow (the replies, slots, handoff, ticket, SLA alerts); `wait: 25h`
    moves a fake clock. Each test runs on the real engine and runtime, in this
    process, on an empty in-memory database; nothing is sent anywhere. The
    systems that call: steps ask are answered by the test's `endpoints:`
    (a small server on 127.0.0.1, or `shop: demo`). See README "Testing
    your flows".

    \b
    Prints a dot per passing test, F per failing one, then each difference as
    file:line of the test step, expected and got. Exit status: 0 all passed,
    1 a test failed, 2 a test file or the flows are invalid, or no tests.

    \b
    Examples:
      omnibot test                              the tests of flows.path
      omnibot test myflows/tests/complaint.yaml -k refund
      omnibot test --matcher lexical --junit results.xml
    """
    from bot import convtest as ct
    from flows import load_flows

    config = _load(config_path)
    configure_logging(config, level=log_level or "CRITICAL")
    target = Path(path) if path else config.resolve(config.flows.path) / "tests"
    if not target.exists():
        click.echo(f"error: no tests: {target} does not exist (write tests in <flows>/tests/*.yaml; "
                   "README \"Testing your flows\")", err=True)
        sys.exit(2)
    flows_path = (Path(flows_dir) if flows_dir else ct.flows_folder_of(target) if path else None) \
        or config.resolve(config.flows.path)
    config = config.model_copy(update={"flows": config.flows.model_copy(update={"path": str(flows_path.resolve())})})
    files = ct.find_test_files(target)
    cases: list = []
    errors: list = []
    for f in files:
        got, errs = ct.load_test_file(f)
        cases += got
        errors += errs
    try:
        flowset = load_flows(flows_path, teams=config.handoff.teams.keys())
    except FlowValidationError as exc:
        click.echo(f"error: the flows in {flows_path} have {len(exc.errors)} problem(s):", err=True)
        for e in exc.errors:
            click.echo(f"  {e}", err=True)
        sys.exit(2)
    errors += ct.check_against_flows(cases, flowset, endpoints=config.integrations.endpoints.keys())
    if errors:
        for e in errors:
            click.echo(str(e), err=True)
        click.echo(f"{len(errors)} error(s) in the test files; nothing was run", err=True)
        sys.exit(2)
    if keyword:
        cases = [c for c in cases if keyword.lower() in c.name.lower()]
    if not cases:
        click.echo(f"error: no tests found in {target}" + (f" matching -k {keyword!r}" if keyword else ""), err=True)
        sys.exit(2)
    click.echo(f"omnibot test: {len(cases)} test(s) in {len(files)} file(s), flows {flows_path} "
               f"({(matcher or config.nlu.matcher)} matcher)")
    run_config = ct.test_config(config, matcher=matcher)
    try:
        report = asyncio.run(ct.run_files(files, cases, run_config, verbose=verbose, exitfirst=exitfirst,
                                          echo=lambda text, nl: click.echo(text, nl=nl)))
    except OmnibotError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if report.failed:
        click.echo("")
        click.echo("=" * 20 + " FAILURES " + "=" * 20)
        for r in report.failed:
            for line in ct.format_failure(r):
                click.echo(line)
            click.echo("")
    for r in report.failed:
        first = r.failures[0]
        click.echo(f"FAILED {r.case.file}:{first.line} {r.case.name} - {first.what}")
    click.echo(("=" * 10) + f" {ct.summary_line(report)} " + ("=" * 10))
    if junit:
        Path(junit).write_bytes(ct.junit_xml(report))
    sys.exit(1 if report.failed else 0)


def _date(value: str | None, name: str) -> datetime | None:

    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-11-01 or 2026-11-01T08:00",
                                 param_hint=name) from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--since", metavar="DATE", help="from this date (UTC; 2026-11-01 or 2026-11-01T08:00)")
@click.option("--until", metavar="DATE", help="up to (not including) this date")
@click.option("--by", type=click.Choice(["category", "team", "channel", "agent"]),
              help="also break the complaint figures down by category, team or channel; "
                   "or show each agent's figures (handled, first response, time to resolution, CSAT)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
def report(config_path: str | None, since: str | None, until: str | None, by: str | None,
           as_json: bool) -> None:
    """Service figures from the database.

    First response time, agent pickup time, bot containment (not handed
    over, not back within report.containment_window_days, not abandoned),
    handoffs by cause, and for complaints: time to resolution, first contact
    resolution, CSAT, SLA breaches (complaints.sla.resolve, in
    complaints.business_hours when set) and repeat complaints per category.
    With --by agent: each agent's handled handoffs, first response (from
    their claim), time to resolution and CSAT.

    Reads storage.url: a SQLite file read-only (safe beside a running
    omnibot), or PostgreSQL.

    \b
    Example:
      omnibot report --since 2026-11-01 --until 2026-12-01 --by category
      omnibot report --since 2026-11-01 --by agent
    """
    import json as _json

    from bot import report as rep
    from bot.storage.admin import mask_url, redact

    config = _load(config_path)
    url = config.storage_url()
    period = {"since": _date(since, "--since"), "until": _date(until, "--until")}

    async def figures() -> dict[str, Any]:
        store = await rep.open_store_for_report(url)
        try:
            return await rep.report(store, by=by, complaints=config.complaints, containment=config.report,
                                    **period)
        finally:
            await store.close()

    try:
        r = asyncio.run(figures())
    except (FileNotFoundError, OmnibotError) as exc:   # no such database, bad URL, other schema, unreachable
        click.echo(f"error: {redact(str(exc), url)}", err=True)
        sys.exit(2)
    except (sqlite3.Error, OSError) as exc:
        click.echo(f"error: {mask_url(url)}: cannot read the database: {redact(str(exc), url)}", err=True)
        sys.exit(1)
    click.echo(_json.dumps(r, indent=2) if as_json else rep.render(r))


@main.group()
def db() -> None:
    """The database: schema migrations and what it holds.

    \b
    The database is storage.url from the config (or --url). Printed URLs
    never show a password (postgresql://user:***@host/db).
    """


def _db_url(config_path: str | None, url: str | None) -> tuple[str, dict[str, object]]:
    """The storage URL to work on and the options to open it with (--url wins over the config)."""
    if url is not None and config_path is None:
        return url, {}
    config = _load(config_path)
    options: dict[str, object] = {"synchronous": config.storage.synchronous}
    return (url if url is not None else config.storage_url()), options


def _db_fail(exc: object, url: str, *, code: int = 1) -> NoReturn:
    from bot.storage.admin import redact

    click.echo(f"error: {redact(str(exc), url)}", err=True)
    sys.exit(code)


def _db_checks(url: str) -> None:
    from bot.storage.admin import backend_for, sqlite_path

    try:
        backend = backend_for(url)
    except ConfigError as exc:
        _db_fail(exc, url, code=2)
    if backend.name == "sqlite" and sqlite_path(url) == ":memory:":
        click.echo(f"error: {url} is an in-memory database: there is nothing to keep", err=True)
        sys.exit(2)


def _newer(url: str, current: int, latest: int) -> str:
    from bot.storage.admin import mask_url

    return (f"{mask_url(url)}: schema version {current} is newer than this omnibot "
            f"(latest {latest}); upgrade omnibot")


@db.command("migrate", short_help="apply the pending schema migrations")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--url", metavar="URL", help="storage URL (overrides storage.url)")
def db_migrate(config_path: str | None, url: str | None) -> None:
    """Apply the pending schema migrations (omnibot run applies them too).

    Exits 1 if the database is newer than this omnibot or cannot be opened.
    """
    from bot.storage import open_store
    from bot.storage.admin import mask_url, schema_info

    target, options = _db_url(config_path, url)
    _db_checks(target)

    async def migrate() -> tuple[int, int, int]:
        before, latest = await schema_info(target)
        if before > latest:
            raise StoreError(_newer(target, before, latest))
        store = await open_store(target, **options)
        try:
            after = await store.schema_version()  # type: ignore[attr-defined]
        finally:
            await store.close()
        return before, after, latest

    try:
        before, after, latest = asyncio.run(migrate())
    except ConfigError as exc:
        _db_fail(exc, target, code=2)
    except OmnibotError as exc:
        _db_fail(exc, target)
    except (sqlite3.Error, OSError) as exc:
        _db_fail(f"{mask_url(target)}: cannot open the database: {exc}", target)
    shown = mask_url(target)
    if after == before:
        click.echo(f"{shown}: already at schema version {after}")
    else:
        n = after - before
        click.echo(f"{shown}: schema version {before} -> {after} "
                   f"({n} migration{'' if n == 1 else 's'} applied)")


@db.command("status", short_help="schema version and rows per table (read-only)")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--url", metavar="URL", help="storage URL (overrides storage.url)")
def db_status(config_path: str | None, url: str | None) -> None:
    """Backend, URL, schema version and rows per table (read-only; safe beside a running bot)."""
    from bot.storage.admin import backend_for, mask_url, schema_info, table_counts

    target, _ = _db_url(config_path, url)
    _db_checks(target)

    async def status() -> tuple[int, int, dict[str, int]]:
        current, latest = await schema_info(target)
        return current, latest, await table_counts(target)

    try:
        current, latest, counts = asyncio.run(status())
    except OmnibotError as exc:
        _db_fail(exc, target)
    lines = [f"backend: {backend_for(target).name}",
             f"url: {mask_url(target)}",
             f"schema version: {current}" + ("" if counts else " (no database yet)"),
             f"latest version: {latest}"]
    if current > latest:
        lines.append("pending migrations: none (the database is newer than this omnibot; upgrade omnibot)")
    elif current < latest:
        lines.append(f"pending migrations: {latest - current} (omnibot db migrate applies them)")
    else:
        lines.append("pending migrations: 0")
    lines.append("rows:" if counts else "rows: (no tables)")
    width = max((len(t) for t in counts), default=0)
    lines += [f"  {t + ':':<{width + 1}} {n}" for t, n in counts.items()]
    click.echo("\n".join(lines))


@db.command("copy", short_help="copy every row into another, empty database (e.g. SQLite -> PostgreSQL)")
@click.option("--from", "source", required=True, metavar="URL", help="the database to copy (only read)")
@click.option("--to", "target", required=True, metavar="URL", help="the empty database to fill")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def db_copy(source: str, target: str, yes: bool) -> None:
    """Copy everything from one database into another, empty one, then compare rows per table.

    \b
    Customers, identities, conversations, messages, handoffs, desk threads,
    tickets, link codes, effects, seen event ids, meta (secrets, ticket
    sequences) and media; not the live instances, leases and rate counters.
    Any direction works: sqlite:///path <-> postgresql://...

    \b
    The source is only read, in one snapshot: a SQLite source is opened
    read-only and may be copied while a bot runs on it (what that bot writes
    after the copy starts is not copied; stop it first for a final move). It
    must be at this omnibot's schema version (omnibot db migrate it first).
    The target is migrated to the latest schema, must then hold no rows, and
    is written in one transaction (a failed copy leaves it empty).

    Exits 1 if the target is not empty, a database fails, or the counts differ.
    """
    from bot.storage.admin import mask_url
    from bot.storage.copy import copy_database

    for url in (source, target):
        _db_checks(url)
    if not yes:
        click.confirm(f"copy {mask_url(source)} into {mask_url(target)}?", abort=True)
    click.echo(f"copying {mask_url(source)} -> {mask_url(target)}")

    def progress(table: str, done: int, total: int) -> None:
        if done == total or done:
            click.echo(f"  {table}: {done}/{total}")

    try:
        counts = asyncio.run(copy_database(source, target, progress=progress))
    except ConfigError as exc:
        _db_fail(redact_both(str(exc), source, target), target, code=2)
    except OmnibotError as exc:
        _db_fail(redact_both(str(exc), source, target), target)
    except (sqlite3.Error, OSError) as exc:
        _db_fail(redact_both(f"cannot copy: {exc}", source, target), target)
    click.echo("rows per table (source -> target):")
    for c in counts:
        click.echo(f"  {c}")
    bad = [c.table for c in counts if not c.ok]
    if bad:
        click.echo(f"error: the counts differ for {', '.join(bad)}", err=True)
        sys.exit(1)
    click.echo(f"done: set storage.url to {mask_url(target)} and start omnibot")


def redact_both(text: str, a: str, b: str) -> str:
    from bot.storage.admin import redact

    return redact(redact(text, a), b)


@main.group()
def agent() -> None:
    """Agent accounts: who may log in to the desks, with which role and teams.

    \b
    Roles: agent (works their teams' queues), supervisor (all of their teams;
    takes over, reassigns, approves), admin (everything). While no account
    exists, the shared agent_desk.token logs anyone in; the first account
    turns it off.

    \b
    Examples:
      omnibot agent add --name "Anna Smith" --email anna@shop.test --teams support,complaints
      omnibot agent list
      omnibot agent token anna@shop.test
      omnibot agent set anna@shop.test --teams support --role supervisor
      omnibot agent disable anna@shop.test
      omnibot agent enable anna@shop.test
    """


def _with_store(config_path: str | None, work: Any) -> Any:
    """Run ``work(store, config)`` on the configured database; errors exit 1 with the reason."""
    from bot.agents import AccountError
    from bot.storage import open_store
    from bot.storage.admin import redact

    config = _load(config_path)
    url = config.storage_url()

    async def go() -> Any:
        store = await open_store(url, synchronous=config.storage.synchronous)
        try:
            return await work(store, config)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except AccountError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (OmnibotError, sqlite3.Error, OSError) as exc:
        click.echo(f"error: {redact(str(exc), url)}", err=True)
        sys.exit(1)


@agent.command("add", short_help="add an agent account (prints a generated password)")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--name", required=True, help="full name, shown to customers and colleagues")
@click.option("--email", required=True, help="the login (unique)")
@click.option("--teams", default="", help="comma-separated team ids from handoff.teams (e.g. support,complaints)")
@click.option("--role", type=click.Choice(["agent", "supervisor", "admin"]), default="agent", show_default=True)
@click.option("--password-stdin", is_flag=True, help="read the password from stdin instead of generating one")
def agent_add(config_path: str | None, name: str, email: str, teams: str, role: str, password_stdin: bool) -> None:
    """Add an account. Without --password-stdin a password is generated and printed once."""
    from bot.agents import add_agent, new_password

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else new_password()

    async def work(store: Any, config: Config) -> Any:
        return await add_agent(store, name=name, email=email, teams=teams.split(","), role=role,
                               password=password, known_teams=list(config.handoff.teams))

    account = _with_store(config_path, work)
    click.echo(f"added {account.role} {account.name} <{account.email}> "
               f"(teams: {', '.join(account.teams) or 'none'})")
    if not password_stdin:
        click.echo(f"password: {password}")
        click.echo("(shown once: give it to them; it is stored only as a hash)")


@agent.command("list", short_help="every account: e-mail, name, role, teams, disabled")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
def agent_list(config_path: str | None) -> None:
    """Every account, by e-mail."""
    async def work(store: Any, config: Config) -> Any:
        return await store.list_agents()

    accounts = _with_store(config_path, work)
    if not accounts:
        click.echo("no agent accounts (the shared agent_desk.token is how agents log in; "
                   "add accounts with omnibot agent add)")
        return
    rows = [("EMAIL", "NAME", "ROLE", "TEAMS", "DISABLED")] + [
        (a.email, a.name, a.role, ",".join(a.teams), "yes" if a.disabled else "no") for a in accounts]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@agent.command("disable", short_help="disable an account and end its sessions")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("email")
def agent_disable(config_path: str | None, email: str) -> None:
    """Disable the account EMAIL: its sessions end and its token stops working at once."""
    _set_disabled(config_path, email, True)


@agent.command("enable", short_help="enable a disabled account (it logs in again)")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("email")
def agent_enable(config_path: str | None, email: str) -> None:
    """Enable the account EMAIL again: it can log in with its password (sessions from before
    it was disabled stay ended) and use its personal token."""
    _set_disabled(config_path, email, False)


def _set_disabled(config_path: str | None, email: str, disabled: bool) -> None:
    async def work(store: Any, config: Config) -> Any:
        return await store.set_agent_disabled(email, disabled)

    if not _with_store(config_path, work):
        click.echo(f"error: no agent account with e-mail {email}", err=True)
        sys.exit(1)
    click.echo(f"{'disabled' if disabled else 'enabled'} {email.strip().lower()}")


@agent.command("set", short_help="change an account's name, teams or role")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--name", help="a new full name (shown to customers and colleagues; unique)")
@click.option("--teams", help="the new comma-separated team ids from handoff.teams (replaces the old list)")
@click.option("--role", type=click.Choice(["agent", "supervisor", "admin"]), help="the new role")
@click.argument("email")
def agent_set(config_path: str | None, email: str, name: str | None, teams: str | None, role: str | None) -> None:
    """Change the account EMAIL: its name, teams and/or role (what is not given stays).

    The change applies to the account's next request on every desk: its sessions go on (each
    request reads the role and teams afresh), so nobody has to log in again. Handoffs claimed
    under the old name keep it, and so do the figures of that name.

    \b
    Examples:
      omnibot agent set anna@shop.test --teams support,complaints --role supervisor
      omnibot agent set anna@shop.test --name "Anna Smith-Berg"
    """
    from bot.agents import ROLES, update_agent

    if name is None and teams is None and role is None:
        raise click.UsageError("give --name, --teams and/or --role")
    config = _load(config_path)
    team_list = None if teams is None else [t.strip() for t in teams.split(",") if t.strip()]
    known = list(config.handoff.teams)
    if team_list and (unknown := [t for t in team_list if t not in known]):
        raise click.BadParameter(f"unknown team {unknown[0]!r} (teams: {', '.join(known)})", param_hint="--teams")
    assert role is None or role in ROLES

    async def work(store: Any, config: Config) -> Any:
        try:
            return await update_agent(store, email, name=name, teams=team_list, role=role)
        except LookupError:
            return None

    account = _with_store(config_path, work)
    if account is None:
        click.echo(f"error: no agent account with e-mail {email}", err=True)
        sys.exit(1)
    click.echo(f"{account.email}: {account.role} {account.name} (teams: {', '.join(account.teams) or 'none'})")


@agent.command("password", short_help="a new password for an account (ends its sessions)")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--password-stdin", is_flag=True, help="read the password from stdin instead of generating one")
@click.argument("email")
def agent_password(config_path: str | None, email: str, password_stdin: bool) -> None:
    """A new password for EMAIL; every session of the account ends."""
    from bot.agents import AccountError, hash_password, new_password

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else new_password()

    async def work(store: Any, config: Config) -> Any:
        if len(password) < 8:
            raise AccountError("the password must be at least 8 characters")
        return await store.set_agent_password(email, hash_password(password))

    if not _with_store(config_path, work):
        click.echo(f"error: no agent account with e-mail {email}", err=True)
        sys.exit(1)
    click.echo(f"new password for {email.strip().lower()}" + ("" if password_stdin else f": {password}"))


@agent.command("token", short_help="a new personal API token for an account (printed once)")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("email")
def agent_token(config_path: str | None, email: str) -> None:
    """A new personal token for EMAIL (any earlier one stops working). API clients send
    it as ``Authorization: Bearer <token>``."""
    from bot.agents import new_token, token_hash

    token = new_token()

    async def work(store: Any, config: Config) -> Any:
        return await store.set_agent_token(email, token_hash(token))

    if not _with_store(config_path, work):
        click.echo(f"error: no agent account with e-mail {email}", err=True)
        sys.exit(1)
    click.echo(token)
    click.echo("(shown once: it is stored only as a hash; `omnibot agent token` again replaces it)", err=True)


@main.group()
def nlu() -> None:
    """Measure the language understanding on your own labelled data.

    \b
    Files are CSV with the header text,label (UTF-8). In intent files the
    label oos marks out-of-scope messages. Progress goes to stderr; the report
    to stdout, ending with one line of JSON for scripts.
    """


def _nlu_fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@nlu.command("eval")
@click.option("--train", "train", required=True, metavar="TRAIN.csv", help="training rows (text,label)")
@click.option("--test", "test", required=True, metavar="TEST.csv", help="test rows (text,label)")
@click.option("--shots", type=click.IntRange(min=1), default=None,
              help="train on K random examples per label (default: all rows)")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed for --shots")
@click.option("--model", type=click.Choice(["dynamic", "shipped"]), default="dynamic", show_default=True,
              help="sentence model variant (as nlu.model in config.yaml)")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True, help="model threads")
def nlu_eval(train: str, test: str, shots: int | None, seed: int, model: str, threads: int) -> None:
    """Train the intent matcher exactly as flows do and score TEST.

    Prints accuracy, macro F1, latency per message, and (when TEST has oos
    rows) in-scope accuracy and out-of-scope recall.

    \b
    Example:
      omnibot nlu eval --train train.csv --test test.csv --shots 10 --seed 1
    """
    setup_logging("WARNING")
    try:
        from flows.nlu.evaluate import evaluate_intents
        evaluate_intents(train, test, shots=shots, seed=seed, model=model, threads=threads)
    except ValueError as exc:
        _nlu_fail(exc)


@nlu.command("complaint-eval")
@click.option("--train", "train", required=True, metavar="TRAIN.csv",
              help="training rows (text,label; label complaint or not_complaint)")
@click.option("--test", "test", required=True, metavar="TEST.csv", help="test rows, same labels")
@click.option("--model", type=click.Choice(["dynamic", "shipped"]), default="dynamic", show_default=True,
              help="sentence model variant (as nlu.model in config.yaml)")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True, help="model threads")
def nlu_complaint_eval(train: str, test: str, model: str, threads: int) -> None:
    """Train the complaint detector on TRAIN only and score TEST.

    \b
    Example (the default set that ships with omnibot, against your own):
      omnibot nlu complaint-eval --train flows/nlu/complaints_default.csv --test mine.csv
    """
    setup_logging("WARNING")
    try:
        from flows.nlu.evaluate import evaluate_complaints
        evaluate_complaints(train, test, model=model, threads=threads)
    except ValueError as exc:
        _nlu_fail(exc)


from bot import cli_privacy as _cli_privacy  # noqa: E402,F401 - omnibot customer ..., omnibot audit
from bot import cli_flows as _cli_flows  # noqa: E402,F401 - omnibot reload, omnibot flows ...
from bot import cli_tools as _cli_tools  # noqa: E402,F401 - omnibot graph, omnibot schema

if __name__ == "__main__":
    # `python -m bot.cli`: run the bot.cli module's group, which the other command modules extend
    from bot.cli import main as _main
    _main()
