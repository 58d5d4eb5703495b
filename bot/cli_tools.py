"""``omnibot graph FLOW`` and ``omnibot schema`` (README "Writing flows", docs/flows.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli import CONFIG_HELP, _load, main
from bot.errors import FlowValidationError


@main.command()
@click.argument("flow")
@click.option("--flows", "flows_dir", type=click.Path(), help="flows folder (default: flows.path from the config)")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
def graph(flow: str, flows_dir: str | None, config_path: str | None) -> None:
    """Print flow FLOW as a Mermaid diagram (flowchart TD).

    \b
    Paste it into any Mermaid viewer: https://mermaid.live, a ```mermaid block
    in GitHub or GitLab markdown, or your editor's Mermaid preview.
    Example:  omnibot graph order_status > order_status.mmd
    """
    from flows import load_flows
    from flows.graph import mermaid

    config = _load(config_path)
    path = Path(flows_dir) if flows_dir else config.resolve(config.flows.path)
    try:
        fs = load_flows(path, teams=config.handoff.teams.keys(), endpoints=config.integrations.endpoints.keys())
    except FlowValidationError as exc:
        for e in exc.errors:
            click.echo(str(e), err=True)
        click.echo(f"{len(exc.errors)} error(s) in {path}; run omnibot validate", err=True)
        sys.exit(1)
    if flow not in fs.flows:
        click.echo(f"error: no flow named {flow!r} in {path} (flows: {', '.join(sorted(fs.flows))})", err=True)
        sys.exit(1)
    click.echo(mermaid(fs, flow), nl=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of flow files (for editors that complete and check YAML).

    \b
    omnibot schema > flow.schema.json
    then start a flow file with the line
    # yaml-language-server: $schema=flow.schema.json
    (a path relative to the flow file, or a URL). docs/flow.schema.json is the
    schema of this version.
    """
    from flows.jsonschema import flow_json_schema_text

    click.echo(flow_json_schema_text(), nl=False)
