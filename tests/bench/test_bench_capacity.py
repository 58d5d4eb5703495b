"""Smoke test of bench/capacity.py: one short real run (ceiling + web chat on SQLite), table and JSON.

The benchmark itself is not part of the suite; this keeps its one command working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_the_machine_and_a_table_with_json(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "capacity.py"), "--quick", "--channels", "webchat,telegram",
         "--matchers", "lexical", "--storage", "sqlite", "--clients", "4", "--warmup", "0.5", "--seconds", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert table.startswith("\nMachine: ") or table.startswith("Machine: ")
    assert " cores, " in table and "GB RAM" in table and "Python 3." in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| channel | matcher | storage | msg/s | p50 ms | p95 ms | p99 ms |")
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| bare aiohttp WebSocket (ceiling)", "| web chat",
                                                     "| Telegram webhook"]
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1
    ceiling, web, telegram = data["rows"]
    for row in (ceiling, web, telegram):
        assert row["answered"] > 0 and not row["problems"]
        assert row["msg_per_s"] > 0 and row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["cpu_ms_per_msg_total"] > 0 and row["peak_rss_mb"] > 10
    # the table shows what the JSON holds
    web_cells = rows[2].split(" | ")
    assert web_cells[3] == f"{web['msg_per_s']:.0f}" and web_cells[7] == f"{web['cpu_ms_per_msg_total']:.2f}"
    assert web_cells[8] == f"{web['cpu_ms_per_msg_total'] / ceiling['cpu_ms_per_msg_total']:.1f}"
    tg_cells = rows[3].split(" | ")
    assert tg_cells[9] == f"{telegram['cpu_ms_per_msg_total'] / web['cpu_ms_per_msg_total']:.2f}"


def test_whatsapp_statuses_are_sent_for_every_reply(tmp_path: Path) -> None:
    """--whatsapp-statuses: Meta's sent, delivered and read webhooks for each reply, counted in the row."""
    out = tmp_path / "capacity.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "capacity.py"), "--quick", "--channels", "whatsapp",
         "--matchers", "lexical", "--storage", "sqlite", "--clients", "4", "--warmup", "0.5", "--seconds", "1",
         "--whatsapp-statuses", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| WhatsApp webhook + statuses | lexical | SQLite |" in proc.stdout
    _, row = json.loads(out.read_text())["rows"]
    assert row["answered"] > 0 and not row["problems"]
    # three per reply, every one answered 200 (a refused one is a problem), the warm-up's too
    assert row["status_webhooks"] >= 3 * row["answered"] and row["status_webhooks"] % 3 == 0
