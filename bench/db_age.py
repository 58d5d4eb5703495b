"""Does a message cost more on an old database? Per-message server CPU and latency, empty vs aged.

For each of two databases -- an EMPTY one and an AGED one (``--conversations`` conversations
with ``--messages`` messages, generated below) -- starts omnibot in its own process (the real
app from ``bot.app.build_app``, demo flows, ``nlu.matcher: lexical`` so the sentence model's
CPU does not drown the storage's), then drives web-chat customers through a real WebSocket:
``hello`` (a new visitor), a few routine questions (each waits for the bot's answer), and a
reconnect that resumes the session (``hello`` with the token and ``last_id``, as the widget does
after a page reload). The server reports its own process CPU time (``time.process_time()``:
all its threads, the SQLite one included) before and after, so the figure is server CPU per
customer message, with that conversation's two ``hello``s counted in. Prints both databases'
figures and the ratios (target: within 1.2x).

The aged database is made the way omnibot writes one: a sample of conversations through the
store's own API (inbound, turns with replies, sent marks, handoffs, tickets), then the bulk with
``INSERT ... SELECT`` over a counter, in the same shapes (customers with identities on web chat
and Telegram, returning customers with several closed conversations on the same address,
alternating in/out messages with platform ids, handoffs and tickets for some). Generation of
100k conversations / 1M messages takes well under a minute.

    .venv/bin/python bench/db_age.py [--conversations 100000 --messages 1000000]
                                     [--customers 300 --questions 4 --clients 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUESTIONS = ["when are you open?", "how long does shipping take", "what is your return policy",
             "what payment methods do you accept"]
TEXTS_IN = ["hi", "when are you open?", "where is my parcel", "I want to complain", "AB123456",
            "it arrived broken", "skip", "thanks!", "can I talk to a person", "how long does shipping take"]
TEXTS_OUT = ["Hello! How can I help?", "We are open Monday to Friday, 9:00-17:00.",
             "What is your order number? It looks like AB123456.", "What went wrong?",
             "Thanks. Your reference is C-1042.", "You are number 1 in the queue for Customer Care."]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the aged database ------------------------------------------------------------------------


async def _sample(db: Path, n: int) -> None:
    """``n`` conversations through the store's own API: what omnibot itself writes."""
    from bot.model import ConversationState, Inbound, Outbound
    from bot.storage import HandoffSpec, Ticket, open_store

    store = await open_store(f"sqlite:///{db}")
    try:
        for i in range(n):
            channel, ext = ("webchat", f"v_sample{i:08x}") if i % 3 else ("telegram", str(7000000 + i))
            for j in range(3):
                r = await store.record_inbound(Inbound(channel, ext, f"{ext}:{j}", TEXTS_IN[(i + j) % len(TEXTS_IN)]))
                spec = None
                if j == 2 and i % 10 == 0:
                    spec = HandoffSpec(team="support", reason="asked", priority=0, context={},
                                       message=lambda pos: Outbound(f"You are number {pos} in the queue."))
                out = await store.commit_turn(r.conversation.id, inbound_id=r.message.id,
                                              replies=[Outbound(TEXTS_OUT[(i + j) % len(TEXTS_OUT)])],
                                              flow_state={"flow": "faq", "slots": {}}, handoff=spec)
                for m in out:
                    await store.mark_sent(m.id, f"{channel}-{m.id}")
            h = await store.active_handoff(r.conversation.id)
            if h is not None:
                await store.transition_handoff(h.id, expected="queued", new="claimed", agent="Anna Smith")
                await store.transition_handoff(h.id, expected="claimed", new="resolved")
            if i % 30 == 0:
                now = datetime.now(timezone.utc)
                ref = f"C-{await store.next_sequence('reference', start=1001)}"
                await store.create_ticket(Ticket(reference=ref, customer_id=r.customer.id,
                                                 conversation_id=r.conversation.id, status="received",
                                                 category="shipping", severity="normal", department="care",
                                                 team="complaints", priority=1, created_at=now))
                await store.resolve_ticket(ref, at=now, agent="Anna Smith", result="refunded")
            await store.set_conversation_state(r.conversation.id, ConversationState.CLOSED)
    finally:
        await store.close()


def _bulk(db: Path, conversations: int, messages: int) -> None:
    """The rest, in the shapes above, with ``INSERT ... SELECT`` over a counter (one transaction)."""
    customers = max(1, conversations * 7 // 10)          # three in ten customers come back
    per_conv = max(1, messages // max(1, conversations))
    start = datetime.now(timezone.utc) - timedelta(days=365)
    span = 365 * 86400 - 3600                            # spread over the last year, oldest first
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.create_function("ts", 1, lambda s: (start + timedelta(seconds=s)).isoformat(), deterministic=True)
    ins = "', '".join(t.replace("'", "''") for t in TEXTS_IN)
    outs = "', '".join(t.replace("'", "''") for t in TEXTS_OUT)
    # A customer's address: web chat for seven in ten (a visitor id), else a Telegram chat id.
    addr = ("CASE WHEN {c} % 10 < 7 THEN 'webchat' ELSE 'telegram' END",
            "CASE WHEN {c} % 10 < 7 THEN printf('v_%016x%016x', {c}, {c} * 2654435761) "
            "ELSE CAST(100000000 + {c} AS TEXT) END")
    count = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) "
    steps = [
        ("customers", f"INSERT INTO customers(id, display_name, created_at, attributes) "
                      f"{count.format(customers)}SELECT printf('cus_bulk%012x', i), "
                      "CASE WHEN i % 4 = 0 THEN 'Customer ' || i ELSE '' END, "
                      f"ts(CAST(i AS REAL) * {span} / {conversations}), '{{}}' FROM n"),
        ("identities", f"INSERT INTO identities(channel, external_id, customer_id, created_at) "
                       f"{count.format(customers)}SELECT {addr[0].format(c='i')}, {addr[1].format(c='i')}, "
                       f"printf('cus_bulk%012x', i), ts(CAST(i AS REAL) * {span} / {conversations}) FROM n"),
        ("conversations", "INSERT INTO conversations(id, customer_id, channel, external_id, state, flow_state, "
                          f"created_at, updated_at) {count.format(conversations)}SELECT "
                          "printf('conv_bulk%012x', i), printf('cus_bulk%012x', (i - 1) % "
                          f"{customers} + 1), {addr[0].format(c=f'((i - 1) % {customers} + 1)')}, "
                          f"{addr[1].format(c=f'((i - 1) % {customers} + 1)')}, 'closed', "
                          "'{\"flow\": null, \"slots\": {}}', "
                          f"ts(CAST(i AS REAL) * {span} / {conversations}), "
                          f"ts(CAST(i AS REAL) * {span} / {conversations} + 900) FROM n"),
        ("messages", "INSERT INTO messages(conversation_id, direction, role, sender_name, text, channel, "
                     "platform_message_id, status, attempts, next_attempt_at, created_at, sent_at) "
                     f"{count.format(messages)}, m AS (SELECT i, (i - 1) / {per_conv} % {conversations} + 1 AS k, "
                     f"(i - 1) % {per_conv} AS j FROM n) SELECT printf('conv_bulk%012x', k), "
                     "CASE WHEN j % 2 = 0 THEN 'in' ELSE 'out' END, "
                     "CASE WHEN j % 2 = 0 THEN 'customer' ELSE 'bot' END, '', "
                     f"CASE WHEN j % 2 = 0 THEN json_extract(json_array('{ins}'), '$[' || (i % {len(TEXTS_IN)}) || ']') "
                     f"ELSE json_extract(json_array('{outs}'), '$[' || (i % {len(TEXTS_OUT)}) || ']') END, "
                     f"{addr[0].format(c=f'((k - 1) % {customers} + 1)')}, "
                     "printf('bulk:%d', i), CASE WHEN j % 2 = 0 THEN 'processed' ELSE 'sent' END, "
                     "j % 2, NULL, "
                     f"ts(CAST(k AS REAL) * {span} / {conversations} + j * 20), "
                     f"CASE WHEN j % 2 = 1 THEN ts(CAST(k AS REAL) * {span} / {conversations} + j * 20 + 1) END "
                     "FROM m"),
        ("handoffs", "INSERT INTO handoffs(id, conversation_id, state, team, reason, priority, agent, context, "
                     f"created_at, claimed_at, closed_at) {count.format(conversations)}SELECT "
                     "printf('ho_bulk%012x', i), printf('conv_bulk%012x', i), 'resolved', "
                     "CASE WHEN i % 3 = 0 THEN 'complaints' ELSE 'support' END, 'asked', i % 3, 'Anna Smith', '{}', "
                     f"ts(CAST(i AS REAL) * {span} / {conversations} + 60), "
                     f"ts(CAST(i AS REAL) * {span} / {conversations} + 300), "
                     f"ts(CAST(i AS REAL) * {span} / {conversations} + 900) FROM n WHERE i % 10 = 0"),
        ("tickets", "INSERT INTO tickets(reference, customer_id, conversation_id, status, category, severity, "
                    "department, team, priority, created_at, updated_at, resolved_at, resolved_by, result, csat) "
                    f"{count.format(conversations)}SELECT printf('C-%d', 100000 + i), "
                    f"printf('cus_bulk%012x', (i - 1) % {customers} + 1), printf('conv_bulk%012x', i), "
                    "'resolved', CASE i % 3 WHEN 0 THEN 'shipping' WHEN 1 THEN 'damaged' ELSE 'payment' END, "
                    "'normal', 'care', 'complaints', 1, "
                    f"ts(CAST(i AS REAL) * {span} / {conversations} + 120), "
                    f"ts(CAST(i AS REAL) * {span} / {conversations} + 7200), "
                    f"ts(CAST(i AS REAL) * {span} / {conversations} + 7200), 'Anna Smith', 'refunded', "
                    "i % 5 + 1 FROM n WHERE i % 30 = 0"),
    ]
    con.execute("BEGIN")
    for table, sql in steps:
        t0 = time.perf_counter()
        n = con.execute(sql).rowcount
        log(f"  {table:<14} {n:>9,} rows in {time.perf_counter() - t0:5.1f} s")
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def make_aged(db: Path, conversations: int, messages: int, sample: int = 200) -> None:
    t0 = time.perf_counter()
    sample = min(sample, conversations)
    log(f"[aged] {sample} conversations through the store's API ...")
    asyncio.run(_sample(db, sample))
    log(f"[aged] {conversations - sample:,} conversations / {messages - 6 * sample:,} messages in bulk ...")
    _bulk(db, conversations - sample, max(0, messages - 6 * sample))
    con = sqlite3.connect(db)
    counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("conversations", "messages", "customers", "handoffs", "tickets")}
    con.close()
    log(f"[aged] {', '.join(f'{v:,} {k}' for k, v in counts.items())}; {db.stat().st_size / 2**20:.0f} MB; "
        f"{time.perf_counter() - t0:.0f} s")


# -- the server, in its own process -------------------------------------------------------------


def write_config(tmp: Path, db: Path) -> Path:
    cfg = tmp / f"{db.stem}.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "sqlite:///{db}", media_dir: "{tmp / 'media'}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
nlu: {{matcher: lexical}}
webchat: {{messages_per_minute: 1000000}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
logging: {{level: WARNING}}
""", encoding="utf-8")
    return cfg


def serve(config_path: str) -> None:
    """``--serve``: the app from build_app on a free port; prints ``ready PORT``, then answers
    each ``cpu`` line on stdin with this process's CPU seconds; stops at end of input."""
    from aiohttp import web

    from bot.app import build_app
    from bot.config import load_config
    from bot.logs import setup_logging

    config = load_config(config_path)
    setup_logging(config.logging.level)
    sys.setswitchinterval(0.0005)     # as `omnibot run` does

    async def main() -> None:
        app = await build_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def commands() -> None:
            for line in sys.stdin:
                if line.strip() == "cpu":
                    print(f"cpu {time.process_time():.6f}", flush=True)
            loop.call_soon_threadsafe(done.set)

        print(f"ready {port}", flush=True)
        threading.Thread(target=commands, daemon=True).start()
        await done.wait()
        await runner.cleanup()

    asyncio.run(main())


class Server:
    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(config)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("ready "):
            raise SystemExit(f"omnibot did not start (exit {self.proc.wait()})")
        self.port = int(line.split()[1])

    def cpu(self) -> float:
        self.proc.stdin.write("cpu\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return float(self.proc.stdout.readline().split()[1])  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


# -- the customers ------------------------------------------------------------------------------


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        f = await asyncio.wait_for(ws.receive_json(), 30)
        if f["type"] == kind:
            return f
        if f["type"] == "error":
            raise RuntimeError(f"error frame: {f}")


async def customer(http: Any, url: str, questions: int, lat: dict[str, list[float]]) -> None:
    async with http.ws_connect(url) as ws:
        t0 = time.perf_counter()
        await ws.send_json({"type": "hello", "token": None})
        welcome = await _until(ws, "welcome")
        lat["hello"].append(time.perf_counter() - t0)
        last = 0
        for i in range(questions):
            t0 = time.perf_counter()
            await ws.send_json({"type": "message", "client_id": str(uuid.uuid4()),
                                "text": QUESTIONS[i % len(QUESTIONS)]})
            reply = await _until(ws, "message")
            lat["message"].append(time.perf_counter() - t0)
            last = reply["message"]["id"]
    async with http.ws_connect(url) as ws:          # a page reload: resume the session
        t0 = time.perf_counter()
        await ws.send_json({"type": "hello", "token": welcome["token"], "last_id": last})
        await _until(ws, "welcome")
        lat["resume"].append(time.perf_counter() - t0)


async def drive(url: str, n: int, questions: int, clients: int) -> dict[str, list[float]]:
    import aiohttp

    lat: dict[str, list[float]] = {"hello": [], "message": [], "resume": []}
    todo = iter(range(n))
    async with aiohttp.ClientSession() as http:
        async def worker() -> None:
            for _ in todo:
                await customer(http, url, questions, lat)
        await asyncio.gather(*(worker() for _ in range(clients)))
    return lat


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


def measure(name: str, db: Path, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    server = Server(write_config(tmp, db))
    url = f"http://127.0.0.1:{server.port}/webchat/ws"
    try:
        log(f"[{name}] warm-up: {args.warmup} customers ...")
        asyncio.run(drive(url, args.warmup, args.questions, args.clients))
        time.sleep(0.5)
        log(f"[{name}] {args.customers} customers x (hello + {args.questions} questions + resume), "
            f"{args.clients} at a time ...")
        cpu0, t0 = server.cpu(), time.perf_counter()
        lat = asyncio.run(drive(url, args.customers, args.questions, args.clients))
        time.sleep(0.5)                              # the last sent marks land
        cpu = server.cpu() - cpu0
        wall = time.perf_counter() - t0
    finally:
        server.stop()
    msgs = len(lat["message"])
    r = {"messages": msgs, "cpu_ms_per_message": cpu / msgs * 1000, "cpu_s": cpu, "wall_s": wall,
         "p50_ms": pct(lat["message"], 50), "p95_ms": pct(lat["message"], 95),
         "hello_p95_ms": pct(lat["hello"], 95), "resume_p95_ms": pct(lat["resume"], 95)}
    log(f"[{name}] {r['cpu_ms_per_message']:.2f} ms CPU per message; p95 {r['p95_ms']:.1f} ms")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=100_000, help="in the aged database (default 100000)")
    ap.add_argument("--messages", type=int, default=1_000_000, help="in the aged database (default 1000000)")
    ap.add_argument("--customers", type=int, default=300, help="measured web-chat customers per database")
    ap.add_argument("--questions", type=int, default=4, help="messages per customer (default 4)")
    ap.add_argument("--clients", type=int, default=4, help="customers at a time (default 4)")
    ap.add_argument("--warmup", type=int, default=40, help="unmeasured customers first (default 40)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate empty and aged this many times, report the medians (default 3)")
    ap.add_argument("--keep", metavar="DIR", help="generate (or reuse) the databases in DIR")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return

    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        aged = tmp / f"aged-{args.conversations}-{args.messages}.sqlite3"
        if not aged.exists():
            make_aged(aged, args.conversations, args.messages)
        else:
            log(f"[aged] reusing {aged}")
        work = tmp / "run"
        rounds: dict[str, list[dict[str, float]]] = {"empty": [], "aged": []}
        for i in range(args.rounds):
            for name, source in (("empty", None), ("aged", aged)):
                # each run on a fresh copy, so runs don't age each other
                log(f"round {i + 1}/{args.rounds}")
                work.mkdir(exist_ok=True)
                db = work / f"{name}.sqlite3"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                if source is not None:
                    src, dst = sqlite3.connect(source), sqlite3.connect(db)
                    src.backup(dst)
                    src.close()
                    dst.close()
                rounds[name].append(measure(name, db, tmp, args))
        # the median round of each figure: a busy neighbour on the machine hits one round, not all
        results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rounds.items()}

    e, a = results["empty"], results["aged"]
    print(f"\nper-message server CPU and latency, web chat (hello + {args.questions} questions + resume per "
          f"customer), {args.customers} customers, {args.clients} at a time, nlu.matcher lexical, "
          f"{os.cpu_count()} CPUs; medians of {args.rounds} rounds")
    for name, r in results.items():
        label = "empty" if name == "empty" else f"{args.conversations // 1000}k conv"
        print(f"  {label:<10} CPU {r['cpu_ms_per_message']:6.2f} ms/message   message p50 {r['p50_ms']:6.1f} ms"
              f"  p95 {r['p95_ms']:6.1f} ms   hello p95 {r['hello_p95_ms']:6.1f} ms   resume p95 "
              f"{r['resume_p95_ms']:6.1f} ms   ({r['messages']} messages)")
    ratio = a["cpu_ms_per_message"] / e["cpu_ms_per_message"]
    print(f"  aged / empty: CPU per message x{ratio:.2f} (target <= 1.2), message p95 x{a['p95_ms'] / e['p95_ms']:.2f}, "
          f"hello p95 x{a['hello_p95_ms'] / e['hello_p95_ms']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "serve"},
                                               "rounds": rounds, "results": results, "cpu_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
