"""Smoke test of ``bench/pg_statements.py``: a short real run on its own throwaway PostgreSQL
(with pg_stat_statements) that lists the hot statements with their buffers per call.

It also guards what the tool found (issue 20): the turn's one statement touches tens of buffers
per call once the planner has statistics (the bench runs ANALYZE in the warm-up), not the
1,300-2,100 of a generic plan made on near-empty tables, nor the 600-900 of one that scanned a
small partial index whole.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_lists_the_turn_statement_with_its_buffers_per_call() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pg_statements.py"), "--channel", "webchat", "--messages", "300",
         "--top", "5", "--width", "60"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^\[webchat\] [\d.]+ ms CPU/msg", out, re.M), out
    rows = [line.split(None, 4) for line in out.splitlines() if re.match(r"\s*\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\S", line)]
    turn = [r for r in rows if r[4].startswith("WITH c AS (UPDATE conversations")]
    assert turn, out
    # Listed once (one query id: its parameters typed, so the server's re-analysis after ANALYZE
    # makes the same parse tree), and every listed variant reads tens of buffers per call: the
    # generic plan cannot scan messages_inbound_dedupe whole (migration 16; it did in about half
    # the runs, 600-900 buffers per call). tests/bot/test_pg_turn_plan.py checks the plans.
    assert len(turn) == 1, out
    for calls, _, _, blocks, _ in turn:
        assert int(calls) >= 75 and float(blocks) < 300, out


def test_refuses_a_setting_without_a_value() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "pg_statements.py"), "--setting", "work_mem"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "give NAME=VALUE" in proc.stderr
