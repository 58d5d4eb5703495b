"""CPU per message of the path every message takes, in one process, without sockets: an A/B tool.

bench/capacity.py measures the whole server under load, which on a shared, loaded machine
varies by +-20 % from run to run (how much the server batches depends on how busy the
machine is). This measures less but steadier: the real services (``bot.app.build_services``:
storage, runtime, flow engine with the demo flows, delivery) with the web-chat connector
replaced by one that answers in memory; ``--clients`` customers each hand a message to
``runtime.accept`` as the web chat does and wait for its reply to be "sent", until
``--messages`` are answered. The figure is process CPU (every thread: SQLite's too) per
answered message over the measured part, after a warm-up.

    python bench/hotpath.py                       # this tree, once
    python bench/hotpath.py --ab dd05039 HEAD     # two commits, interleaved A B B A ..., medians
    python bench/hotpath.py --matcher learned --warmup 15 --ab main HEAD     # the learned NLU

With ``--ab`` each commit is exported (``git archive``) and this script runs inside it, so the
code measured is that commit's; the harness is this file. Every text is new (an order number
appended), as ``bench/capacity.py`` does. ``--channel whatsapp`` adds the WhatsApp connector's
store operations (the 24-hour window kept per message, read per reply, the send recorded: with
the sent mark where the tree's connector has ``record_sent``), as the tree's connector does
them; no HTTP. A single run also prints each thread's CPU per message (the event loop, SQLite's
connection thread, ...; from /proc/self/task), where an A/B of the process total does not say
which side of a hand-off a change moved. ``--statuses`` (with ``--channel whatsapp``) also applies,
after each reply's record, the three statuses Meta sends for it (sent, delivered, read), as the
tree's connector applies them (``whatsapp_note_status`` where the tree has it, else
``whatsapp_apply_status``), each in its own task as each arrives in its own webhook.

``--storage pg`` runs the same on PostgreSQL (one instance, clustering on, as ``omnibot run``
does with a shared store): a throwaway cluster started here as tests/pg.py starts it (Debian's
initdb/pg_ctl, 127.0.0.1, a free port, durability off; stopped by its pid at the end; with
``--ab`` one cluster for both sides, a fresh database per run). The CPU figure is then omnibot's
process plus the PostgreSQL server's (the postmaster and every process whose parent it is), as
bench/capacity.py counts it, and ``--count`` counts round trips: every asyncpg call on a
connection (a statement, or several in one simple-protocol string such as ``BEGIN; SELECT
pg_advisory_xact_lock(...)``) plus every statement prepared because it was not in asyncpg's
per-connection cache; exact where the CPU figure is noisy.

    python bench/hotpath.py --storage pg --count            # round trips per message, by statement
    python bench/hotpath.py --storage pg --ab main HEAD --count
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
QUESTIONS = ["when are you open?", "how long does shipping take", "what is your return policy",
             "what payment methods do you accept"]


class MemoryChannel:
    """Stands in for the web chat's ``send``: the reply reaches the waiting customer at once."""

    name = "webchat"

    def __init__(self, store: Any = None, statuses: bool = False) -> None:
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.sent = 0
        self.store = store          # WhatsApp-like: the window read and the send recorded (store ops)
        self.statuses = statuses and store is not None
        self.tasks: set[asyncio.Task[None]] = set()
        if store is not None and hasattr(store, "whatsapp_mark_sent_next"):
            # the send recorded with its sent mark, as the tree's WhatsApp connector does (record_sent)
            self.record_sent = self._record_sent

    async def _record_sent(self, item: Any, wamid: str, *, now: float) -> Any:
        res = await self.store.whatsapp_mark_sent_next(item.message.id, [wamid], conversation_id=
                                                       item.message.conversation_id, now=now)
        if self.statuses:
            for st in ("sent", "delivered", "read"):
                task = asyncio.create_task(self._status(wamid, st))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return res

    async def _status(self, wamid: str, status: str) -> None:
        note = getattr(self.store, "whatsapp_note_status", None)     # a tree since it came
        if note is not None:
            await note(wamid, status)
        else:
            await self.store.whatsapp_apply_status(wamid, status)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, item: Any) -> str:
        self.sent += 1
        if self.store is not None:
            await self.store.whatsapp_last_inbound(item.external_id)
            if not hasattr(self, "record_sent"):     # a tree before the record moved into the sent mark
                await self.store.whatsapp_note_sent([f"wamid.{item.message.id}"], item.message.id)
        fut = self.waiting.pop(item.external_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        return f"mem-{item.message.id}"


class RoundTrips:
    """Counts asyncpg's round trips while ``on``: each call on a connection, and each statement
    prepared because asyncpg's per-connection statement cache did not have it."""

    METHODS = ("execute", "fetch", "fetchrow", "fetchval")

    def __init__(self) -> None:
        self.on = False
        self.calls = 0
        self.prepares = 0
        self.by_statement: dict[str, int] = {}

    def install(self) -> None:
        from asyncpg.connection import Connection

        counter = self
        for name in self.METHODS:
            original = getattr(Connection, name)

            def wrapped(con: Any, query: str, *a: Any, _original: Any = original, **kw: Any) -> Any:
                if counter.on:
                    counter.calls += 1
                    key = re.sub(r"-?\d{6,}", "N", " ".join(query.split()))[:70]   # lock keys alike
                    counter.by_statement[key] = counter.by_statement.get(key, 0) + 1
                return _original(con, query, *a, **kw)
            setattr(Connection, name, wrapped)
        get_statement = Connection._get_statement

        async def counted_prepare(con: Any, query: str, timeout: Any, **kw: Any) -> Any:
            if counter.on and kw.get("use_cache", True):
                key = (query, kw.get("record_class") or con._protocol.get_record_class(),
                       kw.get("ignore_custom_codec", False))
                if con._stmt_cache.get(key) is None:
                    counter.prepares += 1
            return await get_statement(con, query, timeout, **kw)
        Connection._get_statement = counted_prepare  # type: ignore[method-assign]


def pg_cpu(postmaster: int | None) -> float:
    """CPU seconds so far of a PostgreSQL server: the postmaster and every process whose parent it is
    (a backend that ended is lost: the pool keeps its connections for the whole run)."""
    if not postmaster:
        return 0.0
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(d) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def run_once(args: argparse.Namespace) -> dict[str, float]:
    sys.path.insert(0, os.getcwd())
    sys.setswitchinterval(0.0005)     # as `omnibot run` sets it (bot/cli.py)
    from bot.app import build_services
    from bot.config import load_config
    from bot.model import Inbound

    with tempfile.TemporaryDirectory(prefix="omnibot-hotpath-") as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        cfg_path.write_text(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "{args.pg_url or f"sqlite:///{Path(tmp) / 'o.sqlite3'}"}"}}
flows: {{path: "{Path(os.getcwd()) / 'flows' / 'demo'}"}}
nlu: {{matcher: {args.matcher}}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
logging: {{level: WARNING}}
""")
        config = load_config(str(cfg_path))
        services = await build_services(config)
        channel = MemoryChannel(services.store if args.channel == "whatsapp" else None, args.statuses)
        new_window = "heard_at" in getattr(Inbound, "__dataclass_fields__", {})
        services.connectors.clear()
        services.connectors["webchat"] = channel
        await services.runtime.start()
        await services.delivery.start()
        try:
            from bot.heap import settle    # as `omnibot run` does once the server is built (bot/cli.py)
        except ImportError:                # a commit from before it
            pass
        else:
            settle()
        answered = 0
        counting = False
        done = asyncio.Event()
        ops = 0
        statements: list[str] = []
        trips = RoundTrips()
        if args.count and args.pg_url:
            trips.install()
        if args.count:
            # store operations (each a hand-off to SQLite's thread) and the SQL statements they run
            call = services.store._call

            async def counted(op: Any, a: Any, kw: Any) -> Any:
                nonlocal ops
                ops += counting
                return await call(op, a, kw)

            services.store._call = counted  # type: ignore[method-assign]
            if not args.pg_url:
                await services.store.db.set_trace_callback(lambda sql: counting and statements.append(sql[:8]))

        failures: list[str] = []

        async def customer(n: int) -> None:
            try:
                await ask(n)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:    # noqa: BLE001 - a message not answered ends the run, loudly
                failures.append(f"customer {n}: {type(exc).__name__}: {exc}")
                done.set()

        async def ask(n: int) -> None:
            nonlocal answered
            i = 0
            while not done.is_set():
                ext = f"v{n}"
                fut = asyncio.get_running_loop().create_future()
                channel.waiting[ext] = fut
                extra: dict[str, Any] = {}
                if args.channel == "whatsapp":
                    if new_window:
                        extra["heard_at"] = int(time.time())
                    else:                   # as the WhatsApp connector did before Inbound.heard_at
                        await services.store.whatsapp_saw_inbound(ext, int(time.time()))
                await asyncio.wait_for(services.runtime.accept(Inbound(
                    channel="webchat", external_id=ext, platform_message_id=f"{ext}:{i}",
                    text=f"{QUESTIONS[(n + i) % len(QUESTIONS)]} order {n * 100000 + i}", **extra)), 30)
                i += 1
                await asyncio.wait_for(fut, 30)
                if counting:
                    answered += 1
                    if answered >= args.messages:
                        done.set()

        tasks = [asyncio.create_task(customer(n)) for n in range(args.clients)]
        if args.pg_url:
            # statistics as a live database has them, half-way through the warm-up (see
            # bench/cluster.py drive: cached generic plans made on near-empty tables)
            await asyncio.sleep(args.warmup / 2)
            sys.path.insert(0, str(HERE.parent))
            from cluster import analyze
            await analyze(args.pg_url)
            await asyncio.sleep(args.warmup / 2)
        else:
            await asyncio.sleep(args.warmup)
        counting = trips.on = True
        th0 = thread_cpu()
        c0, t0, p0 = time.process_time(), time.perf_counter(), pg_cpu(args.postmaster)
        await done.wait()
        c1, t1, p1 = time.process_time(), time.perf_counter(), pg_cpu(args.postmaster)
        trips.on = False
        th1 = thread_cpu()
        n = answered
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, *channel.tasks, return_exceptions=True)
        await services.delivery.stop()
        await services.runtime.stop()
        await services.store.close()
        if failures:
            raise SystemExit(f"{len(failures)} customer(s) not answered; the first: {failures[0]}")
        threads: dict[str, float] = {}
        for tid, (name, cpu) in th1.items():
            if tid in th0 and cpu > th0[tid][1]:
                key = "event loop" if tid == os.getpid() else name
                threads[key] = threads.get(key, 0.0) + (cpu - th0[tid][1]) * 1000 / n
        r = {"cpu_ms_per_msg": (c1 - c0 + p1 - p0) * 1000 / n, "msg_per_s": n / (t1 - t0), "messages": n,
             "threads_ms_per_msg": threads}
        if args.pg_url:
            r["omnibot_cpu_ms_per_msg"] = (c1 - c0) * 1000 / n
            r["pg_cpu_ms_per_msg"] = (p1 - p0) * 1000 / n
        if args.count and args.pg_url:
            r["ops_per_msg"] = ops / n
            r["round_trips_per_msg"] = (trips.calls + trips.prepares) / n
            r["prepares_per_msg"] = trips.prepares / n
            r["by_statement"] = {k: v / n for k, v in sorted(trips.by_statement.items(), key=lambda kv: -kv[1])}
        elif args.count:
            r["ops_per_msg"] = ops / n
            r["commits_per_msg"] = sum(1 for x in statements if x.startswith("COMMIT")) / n
            r["statements_per_msg"] = sum(1 for x in statements if not x.startswith(("BEGIN", "COMMIT", "SAVEPOI",
                                                                                        "RELEASE", "ROLLBAC"))) / n
        return r


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each thread of this process so far, with its name (Linux:
    /proc/self/task; elsewhere nothing)."""
    out: dict[int, tuple[str, float]] = {}
    names = {t.native_id: t.name for t in threading.enumerate()}   # aiosqlite's: "Thread-1 (_connection_...)"
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue          # the thread ended
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (names.get(int(tid), name), (int(fields[11]) + int(fields[12])) / tick)
    return out


def export(rev: str, where: Path) -> Path:
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def one(tree: Path, args: argparse.Namespace, pg: Any = None) -> dict[str, float]:
    cmd = [sys.executable, str(HERE), "--json", "--messages", str(args.messages), "--clients", str(args.clients),
           "--warmup", str(args.warmup), "--channel", args.channel, "--matcher", args.matcher] + (
               ["--count"] if args.count else []) + (["--statuses"] if args.statuses else [])
    dbname = None
    if pg is not None:
        from pg import create_database
        dbname = create_database(pg)
        cmd += ["--pg-url", pg.dsn(dbname), "--postmaster", str(pg.pid)]
    try:
        out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    finally:
        if dbname is not None:
            from pg import drop_database
            drop_database(pg, dbname)
    if out.returncode != 0:
        raise SystemExit(f"run in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def pg_cluster(storage: str) -> Iterator[Any]:
    """With ``storage`` pg, a throwaway PostgreSQL cluster (tests/pg.py), stopped by its pid at the end."""
    if storage != "pg":
        yield None
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg import start_cluster
    print("[pg] starting a throwaway PostgreSQL cluster ...", file=sys.stderr, flush=True)
    server = start_cluster()
    try:
        print(f"[pg] {server.version} on {server.host}:{server.port}", file=sys.stderr, flush=True)
        yield server
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000, help="answered messages measured per run (default 3000)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent customers (default 64)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    ap.add_argument("--channel", choices=("webchat", "whatsapp"), default="webchat",
                    help="whatsapp: inbound carries WhatsApp's window time (Inbound.heard_at)")
    ap.add_argument("--matcher", choices=("lexical", "learned"), default="lexical",
                    help="nlu.matcher (default lexical); learned: give --warmup 15 or more, so that the "
                         "models any message needs (the multilingual one loads on first use) are loaded")
    ap.add_argument("--statuses", action="store_true",
                    help="with --channel whatsapp: Meta's sent, delivered and read statuses for every reply, "
                         "applied as the tree's connector applies them")
    ap.add_argument("--ab", nargs=2, metavar=("A", "B"), help="compare two commits, interleaved")
    ap.add_argument("--rounds", type=int, default=4, help="with --ab: runs per side (default 4)")
    ap.add_argument("--json", action="store_true", help="print one JSON line (used by --ab)")
    ap.add_argument("--storage", choices=("sqlite", "pg"), default="sqlite",
                    help="sqlite (default), or pg: PostgreSQL, one instance, on a throwaway cluster started "
                         "here (Debian's initdb/pg_ctl; stopped at the end); CPU is omnibot's plus the server's")
    ap.add_argument("--pg-url", help=argparse.SUPPRESS)        # a run inside --ab / --storage pg: its database
    ap.add_argument("--postmaster", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", action="store_true",
                    help="also count, per answered message, store operations, SQL statements (SQLite's trace; "
                         "without BEGIN/COMMIT/savepoints) and commits, or with --storage pg round trips "
                         "(asyncpg calls plus statements prepared; a single run lists them by statement): "
                         "exact where CPU time is noisy, but counting costs CPU, so the CPU figures of such a "
                         "run are not comparable with others")
    args = ap.parse_args()
    if not args.ab and args.storage == "pg" and not args.pg_url:
        with pg_cluster("pg") as pg:       # this process measures, in a child of its own (as --ab does)
            r = one(ROOT, args, pg)
        if args.json:
            print(json.dumps(r))
        else:
            _show(r, args)
        return 0
    if not args.ab:
        r = asyncio.run(run_once(args))
        if args.json:
            print(json.dumps(r))
        else:
            _show(r, args)
        return 0
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    counts: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="omnibot-hotpath-ab-") as tmp, pg_cluster(args.storage) as pg:
        trees = {"A": export(args.ab[0], Path(tmp) / "A"), "B": export(args.ab[1], Path(tmp) / "B")}
        for i in range(args.rounds * 2):
            side = "AB"[(i + i // 2) % 2]          # A B B A A B ...
            r = one(trees[side], args, pg)
            cpu[side].append(r["cpu_ms_per_msg"])
            counts[side].append(r)
            print(f"{side}: {r['cpu_ms_per_msg']:.3f} ms CPU/msg, {r['msg_per_s']:.0f} msg/s"
                  + (_counts(r) if args.count else ""), flush=True)
    a, b = statistics.median(cpu["A"]), statistics.median(cpu["B"])
    print(f"median A {a:.3f}, B {b:.3f} ms CPU/msg; B/A {b / a:.3f} (min A {min(cpu['A']):.3f}, "
          f"min B {min(cpu['B']):.3f}, B/A of mins {min(cpu['B']) / min(cpu['A']):.3f})")
    if args.count:
        for side in "AB":
            keys = [k for k in ("ops_per_msg", "statements_per_msg", "commits_per_msg", "round_trips_per_msg",
                                "prepares_per_msg") if k in counts[side][0]]
            med = {k: statistics.median(r[k] for r in counts[side]) for k in keys}
            print(f"median {side}" + _counts(med))
    return 0


def _show(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"{r['cpu_ms_per_msg']:.3f} ms CPU/msg, {r['msg_per_s']:.0f} msg/s ({r['messages']} messages)"
          + (f" (omnibot {r['omnibot_cpu_ms_per_msg']:.3f} + PostgreSQL {r['pg_cpu_ms_per_msg']:.3f})"
             if "pg_cpu_ms_per_msg" in r else "") + (_counts(r) if args.count else ""))
    if r.get("by_statement"):
        print("round trips per message, by statement (asyncpg calls; prepares not included):")
        for sql, per in r["by_statement"].items():
            if per >= 0.005:
                print(f"  {per:6.2f}  {sql}")
    if r["threads_ms_per_msg"]:
        print("by thread (ms CPU/msg; omnibot's process): " + ", ".join(
            f"{name} {ms:.3f}" for name, ms in sorted(r["threads_ms_per_msg"].items(), key=lambda kv: -kv[1])
            if ms >= 0.001))


def _counts(r: dict[str, Any]) -> str:
    if "round_trips_per_msg" in r:
        return (f"; per message {r['ops_per_msg']:.2f} store operations, {r['round_trips_per_msg']:.2f} round trips "
                f"({r['prepares_per_msg']:.2f} of them prepares)")
    return (f"; per message {r['ops_per_msg']:.2f} store operations, {r['statements_per_msg']:.2f} SQL statements, "
            f"{r['commits_per_msg']:.2f} commits")


if __name__ == "__main__":
    sys.exit(main())
