"""Web-chat load against SQLite and against 1, 2 and 3 `omnibot run` instances on one PostgreSQL.

The same load as bench/webchat_load.py (N concurrent customers on real WebSockets, each asking
routine FAQ questions one after another), for the same time, against four set-ups in one run:

    sqlite      SQLite (storage.url sqlite:///<tmp>), one instance
    pg1         PostgreSQL, one instance
    pg2         PostgreSQL, two instances
    pg3         PostgreSQL, three instances

With several instances the customers are spread round-robin over them, as a load balancer
without sticky sessions would. PostgreSQL is a throwaway cluster started here with tests/pg.py
(initdb/pg_ctl, as the ``postgres`` OS user when root, 127.0.0.1, a free port, durability off),
with a fresh database per scenario; it is stopped at the end by the pid this script started.
The intent matcher is the lexical one by default (``nlu: {matcher: lexical}``) so that storage
and coordination are measured, not the sentence model; ``--matcher learned`` uses the model.

Per scenario, over the measured window (after ``--warmup`` seconds of the same load):
messages/s, p50/p99 round-trip latency (send -> the bot's answer), and server CPU per answered
message from /proc/<pid>/stat utime+stime deltas, (a) of the omnibot processes only and (b) of
omnibot plus the PostgreSQL server (the postmaster and every process whose parent it is).
SQLite does its database work inside omnibot, so (b) is the fair comparison. For PostgreSQL also
committed transactions per message (pg_stat_database.xact_commit) and, with pg_stat_statements
(loaded when the server has it), statements per message and the costliest statements.

Correctness is checked while measuring: every question must be acknowledged and answered
exactly once (answers counted per customer by message id, plus a short grace period after the
load for late or duplicate answers); otherwise an error is printed and the exit status is 1.

Note: all instances, PostgreSQL and the load generator share this machine's cores; with N
instances on 2 cores, more instances add coordination cost without adding CPU.

    python bench/cluster.py [--clients 64] [--seconds 10] [--warmup 3] [--matcher lexical]
                            [--scenarios sqlite,pg1,pg2,pg3] [--json out.json] [--top 12] [--unique]

``--unique`` appends an order number to every question, so that every message is a text never
seen before: the NLU, language and urgency caches then never help (a worst case; by default the
customers repeat 4 FAQ questions, so after the warm-up every text is a repeat).

``OMNIBOT_BENCH_PROFILE=DIR`` runs the first instance of every scenario under cProfile and
writes DIR/<scenario>.prof (load it with ``python -m pstats``); this slows that instance down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from webchat_load import QUESTIONS, free_port, pct  # noqa: E402

SCENARIOS = {"sqlite": ("sqlite", 1), "pg1": ("pg", 1), "pg2": ("pg", 2), "pg3": ("pg", 3)}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- CPU accounting from /proc ----------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime in ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()       # the command name may contain spaces
    return int(rest[1]), int(rest[11]) + int(rest[12])


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    return {p: s[1] for p in pids if (s := _stat(p)) is not None}


def pg_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, walwriter, checkpointer, autovacuum ...)."""
    out = [postmaster]
    for d in os.listdir("/proc"):
        if d.isdigit() and (s := _stat(int(d))) is not None and s[0] == postmaster:
            out.append(int(d))
    return out


def cpu_delta_s(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds between two samples; a process new in ``after`` counts from zero."""
    return sum(t - before.get(p, 0) for p, t in after.items()) / CLK_TCK


# -- omnibot instances ------------------------------------------------------------------------

class Instance:
    """An `omnibot run` process; its stderr is read on a thread (a full pipe would stall it)."""

    def __init__(self, cfg: Path, port: int, profile: Path | None = None,
                 entry: tuple[str, ...] = ("-m", "bot.cli")) -> None:
        cmd = [sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        cmd += [*entry, "run", "-c", str(cfg), "--port", str(port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._started = threading.Event()
        self._ok = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if not self._ok and re.search(r"web chat:\s+http://", line):
                self._ok = True
                self._started.set()
        self._started.set()

    def wait_started(self, timeout: float = 120) -> None:
        if not self._started.wait(timeout) or not self._ok:
            self.stop()
            raise SystemExit("omnibot did not start:\n" + "".join(self.lines[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if "cProfile" in self.proc.args else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_config(path: Path, storage_url: str, matcher: str, extra: str = "") -> Path:
    """An `omnibot run` config: demo flows, no rate limit, WARNING logs; ``extra`` YAML appended."""
    path.write_text(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "{storage_url}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
nlu: {{matcher: {matcher}}}
webchat: {{messages_per_minute: 1000000}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
logging: {{level: WARNING}}
""" + extra)
    return path


# -- the load ---------------------------------------------------------------------------------

@dataclass
class Load:
    window: tuple[float, float]                      # measured window (monotonic)
    latencies: list[float] = field(default_factory=list)
    answered_in_window: int = 0
    asked: int = 0
    problems: list[str] = field(default_factory=list)

    def answered(self, t0: float) -> None:
        """The question sent at ``time.perf_counter()`` ``t0`` is answered now: counted if now is
        in the measured window."""
        if self.window[0] <= time.monotonic() <= self.window[1]:
            self.latencies.append(time.perf_counter() - t0)
            self.answered_in_window += 1


def question(n: int, i: int, unique: bool) -> str:
    """Customer ``n``'s ``i``-th question: an FAQ text, made new with an order number if ``unique``."""
    q = QUESTIONS[i % len(QUESTIONS)]
    return f"{q} order {n * 100000 + i}" if unique else q


async def customer(n: int, url: str, stop_at: float, load: Load, unique: bool = False) -> None:
    """Ask questions one after another until ``stop_at``: each must get one ack and one answer.

    ``unique``: every question is a text never asked before (an order number appended), so no
    cache of earlier answers can help."""
    acked: set[int] = set()
    answers: dict[int, int] = {}                    # outbound message id -> frames seen
    asked = 0
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url + "/webchat/ws") as ws:
            await ws.send_json({"type": "hello", "token": None})
            while (await asyncio.wait_for(ws.receive_json(), 30))["type"] != "welcome":
                pass

            def take(f: dict[str, Any], cid: str | None) -> tuple[bool, bool]:
                """(ack for cid seen, new answer seen)"""
                if f["type"] == "ack" and f.get("client_id") == cid:
                    acked.add(f["id"])
                    return True, False
                if f["type"] == "error":
                    load.problems.append(f"customer {n}: error frame {f.get('code')}: {f.get('message')}")
                    return f.get("client_id") == cid, False
                if f["type"] == "message" and f["message"]["direction"] == "out":
                    mid = f["message"]["id"]
                    answers[mid] = answers.get(mid, 0) + 1
                    return False, answers[mid] == 1
                return False, False

            i = n
            while time.monotonic() < stop_at:
                q = question(n, i, unique)
                i += 1
                cid = str(uuid.uuid4())
                t0 = time.perf_counter()
                await ws.send_json({"type": "message", "client_id": cid, "text": q})
                asked += 1
                got_ack = got_answer = False
                try:
                    while not (got_ack and got_answer):
                        a, b = take(await asyncio.wait_for(ws.receive_json(), 30), cid)
                        got_ack |= a
                        got_answer |= b
                except asyncio.TimeoutError:
                    load.problems.append(f"customer {n}: no {'answer' if got_ack else 'ack'} in 30 s to {q!r}")
                    break
                load.answered(t0)
            # grace period: late or duplicate answers show up here
            try:
                while True:
                    take(await asyncio.wait_for(ws.receive_json(), 1.0), None)
            except (asyncio.TimeoutError, TypeError):
                pass
    load.asked += asked
    dup_frames = sum(c - 1 for c in answers.values())
    if len(acked) != asked or len(answers) != asked or dup_frames:
        load.problems.append(f"customer {n}: asked {asked}, acked {len(acked)}, answered {len(answers)} "
                             f"distinct answers, {dup_frames} duplicate answer frames")


# -- PostgreSQL statistics --------------------------------------------------------------------

async def analyze(dsn: str) -> None:
    """``ANALYZE`` the database: the planner's statistics as autovacuum keeps them on a live one."""
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        await con.execute("ANALYZE")
    finally:
        await con.close()


async def pg_snapshot(dsn: str, dbname: str, statements: bool) -> dict[str, Any]:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        await con.execute("SELECT pg_stat_clear_snapshot()")
        row = await con.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname=$1",
                                 dbname)
        snap: dict[str, Any] = {"xact_commit": row["xact_commit"], "xact_rollback": row["xact_rollback"]}
        if statements:
            rows = await con.fetch(
                "SELECT queryid, query, calls, total_exec_time FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1", dbname)
            snap["statements"] = {r["queryid"]: (r["query"], r["calls"], r["total_exec_time"]) for r in rows}
        return snap
    finally:
        await con.close()


def statements_delta(a: dict[int, Any], b: dict[int, Any]) -> list[tuple[str, int, float]]:
    out = []
    for qid, (query, calls, ms) in b.items():
        c0, m0 = a.get(qid, ("", 0, 0.0))[1:]
        if calls - c0 > 0:
            out.append((" ".join(query.split()), calls - c0, ms - m0))
    return sorted(out, key=lambda x: -x[1])


# -- one scenario -----------------------------------------------------------------------------

async def drive(urls: list[str], args: argparse.Namespace, server_pids: list[int],
                postmaster: int | None, pg: tuple[str, str] | None, statements: bool,
                customer_fn: Any = customer) -> dict[str, Any]:
    """Run ``args.clients`` customers (``customer_fn(n, url, stop_at, load)``, web chat by default)
    for ``args.warmup`` + ``args.seconds``; the figures of the measured window."""
    start = time.monotonic()
    w0 = start + args.warmup
    w1 = w0 + args.seconds
    load = Load(window=(w0, w1))
    fn = customer_fn
    if customer_fn is customer and getattr(args, "unique", False):
        async def fn(n: int, url: str, stop_at: float, load: Load) -> None:
            await customer(n, url, stop_at, load, True)
    tasks = [asyncio.create_task(fn(n, urls[n % len(urls)], w1, load)) for n in range(args.clients)]

    async def sample() -> tuple[dict[int, int], dict[int, int], float, dict[str, Any] | None]:
        omni = cpu_ticks(server_pids)
        pgt = cpu_ticks(pg_pids(postmaster)) if postmaster else {}
        snap = await pg_snapshot(*pg, statements) if pg else None
        return omni, pgt, os.times().user + os.times().system, snap

    if pg:
        # Half-way through the warm-up, statistics as a live database has them (autovacuum analyzes
        # a table once a tenth of it changed): the server's cached generic plans of the hot
        # statements were made on tables with a few rows and no statistics, and some read whole
        # tables for the rest of the run (bench/pg_statements.py shows it: 1,300-2,100 buffers per
        # turn instead of ~50 in some runs, not in others). ANALYZE invalidates them.
        await asyncio.sleep(max(0.0, start + args.warmup / 2 - time.monotonic()))
        await analyze(pg[0])
    await asyncio.sleep(max(0.0, w0 - time.monotonic()))
    s0 = await sample()
    await asyncio.sleep(max(0.0, w1 - time.monotonic()))
    s1 = await sample()
    elapsed = time.monotonic() - w0
    await asyncio.gather(*tasks)
    n = load.answered_in_window
    omni_s = cpu_delta_s(s0[0], s1[0])
    pg_s = cpu_delta_s(s0[1], s1[1])
    r: dict[str, Any] = {
        "instances": len(urls), "answered": n, "asked_total": load.asked, "window_s": elapsed,
        "msg_per_s": n / elapsed, "p50_ms": pct(load.latencies, 50), "p95_ms": pct(load.latencies, 95),
        "p99_ms": pct(load.latencies, 99),
        "omnibot_cpu_s": omni_s, "pg_cpu_s": pg_s,
        "cpu_ms_per_msg_omnibot": omni_s * 1000 / n if n else float("nan"),
        "cpu_ms_per_msg_total": (omni_s + pg_s) * 1000 / n if n else float("nan"),
        "loadgen_cpu_ms_per_msg": (s1[2] - s0[2]) * 1000 / n if n else float("nan"),
        "problems": load.problems,
    }
    if s0[3] is not None and s1[3] is not None and n:
        r["xact_per_msg"] = (s1[3]["xact_commit"] - s0[3]["xact_commit"]) / n
        r["rollback_per_msg"] = (s1[3]["xact_rollback"] - s0[3]["xact_rollback"]) / n
        if statements:
            top = statements_delta(s0[3]["statements"], s1[3]["statements"])
            r["statements_per_msg"] = sum(c for _, c, _ in top) / n
            r["statement_ms_per_msg"] = sum(ms for _, _, ms in top) / n
            r["top_statements"] = [{"calls_per_msg": c / n, "exec_ms_per_msg": ms / n, "query": q}
                                   for q, c, ms in top[:args.top]]
    return r


def run_scenario(name: str, args: argparse.Namespace, tmp: Path, server: Any, statements: bool) -> dict[str, Any]:
    kind, count = SCENARIOS[name]
    pg = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp / (name + '.sqlite3')}"
    else:
        from pg import create_database
        dbname = create_database(server)
        url = server.dsn(dbname)
        pg = (url, dbname)
        if statements:
            from pg import run_async

            async def ext() -> None:
                import asyncpg
                con = await asyncpg.connect(url)
                try:
                    await con.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                finally:
                    await con.close()
            run_async(ext)
    cfg = write_config(tmp / f"{name}.yaml", url, args.matcher)
    prof_dir = os.environ.get("OMNIBOT_BENCH_PROFILE")
    insts: list[Instance] = []
    try:
        # the first one alone (it creates the schema), then the rest together
        prof = Path(prof_dir) / f"{name}.prof" if prof_dir else None
        if prof:
            prof.parent.mkdir(parents=True, exist_ok=True)
        insts.append(Instance(cfg, free_port(), prof))
        insts[0].wait_started()
        insts += [Instance(cfg, free_port()) for _ in range(count - 1)]
        for i in insts[1:]:
            i.wait_started()
        print(f"[{name}] {count} instance(s) up; {args.clients} customers, {args.warmup:g} s warm-up + "
              f"{args.seconds:g} s measured ...", file=sys.stderr)
        r = asyncio.run(drive([i.url for i in insts], args, [i.proc.pid for i in insts],
                              server.pid if pg else None, pg, statements))
        r["storage"] = kind
        dead = [i for i in insts if i.proc.poll() is not None]
        if dead:
            r["problems"].append(f"{len(dead)} instance(s) exited during the load:\n"
                                 + "".join(dead[0].lines[-20:]))
        errors = [line for i in insts for line in i.lines if " ERROR " in line or "Traceback" in line]
        r["server_errors"] = errors[:20]
        return r
    finally:
        for i in insts:
            i.stop()
        if pg:
            from pg import drop_database
            drop_database(server, pg[1])


def enable_pg_stat_statements(server: Any) -> bool:
    """Load pg_stat_statements (needs a restart); False if this PostgreSQL lacks it."""
    from pg import _postmaster_pid, run_async

    share = subprocess.run([str(server.bindir / "pg_config"), "--sharedir"], capture_output=True, text=True)
    sharedir = Path(share.stdout.strip()) if share.returncode == 0 else None
    if not sharedir or not (sharedir / "extension" / "pg_stat_statements.control").exists():
        return False

    async def alter() -> None:
        import asyncpg
        con = await asyncpg.connect(server.admin_dsn)
        try:
            await con.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        finally:
            await con.close()
    run_async(alter)
    out = server._run("pg_ctl", "-D", str(server.datadir), "-l", str(server.logfile), "-w", "-t", "30",
                      "-m", "fast", "restart")
    server.pid = _postmaster_pid(server.datadir)
    if out.returncode != 0 or not server.pid:
        raise SystemExit(f"PostgreSQL restart failed: {out.stderr or out.stdout}\n{server.log_tail()}")
    return True


# -- report -----------------------------------------------------------------------------------

def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    base = results.get("sqlite")
    lines = [f"web chat, {args.clients} concurrent customers, {args.warmup:g} s warm-up + {args.seconds:g} s "
             f"measured per scenario, matcher {args.matcher}{', every text new' if args.unique else ''}, "
             f"{os.cpu_count()} CPUs",
             "", f"{'scenario':<9} {'inst':>4} {'msg/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
             f"{'cpu ms/msg':>10} {'cpu ms/msg':>10} {'x sqlite':>8} {'x sqlite':>8} {'xact/':>6} {'stmt/':>6}",
             f"{'':<9} {'':>4} {'':>7} {'':>7} {'':>7} {'(a) bot':>10} {'(b) bot+pg':>10} "
             f"{'(a)':>8} {'(b)':>8} {'msg':>6} {'msg':>6}"]
    for name, r in results.items():
        ra = rb = "-"
        if base and base is not r:
            ra = f"{ratio(r['cpu_ms_per_msg_omnibot'], base['cpu_ms_per_msg_omnibot']):.2f}"
            rb = f"{ratio(r['cpu_ms_per_msg_total'], base['cpu_ms_per_msg_total']):.2f}"
        xa = f"{r['xact_per_msg']:.1f}" if "xact_per_msg" in r else "-"
        st = f"{r['statements_per_msg']:.1f}" if "statements_per_msg" in r else "-"
        lines.append(f"{name:<9} {r['instances']:>4} {r['msg_per_s']:>7.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                     f"{r['cpu_ms_per_msg_omnibot']:>10.2f} {r['cpu_ms_per_msg_total']:>10.2f} {ra:>8} {rb:>8} "
                     f"{xa:>6} {st:>6}")
    if base:
        lines.append("")
        for name, r in results.items():
            if r is not base:
                lines.append(f"{name} / sqlite: throughput x{ratio(r['msg_per_s'], base['msg_per_s']):.2f}, "
                             f"p50 x{ratio(r['p50_ms'], base['p50_ms']):.2f}, "
                             f"p99 x{ratio(r['p99_ms'], base['p99_ms']):.2f}, "
                             f"CPU/msg (b) x{ratio(r['cpu_ms_per_msg_total'], base['cpu_ms_per_msg_total']):.2f}")
    lines += ["",
              "(a) omnibot processes only; (b) omnibot + PostgreSQL server (postmaster and its children). SQLite",
              "    works inside omnibot, so (b) is the fair comparison. CPU from /proc utime+stime over the window.",
              f"Note: every instance, PostgreSQL and the load generator share this machine's {os.cpu_count()} cores;",
              "    N instances do not get N times the CPU. Load generator CPU/msg: "
              + ", ".join(f"{n} {r['loadgen_cpu_ms_per_msg']:.2f} ms" for n, r in results.items())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64, help="concurrent customers (default 64)")
    ap.add_argument("--seconds", type=float, default=10, help="measured seconds per scenario (default 10)")
    ap.add_argument("--warmup", type=float, default=3, help="warm-up seconds before measuring (default 3)")
    ap.add_argument("--matcher", choices=("lexical", "learned"), default="lexical",
                    help="intent matcher (default lexical: measures storage, not the model)")
    ap.add_argument("--unique", action="store_true",
                    help="make every question a new text (an order number appended): measures what a "
                         "message costs when no remembered answer fits")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {','.join(SCENARIOS)} (default all)")
    ap.add_argument("--no-statements", action="store_true",
                    help="do not load pg_stat_statements (statements per message)")
    ap.add_argument("--top", type=int, default=12, help="costliest statements to show per PG scenario")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := [s for s in names if s not in SCENARIOS]:
        ap.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")

    results: dict[str, dict[str, Any]] = {}
    server = None
    statements = False
    with tempfile.TemporaryDirectory(prefix="omnibot-cluster-bench-") as tmp:
        try:
            if any(SCENARIOS[n][0] == "pg" for n in names):
                from pg import start_cluster
                print("[pg] starting a throwaway PostgreSQL cluster ...", file=sys.stderr)
                server = start_cluster()
                if not args.no_statements:
                    statements = enable_pg_stat_statements(server)
                print(f"[pg] {server.version} on {server.host}:{server.port}, postmaster pid {server.pid}"
                      f"{', pg_stat_statements on' if statements else ''}", file=sys.stderr)
            for name in names:
                results[name] = run_scenario(name, args, Path(tmp), server, statements)
        finally:
            if server is not None:
                server.stop()
    print()
    print(table(results, args))
    for name, r in results.items():
        if r.get("top_statements"):
            print(f"\n{name}: {r['statements_per_msg']:.1f} statements/msg "
                  f"({r['statement_ms_per_msg']:.2f} ms execution/msg), "
                  f"{r['xact_per_msg']:.1f} commits/msg, {r['rollback_per_msg']:.2f} rollbacks/msg; most frequent:")
            for s in r["top_statements"]:
                print(f"  {s['calls_per_msg']:5.2f}/msg {s['exec_ms_per_msg']:6.3f} ms/msg  {s['query'][:150]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))
    failed = False
    for name, r in results.items():
        if r["problems"]:
            failed = True
            print(f"\nERROR [{name}] not every question was answered exactly once:", file=sys.stderr)
            for p in r["problems"][:20]:
                print("  " + p, file=sys.stderr)
        if r["server_errors"]:
            print(f"\nwarning [{name}] server log errors:\n" + "".join(r["server_errors"]), file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
