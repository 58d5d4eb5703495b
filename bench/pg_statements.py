"""Where PostgreSQL's time per message goes, statement by statement (issue 20).

Starts a throwaway PostgreSQL cluster (as tests/pg.py does) with ``pg_stat_statements`` loaded,
runs ``bench/hotpath.py --storage pg`` against a fresh database of it for each ``--channel``, and
prints the statements the server spent most time on: calls, total and mean execution time, and
shared buffers touched per call (a statement whose buffers per call grow with the data reads
more than its index should). The cluster is stopped by its pid at the end.

    python bench/pg_statements.py                           # web chat, then WhatsApp
    python bench/pg_statements.py --channel whatsapp --messages 4000 --top 20

Execution time is the server's only (no parse, no network, no client); compare channels or
commits by buffers per call and mean time in the same run, not by one figure alone.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pg  # noqa: E402  (tests/pg.py: the throwaway cluster)

TOP = """SELECT calls, total_exec_time AS total_ms, total_exec_time / calls * 1000 AS mean_us,
       shared_blks_hit + shared_blks_read AS blocks, regexp_replace(query, '\\s+', ' ', 'g') AS query
FROM pg_stat_statements WHERE calls >= $1 ORDER BY total_exec_time DESC LIMIT $2"""


async def query(dsn: str, sql: str, *args: object) -> list:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        return await con.fetch(sql, *args)
    finally:
        await con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channel", default="webchat,whatsapp",
                    help="comma-separated bench/hotpath.py channels (default webchat,whatsapp)")
    ap.add_argument("--messages", type=int, default=2000, help="answered messages per channel (default 2000)")
    ap.add_argument("--top", type=int, default=12, help="statements listed per channel (default 12)")
    ap.add_argument("--width", type=int, default=100, help="characters of each statement shown (default 100)")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a server setting for the cluster (repeatable), e.g. plan_cache_mode=force_custom_plan")
    args = ap.parse_args()
    settings = dict(pg.SETTINGS)
    pg.SETTINGS.update({"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track": "all"})
    for item in args.setting:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            ap.error(f"--setting {item!r}: give NAME=VALUE")
        pg.SETTINGS[name.strip()] = f"'{value.strip()}'"
    print("[pg] starting a throwaway PostgreSQL cluster with pg_stat_statements ...", flush=True)
    server = pg.start_cluster()
    pg.SETTINGS.clear()
    pg.SETTINGS.update(settings)
    try:
        for channel in args.channel.split(","):
            db = pg.create_database(server)
            dsn = server.dsn(db)
            asyncio.run(query(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            asyncio.run(query(dsn, "SELECT pg_stat_statements_reset()"))
            run = subprocess.run([sys.executable, str(ROOT / "bench" / "hotpath.py"), "--storage", "pg",
                                  "--pg-url", dsn, "--postmaster", str(server.pid), "--channel", channel,
                                  "--messages", str(args.messages)], capture_output=True, text=True, cwd=ROOT)
            if run.returncode:
                print(f"[{channel}] bench/hotpath.py failed:\n{run.stderr[-2000:]}", file=sys.stderr)
                return 1
            figures = [ln for ln in run.stdout.splitlines() if " ms CPU/msg, " in ln]
            print(f"\n[{channel}] {figures[0] if figures else run.stdout.strip()[-200:]}")
            rows = asyncio.run(query(dsn, TOP, max(1, args.messages // 4), args.top))
            print(f"{'calls':>7} {'total ms':>9} {'us/call':>8} {'blocks/call':>11}  statement")
            for r in rows:
                print(f"{r['calls']:7d} {r['total_ms']:9.1f} {r['mean_us']:8.1f} {r['blocks'] / r['calls']:11.1f}  "
                      f"{r['query'][:args.width]}")
            pg.drop_database(server, db)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
