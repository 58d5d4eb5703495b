"""``omnibot customer export|erase`` and ``omnibot audit`` (README "Privacy")."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli import CONFIG_HELP, _date, _with_store, main
from bot.config import Config


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _who(f: Any) -> Any:
    for opt in reversed([
        click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP),
        click.option("--id", "customer_id", metavar="ID", help="the customer's id (cus_...)"),
        click.option("--email", metavar="ADDRESS", help="the e-mail address they wrote from"),
        click.option("--phone", metavar="NUMBER", help="their phone number (WhatsApp), with country code"),
        click.option("--channel", metavar="CHANNEL", help="a channel (webchat, telegram, whatsapp, email) ..."),
        click.option("--external-id", metavar="X", help="... and their id on it (chat id, visitor id, address)"),
    ]):
        f = opt(f)
    return f


async def _one(store: Any, config: Config, **who: Any) -> str:
    from bot.dsr import find_customers

    given = {k: v for k, v in who.items() if v}
    if not given or (("channel" in given) != ("external_id" in given)):
        raise click.UsageError("say whose data: --id, --email, --phone, or --channel with --external-id")
    try:
        found = await find_customers(store, phone_regions=config.privacy.phone_regions, **given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not found:
        click.echo("error: no customer matches", err=True)
        sys.exit(1)
    if len(found) > 1:
        click.echo(f"error: {len(found)} customers match ({', '.join(found)}); give one with --id", err=True)
        sys.exit(1)
    return found[0]


@main.group()
def customer() -> None:
    """A customer's personal data: export it, erase it (data subject requests).

    \b
    The customer is found by one of --id, --email, --phone, or --channel with
    --external-id; every identity linked to them (other channels) is included.

    \b
    Examples:
      omnibot customer export --email ann@example.com --out ann.zip
      omnibot customer erase --channel telegram --external-id 123456789
    """


@customer.command("export", short_help="write everything about a customer into one zip file")
@_who
@click.option("--out", "out", type=click.Path(dir_okay=False), help="the zip to write (default: <customer id>.zip)")
def customer_export(config_path: str | None, out: str | None, **who: Any) -> None:
    """Write one zip with everything stored about the customer: customer.json (profile,
    identities, conversations, messages, handoffs, Slack threads, notes, tickets,
    surveys, compensations, the list of files) and media/ (the files themselves).
    Recorded in the audit log."""
    from bot.dsr import export_customer

    async def work(store: Any, config: Config) -> Any:
        cid = await _one(store, config, **who)
        path = Path(out or f"{cid}.zip")
        return cid, path, await export_customer(store, cid, path, actor=_actor())

    cid, path, counts = _with_store(config_path, work)
    click.echo(f"exported {cid} to {path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@customer.command("erase", short_help="erase a customer's personal data (asks first)")
@_who
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def customer_erase(config_path: str | None, yes: bool, **who: Any) -> None:
    """Erase everything personal about the customer: messages, files, notes, identities, flow
    state, and the cards and thread messages omnibot posted to Slack (when the Slack desk is
    on). Conversations, handoffs and tickets stay for the figures, anonymous: no address,
    fields, result or comment; the customer row stays without name or attributes.

    Prints what it removed; recorded in the audit log. Export first if they asked for a copy.
    """
    from bot.dsr import erase_customer
    from handoff.slack_erase import slack_client

    async def work(store: Any, config: Config) -> Any:
        cid = await _one(store, config, **who)
        if not yes:
            data = await store.customer_data(cid)
            click.confirm(f"erase customer {cid} ({len(data['identities'])} identities, "
                          f"{len(data['conversations'])} conversations, {len(data['messages'])} messages, "
                          f"{len(data['media'])} files)? This cannot be undone", abort=True)
        return cid, await erase_customer(store, cid, slack=slack_client(config), actor=_actor())

    cid, counts = _with_store(config_path, work)
    click.echo(f"erased {cid}:")
    for k, v in counts.items():
        click.echo(f"  {k.replace('_', ' ')}: {v}")
    if counts.get("slack_left") or counts.get("slack_failed"):
        click.echo("note: some Slack messages could not be deleted with the bot token (written by people, or "
                   "Slack refused): a workspace admin removes them", err=True)


@main.command("audit")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--since", metavar="DATE", help="from this date (UTC; 2026-11-01 or 2026-11-01T08:00)")
@click.option("--agent", "actor", metavar="WHO", help="only what this actor did: an agent's name "
              "(agent:Anna Smith, or just Anna Smith), cli:<user>, system")
@click.option("--customer", "customer_id", metavar="ID", help="only entries about this customer")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def audit_cmd(config_path: str | None, since: str | None, actor: str | None, customer_id: str | None,
              limit: int, as_json: bool) -> None:
    """The audit log, oldest first: who did what, when, to which customer.

    \b
    Recorded: exports, erasures, retention runs, and from the desks agent
    logins (and failed ones), claims, transfers, take-overs, resolves, hand-backs,
    reopens, reveals of masked data, review approvals and returns, compensations.

    \b
    Example:
      omnibot audit --since 2026-11-01 --customer cus_0123456789abcdef
    """
    when = _date(since, "--since")
    if actor and ":" not in actor:
        actor = f"agent:{actor}"

    async def work(store: Any, config: Config) -> Any:
        return await store.audit_log(since=when, actor=actor, customer_id=customer_id, limit=limit)

    entries = _with_store(config_path, work)
    for e in entries:
        if as_json:
            click.echo(json.dumps(e.to_dict()))
        else:
            detail = ", ".join(f"{k}={v}" for k, v in e.detail.items())
            click.echo(f"{e.at.isoformat(timespec='seconds')}  {e.actor}  {e.action}"
                       + (f"  customer={e.customer_id}" if e.customer_id else "")
                       + (f"  target={e.target}" if e.target else "") + (f"  {detail}" if detail else ""))
    if not entries and not as_json:
        click.echo("no audit entries match", err=True)
