"""Capacity table: every channel, matcher and storage backend, next to a bare aiohttp ceiling, in one run.

One command, bounded time (``--budget``; default 600 s, ``--quick`` 150 s). It prints the
machine it ran on, then a Markdown table (``--json FILE`` also writes every figure):

    python bench/capacity.py            # full table, about 8 minutes
    python bench/capacity.py --quick    # shorter windows, no multi-instance rows, about 2 minutes
    python bench/capacity.py --rounds 3 # every row 3 times, medians and the CPU range: 15-25 minutes

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
Before that, a learned row asks one question in Spanish and waits for its answer: the learned
NLU loads its multilingual model (2-3 s, once per process) with the first message that needs it,
which otherwise fell inside some rows' measured window (p99 over a second in ``--quick`` rows).
Per row, over the measured window: answered messages/s; p50/p95/p99 round trip (question
sent -> answer received); server CPU per answered message from /proc utime+stime of the
omnibot process(es) plus, with PostgreSQL, the postmaster and its children (SQLite works
inside omnibot, so this is the fair comparison); peak RSS (VmHWM) of the omnibot process.
"x ceiling" divides CPU/msg by the ceiling's; "x web chat" divides a webhook channel's by
web chat's with the same matcher and storage (issue 20's target: at most 1.3).

WhatsApp has two rows per matcher and storage: "WhatsApp webhook", the questions' webhooks
only, and "WhatsApp webhook + statuses", where the fake Graph API also sends, for every reply,
the status webhooks Meta sends (``sent``, ``delivered``, ``read``, one signed POST each, in that
order) to the instance, as a live WhatsApp number gets them: their server CPU counts in the
row's messages'. That second row is what a WhatsApp number costs; ``--no-whatsapp-statuses``
leaves it out.

``OMNIBOT_BENCH_PROFILE=DIR`` runs the first instance of every row under cProfile and writes
DIR/<row>.prof (as bench/cluster.py; it slows that instance down, so its figures are not the
table's).

``--rounds N`` runs every row N times, round after round (all rows once, then all again, ...),
and reports each figure as the median of its rounds, with the spread of CPU per message
("CPU range", min-max); "x ceiling" and "x web chat" are the medians of the ratios within each
round, so a row is compared with rows measured minutes, not a quarter of an hour, apart. On a
shared machine, where the same code's CPU per message moves by up to 1.5x from run to run, this
is the table to publish (the README's is ``--rounds 3``).

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
    variant: str = ""       # "httpx": Telegram as before issue 20 (bench/omnibot_httpx.py);
                            # "statuses": WhatsApp with Meta's status webhooks for every reply

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
            if args.whatsapp_statuses and "whatsapp" in args.channels:
                out.append(Scenario("whatsapp", matcher, "sqlite" if storage == "sqlite" else "pg",
                                    variant="statuses"))
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

#: a question in another language: the learned NLU loads its multilingual model (~2-3 s, once per
#: process) on the first message that needs it
PRIME_TEXT = "¿Dónde está mi pedido? Lo pedí hace una semana y todavía no ha llegado"


async def prime(url: str) -> float:
    """Ask :data:`PRIME_TEXT` on the web chat of the server at ``url`` and wait for the answer: a
    learned row then measures the server as it runs once its models are loaded, not the one-off load
    inside the window. The seconds it took."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "/webchat/ws") as ws:
        await ws.send_json({"type": "hello", "token": None})
        while (await asyncio.wait_for(ws.receive_json(), 30))["type"] != "welcome":
            pass
        await ws.send_json({"type": "message", "client_id": "prime", "text": PRIME_TEXT})
        while True:
            f = await asyncio.wait_for(ws.receive_json(), 60)
            if f["type"] == "message" and f["message"]["direction"] == "out":
                return time.monotonic() - t0

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
        statuses = sc.variant == "statuses"
        if statuses:
            fakes["whatsapp"].send_statuses(insts[0].url + "/whatsapp/webhook")
        await asyncio.sleep(0.5)           # the connectors' first calls to the fake platform
        if sc.matcher == "learned":
            took = [await prime(i.url) for i in insts]
            print(f"[{sc.name}] primed: a question in Spanish answered in {max(took):.1f} s (the multilingual "
                  "model loads with it)", file=sys.stderr)
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


# -- the rounds, combined --------------------------------------------------------------------------

#: figures reported as the median of the rounds
MEDIAN_KEYS = ("msg_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_msg_total", "cpu_ms_per_msg_omnibot",
               "loadgen_cpu_ms_per_msg", "start_s")


def median(xs: list[Any]) -> float | None:
    """The median of the numbers in ``xs`` (None and NaN left out); None if there are none."""
    xs = sorted(x for x in xs if isinstance(x, (int, float)) and x == x)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _key(r: dict[str, Any]) -> tuple:
    sc = r["scenario"]
    return sc["channel"], sc["matcher"], sc["storage"], sc["instances"], sc.get("variant", "")


def add_ratios(runs: list[dict[str, Any]]) -> None:
    """Each measured run's "x ceiling" and "x web chat", against the ceiling and the web-chat row
    (same matcher, storage and instances) of the same round."""
    done = [r for r in runs if "skipped" not in r]
    for r in done:
        same = [o for o in done if o.get("round") == r.get("round")]
        sc, cpu = r["scenario"], r["cpu_ms_per_msg_total"]
        ceiling = next((o for o in same if o["scenario"]["channel"] == "ceiling"), None)
        web = next((o for o in same if o["scenario"]["channel"] == "webchat"
                    and _key(o)[1:4] == _key(r)[1:4] and not o["scenario"].get("variant")), None)
        r["x_ceiling"] = cpu / ceiling["cpu_ms_per_msg_total"] if ceiling and r is not ceiling else None
        r["x_web_chat"] = (cpu / web["cpu_ms_per_msg_total"]
                           if web and sc["channel"] in ("telegram", "whatsapp") else None)


def combine(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario, in the plan's order, from every round's runs of it: the medians of
    :data:`MEDIAN_KEYS` and of the per-round ratios (see :func:`add_ratios`), the range of CPU per
    message, the highest peak RSS, every round's problems. A scenario no round measured is skipped.
    With one round, the row is that round's figures."""
    add_ratios(runs)
    order: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        order.setdefault(_key(r), []).append(r)
    out = []
    for group in order.values():
        done = [r for r in group if "skipped" not in r]
        if not done:
            out.append({"scenario": group[0]["scenario"], "skipped": group[0]["skipped"], "rounds": 0})
            continue
        row: dict[str, Any] = {"scenario": done[0]["scenario"], "rounds": len(done),
                               "answered": sum(r["answered"] for r in done),
                               "peak_rss_mb": max(r["peak_rss_mb"] for r in done)}
        for k in (*MEDIAN_KEYS, "x_ceiling", "x_web_chat"):
            row[k] = median([r.get(k) for r in done])
        cpus = [r["cpu_ms_per_msg_total"] for r in done]
        row["cpu_range"] = [min(cpus), max(cpus)]
        if any("status_webhooks" in r for r in done):
            row["status_webhooks"] = sum(r.get("status_webhooks", 0) for r in done)
        tag = (lambda r: f"round {r['round']}: ") if len(group) > 1 else (lambda r: "")
        row["problems"] = [tag(r) + p for r in done for p in r["problems"]]
        row["server_errors"] = [ln for r in done for ln in r.get("server_errors", [])][:20]
        out.append(row)
    return out


# -- the table ----------------------------------------------------------------------------------

def labels(sc: dict[str, Any]) -> tuple[str, str, str]:
    """A row's channel, matcher and storage as the tables print them."""
    if sc["channel"] == "ceiling":
        return "bare aiohttp WebSocket (ceiling)", "-", "none"
    chan = LABEL[sc["channel"]] + {"statuses": " + statuses", "httpx": ", before: PTB's httpx client"}.get(
        sc.get("variant") or "", "")
    storage = "SQLite" if sc["storage"] == "sqlite" else (
        "PostgreSQL" + (f", {sc['instances']} instances" if sc["instances"] > 1 else ""))
    return chan, sc["matcher"], storage


def _f(x: Any, fmt: str) -> str:
    return "-" if x is None or x != x else format(x, fmt)      # x != x: NaN


def markdown(machine_info: dict[str, Any], rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The results as Markdown: the machine and load, then one table row per scenario.

    Each row is one of :func:`combine`'s: ``scenario`` (channel, matcher, storage, instances),
    the figures of :func:`cluster.drive` (medians over the rounds), ``x_ceiling``, ``x_web_chat``
    and ``cpu_range``, or ``skipped`` with a reason. With more than one round the table has a
    "CPU range" column.
    """
    m = machine_info
    rounds = settings.get("rounds", 1)
    several = rounds > 1
    load = f"load average at start {m['loadavg_at_start'][0]:.2f}"
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']:g} GB RAM; Python {m['python']}; {m['os']}; "
             + load,
             f"Load: {settings['clients']} concurrent customers asking FAQ questions"
             f"{' (every text new)' if settings.get('unique', True) else ' (the same few texts repeated)'}, {settings['warmup']:g} s "
             f"warm-up + {settings['seconds']:g} s measured per row"
             + (f", {rounds} rounds (medians; CPU range: the lowest and highest round)" if several else "")
             + f" (`{settings['command']}`)",
             "",
             "| channel | matcher | storage | msg/s | p50 ms | p95 ms | p99 ms | server CPU ms/msg | "
             + ("CPU range | " if several else "") + "x ceiling | x web chat | peak RSS MB |",
             "|---|---|---|--:|--:|--:|--:|--:|" + ("--:|" if several else "") + "--:|--:|--:|"]
    for r in rows:
        chan, matcher, storage = labels(r["scenario"])
        if "skipped" in r:
            empty = lines[3].count("|") - 5      # the header's cells after these four, left empty
            lines.append(f"| {chan} | {matcher} | {storage} | skipped: {r['skipped']} |" + "|" * empty)
            continue
        flag = " (errors)" if r["problems"] else ""
        if several and r["rounds"] < rounds:
            flag += f" ({r['rounds']} of {rounds} rounds)"
        lo, hi = r["cpu_range"]
        spread = f"{lo:.2f}-{hi:.2f} | " if several else ""
        lines.append(f"| {chan}{flag} | {matcher} | {storage} | {_f(r['msg_per_s'], '.0f')} | {_f(r['p50_ms'], '.1f')} "
                     f"| {_f(r['p95_ms'], '.1f')} | {_f(r['p99_ms'], '.1f')} | {_f(r['cpu_ms_per_msg_total'], '.2f')} "
                     f"| {spread}{_f(r['x_ceiling'], '.1f')} | {_f(r['x_web_chat'], '.2f')} "
                     f"| {_f(r['peak_rss_mb'], '.0f')} |")
    return "\n".join(lines)


#: what "conversations per day" assumes (README "Capacity"): messages answered per conversation,
#: the busiest hour's load over the day's average, and the share of the measured rate planned for
MESSAGES_PER_CONVERSATION = 8
PEAK_TO_AVERAGE = 4
HEADROOM = 2


def conversations_per_day(msg_per_s: float) -> float:
    """Conversations a day at ``msg_per_s`` measured: msg/s x 86,400 / 8 / 4 / 2."""
    return msg_per_s * 86_400 / MESSAGES_PER_CONVERSATION / PEAK_TO_AVERAGE / HEADROOM


def per_day(rows: list[dict[str, Any]]) -> str:
    """A second table: each one-instance row's msg/s as conversations per day (see
    :func:`conversations_per_day`), rounded to two significant digits."""
    lines = [f"Conversations per day on this machine, at {MESSAGES_PER_CONVERSATION} answered messages a conversation, "
             f"a busiest hour {PEAK_TO_AVERAGE}x the average, planned at 1/{HEADROOM} of the rate measured "
             f"(msg/s x 86,400 / {MESSAGES_PER_CONVERSATION} / {PEAK_TO_AVERAGE} / {HEADROOM}):", "",
             "| set-up | msg/s | conversations per day |", "|---|--:|--:|"]
    for r in rows:
        sc = r["scenario"]
        if "skipped" in r or sc["channel"] == "ceiling" or sc.get("variant") == "httpx" or sc["instances"] > 1:
            continue
        n = conversations_per_day(r["msg_per_s"])
        rounded = float(f"{n:.2g}")
        lines.append(f"| {', '.join(labels(sc))} | {r['msg_per_s']:.0f} | about {rounded:,.0f} |")
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
            for rnd, sc in ((r, sc) for r in range(1, args.rounds + 1) for sc in scenarios):
                row: dict[str, Any] = {"scenario": {"channel": sc.channel, "matcher": sc.matcher,
                                                    "storage": sc.storage, "instances": sc.instances,
                                                    "variant": sc.variant}, "round": rnd}
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
                of = f" (round {rnd} of {args.rounds})" if args.rounds > 1 else ""
                print(f"[{sc.name}] {args.clients} customers, {args.warmup:g} s warm-up + {args.seconds:g} s{of} ...",
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
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every row this many times, round after round, and report medians with the range "
                         "of CPU per message (default 1; the budget grows with it)")
    ap.add_argument("--json", help="also write the machine, the settings and every figure to this file "
                                   "(with --rounds: every round's figures too, under \"runs\")")
    ap.add_argument("--whatsapp-statuses", action=argparse.BooleanOptionalAction, default=True,
                    help="a WhatsApp row per matcher and storage where the fake Graph API also sends Meta's status "
                         "webhooks (sent, delivered, read) for every reply, their CPU counted (default: on)")
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
    if args.rounds < 1:
        ap.error("--rounds: at least 1")
    args.budget = args.budget if args.budget is not None else (150 if args.quick else 600) * args.rounds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']:g} GB RAM, Python {info['python']}, "
          f"{info['os']}, load average {info['loadavg_at_start'][0]:.2f}", file=sys.stderr)
    scenarios = plan(args)
    t0 = time.monotonic()
    runs = asyncio.run(run_all(args, scenarios))
    rows = combine(runs)
    settings = {"clients": args.clients, "warmup": args.warmup, "seconds": args.seconds, "unique": args.unique,
                "rounds": args.rounds,
                "command": " ".join(["python bench/capacity.py", *(sys.argv[1:] if argv is None else argv)]),
                "total_s": round(time.monotonic() - t0, 1)}
    print()
    print(markdown(info, rows, settings))
    print()
    print(per_day(rows))
    failed = False
    for row in rows:
        if "skipped" in row:
            continue
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
        data = {"machine": info, "settings": settings, "rows": rows}
        if args.rounds > 1:
            data["runs"] = runs
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
