"""``omnibot shell``: the real runtime and flows, with the terminal as the channel."""

from __future__ import annotations

import asyncio
import sys

import click

from bot.config import Config
from bot.model import Inbound
from bot.storage import OutboxItem


class ConsoleConnector:
    """Prints outbound messages; buttons become a numbered list."""

    name = "console"

    def __init__(self) -> None:
        self.printed = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, item: OutboxItem) -> str:
        m = item.message
        who = {"bot": "bot", "agent": m.sender_name or "agent", "system": "--"}.get(m.role, m.role)
        click.secho(f"{who}> ", fg="cyan", nl=False, err=False)
        click.echo(m.text)
        for i, b in enumerate(m.buttons, 1):
            click.echo(f"      {i}. {b.title}")
        self.printed.set()
        return f"console-{m.id}"


async def run_shell(config: Config) -> None:
    from bot.app import build_services

    config = config.model_copy(update={"storage": config.storage.model_copy(update={"url": "sqlite:///:memory:"}),
                                       "webchat": config.webchat.model_copy(update={"enabled": False})})
    s = await build_services(config)
    console = ConsoleConnector()
    s.connectors[console.name] = console
    await s.delivery.start()
    click.echo(f"omnibot shell: {len(s.engine.flows.flows)} flows from {config.resolve(config.flows.path)}. "
               "Type a message; a number picks a button; /quit leaves.")
    last_buttons: list = []
    n = 0
    try:
        while True:
            line = await asyncio.to_thread(_input)
            if line is None or line.strip() in ("/quit", "/exit"):
                break
            if not line.strip():
                continue
            n += 1
            text, payload = line, None
            history = await s.store.history(await _conv_id(s), limit=20) if n > 1 else []
            outs = [m for m in history if m.direction == "out" and m.buttons]
            last_buttons = list(outs[-1].buttons) if outs else []
            if line.strip().isdigit() and last_buttons and 1 <= int(line) <= len(last_buttons):
                b = last_buttons[int(line) - 1]
                text, payload = b.title, b.payload
            console.printed.clear()
            await s.runtime.accept(Inbound("console", "you", f"m{n}", text, sender_name="", payload=payload))
            await s.runtime.drain()
            try:
                await asyncio.wait_for(console.printed.wait(), 2)
            except TimeoutError:
                conv = await s.store.open_conversation("console", "you")
                if conv and conv.state.value in ("waiting", "with_agent"):
                    click.echo("--  (waiting for an agent: run `omnibot run` to answer from the agent desk)")
            await asyncio.sleep(0.05)
    finally:
        await s.delivery.stop()
        await s.store.close()


async def _conv_id(s) -> str:  # type: ignore[no-untyped-def]
    conv = await s.store.latest_conversation("console", "you")
    return conv.id if conv else ""


def _input() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None
