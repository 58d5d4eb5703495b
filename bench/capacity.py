"""Capacity table: every channel, matcher and storage backend, next to a bare aiohttp ceiling, in one run.

One command, bounded time (``--budget``; default 600 s, ``--quick`` 150 s). It prints the
machine it ran on, then a Markdown table (``--json FILE`` also writes every figure):

    python bench/capacity.py            # full table, about 8 minutes
    python bench/capacity.py --quick    # shorter windows, no multi-instance rows, about 2 minutes

Rows (each a fresh `omnibot run` process, demo flows, fresh database):

    ceiling     bench/echo_server.py: a bare aiohttp WebSocket bot that stores nothing
    web chat    customers on WebSockets (the load of bench/cluster.py)
    telegram    webhook: each question POSTed to /telegram/webhook as Telegram does; the answer
                is the bot's sendMessage arriving at a fake Bot API (tests/fakes/telegram_api.py)
    whatsapp    webhook: signed POSTs to /whatsapp/webhook; the answer is the bot's POST to a
                fake Graph API (tests/fakes/whatsapp_api.py)

for the lexical and the learned matcher, on SQLite and on one instance with PostgreSQL
(a throwaway cluster from the Debian binaries, as tests/pg.py starts it; durability off;
``ANALYZE`` half-way through each row's warm-up, as autovacuum keeps a live database), plus
web chat with the lexical matcher on 2 and 3 instances sharing that PostgreSQL if time allows.

Load: ``--clients`` concurrent customers (default 64), each asking routine FAQ questions one
after another in one conversation, for ``--warmup`` seconds, then ``--seconds`` measured.
Per row, over the measured window: answered messages/s; p50/p95/p99 round trip (question
sent -> answer received); server CPU per answered message from /proc utime+stime of the
omnibot process(es) plus, with PostgreSQL, the postmaster and its children (SQLite works
inside omnibot, so this is the fair comparison); peak RSS (VmHWM) of the omnibot process.
"x ceiling" divides CPU/msg by the ceiling's; "x web chat" divides a webhook channel's by
web chat's with the same matcher and storage (issue 20's target: at most 1.3).

``--whatsapp-statuses``: the fake Graph API also sends, for every reply, the status webhooks
Meta sends (``sent``, ``delivered``, ``read``, one signed POST each, in that order) to the
instance, as a live WhatsApp number gets them; the WhatsApp row ("WhatsApp webhook + statuses")
then counts their server CPU in its messages' (without it, only the questions' webhooks).

``OMNIBOT_BENCH_PROFILE=DIR`` runs the first instance of every row under cProfile and writes
DIR/<row>.prof (as bench/cluster.py; it slows that instance down, so its figures are not the
table's).

Every question must be answered exactly once, else the row is marked and the exit status is 1.
The load generator and the fake platforms run in this process and share the machine's cores
with the server: on 2 cores, absolute msg/s is lower than on a dedicated server; CPU per
message is the figure that carries over.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from cluster import Instance, Load, customer, drive, question, write_config  # noqa: E402
from webchat_load import free_port, peak_rss_mb, start_echo  # noqa: E402

from fakes import telegram_api as tg  # noqa: E402
from fakes import whatsapp_api as wa  # noqa: E402

CHANNELS = ("webchat", "telegram", "whatsapp")
MATCHERS = ("lexical", "learned")
STORAGES = ("sqlite", "pg1")
TG_SECRET = "bench-secret-token"
WA_APP_SECRET = "bench-app-secret"
LABEL = {"webchat": "web chat", "telegram": "Telegram webhook", "whatsapp": "WhatsApp webhook"}


@dataclass(frozen=True)
class Scenario:
    channel: str            # webchat | telegram | whatsapp | ceiling
    matcher: str = "-"
    storage: str = "-"      # sqlite | pg
    instances: int = 1
    variant: str = ""       # "httpx": Telegram as before issue 20 (bench/omnibot_httpx.py)

    @property
    def name(self) -> str:
        if self.channel == "ceiling":
            return "ceiling"
        where = "sqlite" if self.storage == "sqlite" else f"pg{self.instances}"
        return f"{self.channel}/{self.matcher}/{where}" + (f"+{self.variant}" if self.variant else "")


def plan(args: argparse.Namespace) -> list[Scenario]:
    """The rows, most important first (the budget cuts from the end)."""
    out = [Scenario("ceiling")]
    for storage in args.storage:
        for matcher in args.matchers:
            out += [Scenario(c, matcher, "sqlite" if storage == "sqlite" else "pg") for c in args.channels]
            if args.telegram_before and "telegram" in args.channels:
                out.append(Scenario("telegram", matcher, "sqlite" if storage == "sqlite" else "pg", variant="httpx"))
    if not args.quick and "pg1" in args.storage and "webchat" in args.channels and "lexical" in args.matchers:
        out += [Scenario("webchat", "lexical", "pg", n) for n in args.extra_instances]
    return out


# -- the machine --------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python, OS, and the load average when the run started."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    osname = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = f"{line.split('=', 1)[1].strip(chr(34))} (Linux {platform.release()})"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(ram, 1), "python": platform.python_version(),
            "os": osname, "loadavg_at_start": list(os.getloadavg())}


# -- the webhook channels: fake platforms in this process, customers posting webhooks -----------

class Replies:
    """Answers the bot sent, by chat: a waiting customer's future is resolved by the next one."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.waiting: dict[str, asyncio.Future[None]] = {}

    def expect(self, chat: str) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[chat] = fut
        return fut

    def reply(self, chat: str) -> None:
        self.count[chat] = self.count.get(chat, 0) + 1
        fut = self.waiting.pop(chat, None)
        if fut is not None and not fut.done():
            fut.set_result(None)


class BenchTelegram(tg.FakeTelegram):
    """The fake Bot API, reporting each sendMessage and keeping no history (runs are long)."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self.replies = replies
        self.set_handler("sendMessage", self._send)

    def _send(self, call: Any) -> dict:
        result = self._m_sendMessage(call)
        self.calls.clear()
        self.messages.clear()
        self.replies.reply(str(call.args.get("chat_id")))
        return result


class BenchWhatsApp(wa.FakeWhatsApp):
    """The fake Graph API, reporting each message sent and keeping no history (and, with
    ``--whatsapp-statuses``, sending Meta's status webhooks for it)."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self.replies = replies
        self.status_url: str | None = None
        self.statuses_sent = 0
        self.status_problems: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def _messages(self, request: web.Request) -> web.Response:
        resp = await super()._messages(request)
        to = self.calls[-1].args.get("to") if self.calls else None
        self.calls.clear()
        if resp.status == 200 and to:
            self.replies.reply(str(to))
            if self.status_url:
                task = asyncio.create_task(self._statuses(json.loads(resp.body)["messages"][0]["id"], str(to)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return resp

    # --whatsapp-statuses: Meta's status webhooks for each reply
    def send_statuses(self, url: str | None) -> None:
        """From now on, POST sent, delivered and read for every reply to ``url`` (None: stop)."""
        self.status_url, self.statuses_sent, self.status_problems, self._tasks = url, 0, [], set()

    async def _statuses(self, wamid: str, to: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        for st in ("sent", "delivered", "read"):
            try:
                status = await wa.deliver_webhook(self._http, self.status_url or "", wa.status_update(wamid, st, to),
                                                  WA_APP_SECRET)
            except (aiohttp.ClientError, OSError) as exc:
                status = type(exc).__name__
            if status != 200:
                self.status_problems.append(f"status webhook {st} of {wamid}: {status}")
                return
            self.statuses_sent += 1

    async def drain(self) -> None:
        """Wait for the status webhooks under way, then stop sending them."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.status_url = None
        if self._http is not None:
            await self._http.close()
            self._http = None


_chats = itertools.count(1)


def webhook_customer(channel: str, replies: Replies, unique: bool = True) -> Callable[..., Any]:
    """A customer for ``drive``: posts each question as the platform's webhook, waits for the answer.

    ``unique``: every question a text never asked before (as ``bench/cluster.py --unique``)."""

    async def run(n: int, url: str, stop_at: float, load: Load) -> None:
        chat_no = 700000000 + next(_chats)
        chat = str(chat_no) if channel == "telegram" else f"1555{chat_no}"
        asked = 0
        async with aiohttp.ClientSession() as http:
            i = n
            while time.monotonic() < stop_at:
                q = question(n, i, unique)
                i += 1
                answered = replies.expect(chat)
                t0 = time.perf_counter()
                if channel == "telegram":
                    status = await tg.deliver_webhook(http, url + "/telegram/webhook", tg.text_update(chat_no, q),
                                                      TG_SECRET, timeout=30)
                else:
                    status = await wa.deliver_webhook(http, url + "/whatsapp/webhook", wa.text_message(chat, q),
                                                      WA_APP_SECRET)
                asked += 1
                if status != 200:
                    load.problems.append(f"customer {n}: webhook answered HTTP {status} to {q!r}")
                    break
                try:
                    await asyncio.wait_for(answered, 30)
                except asyncio.TimeoutError:
                    load.problems.append(f"customer {n}: no answer in 30 s to {q!r}")
                    break
                load.answered(t0)
        await asyncio.sleep(1.0)          # grace period: late or duplicate answers
        load.asked += asked
        got = replies.count.get(chat, 0)
        if got != asked:
            load.problems.append(f"customer {n}: asked {asked}, {got} answers")

    return run


def channel_config(channel: str, fakes: dict[str, Any]) -> str:
    if channel == "telegram":
        f = fakes["telegram"]
        return f"""
telegram:
  enabled: true
  token: "{f.token}"
  mode: webhook
  secret_token: {TG_SECRET}
  api_url: "{f.base_url}"
  file_url: "{f.base_file_url}"
"""
    if channel == "whatsapp":
        f = fakes["whatsapp"]
        return f"""
whatsapp:
  enabled: true
  access_token: "{f.token}"
  phone_number_id: "{f.phone_number_id}"
  app_secret: "{WA_APP_SECRET}"
  verify_token: bench-verify
  api_url: "{f.url}"
  api_version: {f.version}
"""
    return ""


# -- one row ------------------------------------------------------------------------------------

async def run_row(sc: Scenario, args: argparse.Namespace, tmp: Path, pg: Any, fakes: dict[str, Any],
                  replies: Replies) -> dict[str, Any]:
    if sc.channel == "ceiling":
        port = free_port()
        proc = await asyncio.to_thread(start_echo, port)
        try:
            r = await drive([f"http://127.0.0.1:{port}"], args, [proc.pid], None, None, False)
            r["peak_rss_mb"] = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 15)
        r["server_errors"] = []
        return r
    dbname = None
    if sc.storage == "sqlite":
        url = f"sqlite:///{tmp / (sc.name.replace('/', '-') + '.sqlite3')}"
    else:
        from pg import create_database
        dbname = await asyncio.to_thread(create_database, pg)
        url = pg.dsn(dbname)
    cfg = write_config(tmp / (sc.name.replace("/", "-") + ".yaml"), url, sc.matcher,
                       channel_config(sc.channel, fakes))
    insts: list[Instance] = []
    try:
        t0 = time.monotonic()
        entry = (str(ROOT / "bench" / "omnibot_httpx.py"),) if sc.variant == "httpx" else ("-m", "bot.cli")
        prof_dir = os.environ.get("OMNIBOT_BENCH_PROFILE")
        prof = Path(prof_dir) / f"{sc.name.replace('/', '-')}.prof" if prof_dir else None
        if prof:
            prof.parent.mkdir(parents=True, exist_ok=True)
        insts.append(Instance(cfg, free_port(), prof, entry=entry))
        await asyncio.to_thread(insts[0].wait_started)        # it creates the schema; then the rest
        insts += [Instance(cfg, free_port(), entry=entry) for _ in range(sc.instances - 1)]
        for i in insts[1:]:
            await asyncio.to_thread(i.wait_started)
        started_s = time.monotonic() - t0
        statuses = sc.channel == "whatsapp" and args.whatsapp_statuses
        if statuses:
            fakes["whatsapp"].send_statuses(insts[0].url + "/whatsapp/webhook")
        await asyncio.sleep(0.5)           # the connectors' first calls to the fake platform
        fn = customer if sc.channel == "webchat" else webhook_customer(sc.channel, replies, args.unique)
        r = await drive([i.url for i in insts], args, [i.proc.pid for i in insts],
                        pg.pid if dbname else None, (url, dbname) if dbname else None, False, fn)
        r["start_s"] = started_s
        if statuses:
            await fakes["whatsapp"].drain()
            r["status_webhooks"] = fakes["whatsapp"].statuses_sent
            r["problems"] += fakes["whatsapp"].status_problems[:5]
        r["peak_rss_mb"] = max(peak_rss_mb(i.proc.pid) for i in insts)
        dead = [i for i in insts if i.proc.poll() is not None]
        if dead:
            r["problems"].append(f"{len(dead)} instance(s) exited:\n" + "".join(dead[0].lines[-20:]))
        r["server_errors"] = [ln for i in insts for ln in i.lines if " ERROR " in ln or "Traceback" in ln][:20]
        return r
    finally:
        await fakes["whatsapp"].drain()
        for i in insts:
            await asyncio.to_thread(i.stop)
        if dbname:
            from pg import drop_database
            await asyncio.to_thread(drop_database, pg, dbname)


# -- the table ----------------------------------------------------------------------------------

def _f(x: Any, fmt: str) -> str:
    return "-" if x is None or x != x else format(x, fmt)      # x != x: NaN


def markdown(machine_info: dict[str, Any], rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The results as Markdown: the machine and load, then one table row per scenario.

    Each row holds ``scenario`` (channel, matcher, storage, instances) and the figures of
    :func:`cluster.drive`, or ``skipped`` with a reason.
    """
    m = machine_info
    ceiling = next((r for r in rows if r["scenario"]["channel"] == "ceiling" and "skipped" not in r), None)
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']:g} GB RAM; Python {m['python']}; {m['os']}; "
             f"load average at start {m['loadavg_at_start'][0]:.2f}",
             f"Load: {settings['clients']} concurrent customers asking FAQ questions"
             f"{' (every text new)' if settings.get('unique', True) else ' (the same few texts repeated)'}, {settings['warmup']:g} s "
             f"warm-up + {settings['seconds']:g} s measured per row (`{settings['command']}`)",
             "",
             "| channel | matcher | storage | msg/s | p50 ms | p95 ms | p99 ms | server CPU ms/msg | x ceiling "
             "| x web chat | peak RSS MB |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    web = {(r["scenario"]["matcher"], r["scenario"]["storage"], r["scenario"]["instances"]): r for r in rows
           if r["scenario"]["channel"] == "webchat" and "skipped" not in r}
    for r in rows:
        sc = r["scenario"]
        if sc["channel"] == "ceiling":
            chan, matcher, storage = "bare aiohttp WebSocket (ceiling)", "-", "none"
        else:
            chan, matcher = LABEL[sc["channel"]], sc["matcher"]
            if sc["channel"] == "whatsapp" and settings.get("whatsapp_statuses"):
                chan += " + statuses"
            if sc.get("variant") == "httpx":
                chan += ", before: PTB's httpx client"
            storage = "SQLite" if sc["storage"] == "sqlite" else (
                "PostgreSQL" + (f", {sc['instances']} instances" if sc["instances"] > 1 else ""))
        if "skipped" in r:
            lines.append(f"| {chan} | {matcher} | {storage} | skipped: {r['skipped']} |||||||")
            continue
        cpu = r["cpu_ms_per_msg_total"]
        x_ceil = cpu / ceiling["cpu_ms_per_msg_total"] if ceiling and r is not ceiling else None
        w = web.get((sc["matcher"], sc["storage"], sc["instances"]))
        x_web = cpu / w["cpu_ms_per_msg_total"] if w and sc["channel"] in ("telegram", "whatsapp") else None
        flag = " (errors)" if r["problems"] else ""
        lines.append(f"| {chan}{flag} | {matcher} | {storage} | {_f(r['msg_per_s'], '.0f')} | {_f(r['p50_ms'], '.1f')} "
                     f"| {_f(r['p95_ms'], '.1f')} | {_f(r['p99_ms'], '.1f')} | {_f(cpu, '.2f')} "
                     f"| {_f(x_ceil, '.1f')} | {_f(x_web, '.2f')} | {_f(r['peak_rss_mb'], '.0f')} |")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------

async def run_all(args: argparse.Namespace, scenarios: list[Scenario]) -> list[dict[str, Any]]:
    t_start = time.monotonic()
    replies = Replies()
    fakes: dict[str, Any] = {"telegram": BenchTelegram(replies), "whatsapp": BenchWhatsApp(replies)}
    for f in fakes.values():
        await f.start()
    rows: list[dict[str, Any]] = []
    pg = None
    slowest = 15.0            # start-up + teardown estimate, learned from the rows run so far
    with tempfile.TemporaryDirectory(prefix="omnibot-capacity-") as tmp:
        try:
            for sc in scenarios:
                row: dict[str, Any] = {"scenario": {"channel": sc.channel, "matcher": sc.matcher,
                                                    "storage": sc.storage, "instances": sc.instances,
                                                    "variant": sc.variant}}
                rows.append(row)
                left = args.budget - (time.monotonic() - t_start)
                need = args.warmup + args.seconds + slowest * sc.instances
                if need > left:
                    row["skipped"] = "time budget"
                    print(f"[{sc.name}] skipped: {left:.0f} s of the budget left, about {need:.0f} s needed",
                          file=sys.stderr)
                    continue
                if sc.storage == "pg" and pg is None:
                    from pg import start_cluster
                    print("[pg] starting a throwaway PostgreSQL cluster ...", file=sys.stderr)
                    pg = await asyncio.to_thread(start_cluster)
                    print(f"[pg] {pg.version} on {pg.host}:{pg.port}", file=sys.stderr)
                t0 = time.monotonic()
                print(f"[{sc.name}] {args.clients} customers, {args.warmup:g} s warm-up + {args.seconds:g} s ...",
                      file=sys.stderr)
                row.update(await run_row(sc, args, Path(tmp), pg, fakes, replies))
                took = time.monotonic() - t0
                slowest = max(slowest, (took - args.warmup - args.seconds) / sc.instances)
                print(f"[{sc.name}] {row['msg_per_s']:.0f} msg/s, p99 {row['p99_ms']:.0f} ms, "
                      f"{row['cpu_ms_per_msg_total']:.2f} CPU ms/msg ({took:.0f} s)", file=sys.stderr)
        finally:
            if pg is not None:
                await asyncio.to_thread(pg.stop)
            for f in fakes.values():
                await f.stop()
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 s warm-up + 4 s per row, no multi-instance rows, budget 150 s (about 2 minutes)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent customers (default 64)")
    ap.add_argument("--seconds", type=float, help="measured seconds per row (default 10; --quick 4)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per row (default 3; --quick 1)")
    ap.add_argument("--budget", type=float,
                    help="stop starting rows after this many seconds (default 600; --quick 150); rows left "
                         "are listed as skipped")
    ap.add_argument("--channels", default=",".join(CHANNELS), help=f"subset of {','.join(CHANNELS)}")
    ap.add_argument("--matchers", default=",".join(MATCHERS), help=f"subset of {','.join(MATCHERS)}")
    ap.add_argument("--storage", default=",".join(STORAGES), help=f"subset of {','.join(STORAGES)}")
    ap.add_argument("--extra-instances", default="2,3",
                    help="web chat (lexical) rows with this many instances on one PostgreSQL, after the rest "
                         "(default 2,3; empty: none; never with --quick)")
    ap.add_argument("--telegram-before", action="store_true",
                    help="A/B: also a Telegram row per matcher and storage with python-telegram-bot's own httpx "
                         "client, as before issue 20 (bench/omnibot_httpx.py)")
    ap.add_argument("--repeated-texts", action="store_true",
                    help="customers repeat the same few questions word for word (the NLU's memory of recent "
                         "texts then answers most of them); default: every question is a new text (an order "
                         "number appended), what a capacity plan should assume")
    ap.add_argument("--whatsapp-statuses", action="store_true",
                    help="the fake Graph API also sends Meta's status webhooks (sent, delivered, read) for every "
                         "reply; the WhatsApp row counts their CPU")
    ap.add_argument("--json", help="also write the machine, the settings and every figure to this file")
    args = ap.parse_args(argv)
    for name, allowed in (("channels", CHANNELS), ("matchers", MATCHERS), ("storage", STORAGES)):
        chosen = [x.strip() for x in getattr(args, name).split(",") if x.strip()]
        if bad := [x for x in chosen if x not in allowed]:
            ap.error(f"--{name}: unknown {bad}; choose from {','.join(allowed)}")
        setattr(args, name, chosen)
    try:
        args.extra_instances = [int(x) for x in args.extra_instances.split(",") if x.strip()]
    except ValueError:
        ap.error("--extra-instances: comma-separated numbers, e.g. 2,3")
    args.unique = not args.repeated_texts
    args.seconds = args.seconds if args.seconds is not None else (4 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.budget = args.budget if args.budget is not None else (150 if args.quick else 600)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']:g} GB RAM, Python {info['python']}, "
          f"{info['os']}, load average {info['loadavg_at_start'][0]:.2f}", file=sys.stderr)
    scenarios = plan(args)
    t0 = time.monotonic()
    rows = asyncio.run(run_all(args, scenarios))
    settings = {"clients": args.clients, "warmup": args.warmup, "seconds": args.seconds, "unique": args.unique,
                "whatsapp_statuses": args.whatsapp_statuses,
                "command": " ".join(["python bench/capacity.py", *(sys.argv[1:] if argv is None else argv)]),
                "total_s": round(time.monotonic() - t0, 1)}
    print()
    print(markdown(info, rows, settings))
    failed = False
    for row in rows:
        if row.get("problems"):
            failed = True
            print(f"\nERROR [{Scenario(**row['scenario']).name}] not every question was answered exactly once:",
                  file=sys.stderr)
            for p in row["problems"][:10]:
                print("  " + p, file=sys.stderr)
        if row.get("server_errors"):
            print(f"\nwarning [{Scenario(**row['scenario']).name}] server log errors:\n"
                  + "".join(row["server_errors"]), file=sys.stderr)
    print(f"\n({settings['total_s']:.0f} s in all)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "settings": settings, "rows": rows}, indent=2,
                                              default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
