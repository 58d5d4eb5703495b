"""Smoke test of ``bench/hotpath.py --storage pg --count``: one short real run on a throwaway
PostgreSQL, stopped again, that answers every message and counts round trips per message.

It also keeps issue 20's figure from creeping back: a web-chat message answered on PostgreSQL
took 11.9 round trips before the one-statement forms and the reused turn state, 3.4 after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pg_run_counts_round_trips_and_stops_its_cluster() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "hotpath.py"), "--storage", "pg", "--count", "--json",
         "--messages", "200", "--clients", "8", "--warmup", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["messages"] >= 200
    assert r["pg_cpu_ms_per_msg"] > 0 and r["cpu_ms_per_msg"] > r["omnibot_cpu_ms_per_msg"]
    assert 2.5 <= r["round_trips_per_msg"] <= 5.0, r["by_statement"]
    assert r["ops_per_msg"] < 3.8          # 4.1 before the turn reused what storing its message read
    # the cluster it started is gone (its port was in the log line)
    port = next(line.rsplit(":", 1)[1] for line in proc.stderr.splitlines() if line.startswith("[pg] postgres"))
    assert not [line for line in subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout.splitlines()
                if line.split()[3:4] and line.split()[3].endswith(f":{port}")]


def test_whatsapp_statuses_count_as_the_connector_applies_them() -> None:
    """--channel whatsapp --statuses: sent, delivered and read applied per reply; each one
    statement (whatsapp_note_status), where the locked transaction took three (20 per message)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "hotpath.py"), "--channel", "whatsapp", "--statuses", "--count",
         "--json", "--messages", "200", "--clients", "8", "--warmup", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["messages"] >= 200
    assert r["ops_per_msg"] > 6.5             # about 4 for the message and its reply, 3 for its statuses
    assert r["statements_per_msg"] < 15.5, r  # 11 + 3: 20 with whatsapp_apply_status for each
