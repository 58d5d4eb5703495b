"""``omnibot shell``: the real runtime and flows, with the terminal as the channel.

Besides chatting, the shell plays the agent desk (``/agent claim``, ``/agent reply TEXT``,
``/agent resolve OUTCOME``, ``/agent back``), so a conversation never gets stuck after a handoff,
shows the hand-over card as an agent sees it, and prints the conversation's state (``/state``).
An error is one line in the chat, never a traceback (``--log`` shows them in the log).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import click

from bot.config import Config
from bot.model import Inbound
from bot.storage import OutboxItem

log = logging.getLogger(__name__)

AGENT = "Sam Agent"
HELP = """\
commands:
  /state                     where the conversation is: flow, step, slots, language, handoff
  /reset                     start again as a new customer (a fresh conversation)
  /agent claim               take the handoff as the agent ("Sam Agent")
  /agent reply TEXT          answer the customer as the agent (claims it first if needed)
  /agent resolve [OUTCOME]   resolve it (a complaint: the outcome is told, then the survey)
  /agent back                hand the conversation back to the bot
  /card                      the hand-over card again, as the agent desk shows it
  /help                      this list
  /quit                      leave (also Ctrl+D)
a number picks one of the bot's buttons."""


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


class Shell:
    """One terminal customer (and the agent the shell plays) on the real services."""

    def __init__(self, services: Any, console: ConsoleConnector) -> None:
        self.s = services
        self.console = console
        self.customer = 1
        self.n = 0
        self.shown_handoff: str | None = None

    @property
    def external_id(self) -> str:
        return "you" if self.customer == 1 else f"you-{self.customer}"

    async def conv_id(self) -> str:
        conv = await self.s.store.latest_conversation("console", self.external_id)
        return conv.id if conv else ""

    async def handle(self, line: str) -> bool:
        """One line typed; False to leave."""
        cmd = line.strip()
        if cmd in ("/quit", "/exit"):
            return False
        if not cmd:
            return True
        if cmd.startswith("/") and not cmd.startswith("/lang"):
            await self.command(cmd)
            return True
        await self.say(line)
        return True

    async def say(self, line: str) -> None:
        self.n += 1
        text, payload = line, None
        cid = await self.conv_id()
        if line.strip().isdigit() and cid:
            history = await self.s.store.history(cid, limit=50)
            outs = [m for m in history if m.direction == "out" and m.buttons]
            buttons = list(outs[-1].buttons) if outs else []
            if 1 <= int(line) <= len(buttons):
                b = buttons[int(line) - 1]
                text, payload = b.title, b.payload
        await self.s.runtime.accept(Inbound("console", self.external_id, f"m{self.customer}-{self.n}", text,
                                            sender_name="", payload=payload))
        await self.s.runtime.drain()
        await self.flush()
        await self.after_turn()

    async def flush(self) -> None:
        """Wait (briefly) for the outbox to be printed."""
        for _ in range(40):
            cid = await self.conv_id()
            pending = [m for m in await self.s.store.history(cid, limit=50)
                       if m.direction == "out" and m.status == "pending"] if cid else []
            if not pending:
                return
            await asyncio.sleep(0.05)

    async def after_turn(self) -> None:
        """After a handoff: the card once, and how to go on."""
        cid = await self.conv_id()
        h = await self.s.store.active_handoff(cid) if cid else None
        if h is not None and h.id != self.shown_handoff:
            self.shown_handoff = h.id
            await self.card()
            click.echo("--  waiting for an agent: play it with /agent claim, /agent reply TEXT, "
                       "/agent resolve OUTCOME or /agent back (/help)")
        elif h is not None:
            click.echo(f"--  (kept for the agent: a person has this conversation, {h.state}; /agent ... answers)")

    async def command(self, cmd: str) -> None:
        word, _, rest = cmd.partition(" ")
        if word == "/help":
            click.echo(HELP)
        elif word == "/reset":
            self.customer += 1
            self.n = 0
            self.shown_handoff = None
            click.echo("--  a new conversation, as a new customer")
        elif word == "/state":
            await self.state()
        elif word == "/card":
            if not await self.card():
                click.echo("--  no handoff is open in this conversation")
        elif word == "/agent":
            await self.agent(rest)
        else:
            click.echo(f"--  unknown command {word}; /help lists them")

    async def agent(self, rest: str) -> None:
        from bot.convtest import agent_act

        sub, _, text = rest.strip().partition(" ")
        if sub not in ("claim", "reply", "resolve", "back"):
            click.echo("--  /agent claim | /agent reply TEXT | /agent resolve [OUTCOME] | /agent back")
            return
        if sub == "reply" and not text.strip():
            click.echo("--  /agent reply needs the text to send, e.g. /agent reply Hello, I'm on it")
            return
        problem = await agent_act(self.s, await self.conv_id(), sub, text.strip(), AGENT)
        if problem:
            click.echo(f"--  {problem}")
            return
        await self.s.runtime.drain()
        await self.flush()
        if sub in ("resolve", "back"):
            self.shown_handoff = None
            click.echo("--  the conversation is with the bot again")

    async def state(self) -> None:
        cid = await self.conv_id()
        if not cid:
            click.echo("--  no conversation yet: say something")
            return
        conv = await self.s.store.get_conversation(cid)
        fs = await self.s.store.load_flow_state(cid) or {}
        slots = {k: v for k, v in (fs.get("slots") or {}).items() if v not in (None, "", [])}
        step = ""
        if fs.get("flow"):
            step = f", step {fs.get('step')}" + (f" (asking {fs['awaiting']})" if fs.get("awaiting") else "")
        click.echo(f"--  conversation {cid} ({conv.state.value if conv else '?'}), "
                   f"language {(conv.language if conv else None) or 'not set yet'}")
        click.echo(f"--  flow: {fs.get('flow') or 'none'}{step}")
        click.echo(f"--  slots: {json.dumps(slots, ensure_ascii=False, default=str) if slots else 'none'}")
        h = await self.s.store.active_handoff(cid)
        if h is not None:
            click.echo(f"--  handoff: {h.state} for {h.team}" + (f" by {h.agent}" if h.agent else ""))

    async def card(self) -> bool:
        """The hand-over card as the agent desk shows it: team, reason, captured fields, ticket."""
        from handoff.context import handoff_context

        cid = await self.conv_id()
        h = await self.s.store.active_handoff(cid) if cid else None
        if h is None:
            return False
        ctx = await handoff_context(self.s.store, self.s.config, h, flows=self.s.engine.flows)
        rule = "-" * 60
        click.secho(rule, fg="yellow")
        click.secho(f"HANDOFF to {ctx.get('team_name') or h.team} (priority {h.priority}, {h.state})",
                    fg="yellow", bold=True)
        click.echo(f"  why (for the agent): {ctx.get('agent_reason') or h.reason}")
        click.echo(f"  told the customer:   because {h.reason}")
        lang = (ctx.get("conversation") or {}).get("language")
        if lang:
            click.echo(f"  language:            {lang}")
        fields = ctx.get("fields") or []
        if fields:
            click.echo("  captured:")
            for f in fields:
                value = f.get("text") or f.get("value")
                if isinstance(value, dict):           # a choice's title, given by language
                    value = self.s.engine.pick(value, lang)
                if isinstance(value, list):
                    value = f"{len(value)} file(s)"
                click.echo(f"    {f.get('label')}: {value}")
        t = ctx.get("ticket") or {}
        if t:
            click.echo(f"  ticket: {t.get('reference')} {t.get('category') or ''} severity {t.get('severity')}, "
                       f"{t.get('department')}, priority {t.get('priority')}")
            for r in t.get("reasons") or []:
                click.echo(f"    - {r}")
        click.secho(rule, fg="yellow")
        return True


async def run_shell(config: Config) -> None:
    from bot.app import build_services

    config = config.model_copy(update={"storage": config.storage.model_copy(update={"url": "sqlite:///:memory:"}),
                                       "webchat": config.webchat.model_copy(update={"enabled": False}),
                                       "agent_desk": config.agent_desk.model_copy(update={"enabled": False})})
    s = await build_services(config)
    console = ConsoleConnector()
    s.connectors[console.name] = console
    await s.delivery.start()
    shell = Shell(s, console)
    click.echo(f"omnibot shell: {len(s.engine.flows.flows)} flows from {config.resolve(config.flows.path)}. "
               "Type a message; a number picks a button; /help for commands; /quit leaves.")
    try:
        while True:
            line = await asyncio.to_thread(_input)
            if line is None:
                break
            try:
                if not await shell.handle(line):
                    break
            except Exception as exc:  # noqa: BLE001 - one clear line in the chat, the rest in the log
                log.debug("shell command failed", exc_info=True)
                click.echo(f"--  error: {exc.__class__.__name__}: {exc}")
    finally:
        await s.runtime.stop()
        await s.delivery.stop()
        await s.store.close()


class OneLine(logging.Formatter):
    """Log lines for the shell: a problem in one line ("-- error: ..."), never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"--  {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({record.exc_info[0].__name__}: {record.exc_info[1]})"  # type: ignore[union-attr]
        elif record.exc_text:      # bot.logs keeps the (redacted) traceback as text: its last line
            last = [x for x in record.exc_text.strip().splitlines() if x.strip()]
            text += f" ({last[-1].strip()})" if last else ""
        return text


def quiet_logging() -> None:
    """Every root handler prints :class:`OneLine` (``omnibot shell`` without ``--log``)."""
    for h in logging.getLogger().handlers:
        h.setFormatter(OneLine())


def _input() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None
