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
    main_table, day_table = table.split("\n\nConversations per day")
    rows = [line for line in main_table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| channel | matcher | storage | msg/s | p50 ms | p95 ms | p99 ms |")
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| bare aiohttp WebSocket (ceiling)", "| web chat",
                                                     "| Telegram webhook"]
    assert "| web chat, lexical, SQLite | " in day_table and "| Telegram webhook, lexical, SQLite | " in day_table
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


def _capacity():
    """bench/capacity.py as a module. It imports bench/cluster.py and bench/webchat_load.py by
    their plain names, which other test files' modules (tests/e2e/cluster.py) may hold in
    sys.modules in this process: those are set aside while it loads, then put back, and so is
    sys.path."""
    import importlib.util
    if "capacity_bench" in sys.modules:
        return sys.modules["capacity_bench"]
    spec = importlib.util.spec_from_file_location("capacity_bench", ROOT / "bench" / "capacity.py")
    mod = importlib.util.module_from_spec(spec)
    taken = {name: sys.modules.pop(name) for name in ("cluster", "webchat_load") if name in sys.modules}
    path = list(sys.path)                       # it puts bench/ and tests/ first: not for other tests
    sys.modules[spec.name] = mod                # its dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[spec.name]
        raise
    finally:
        for name in ("cluster", "webchat_load"):
            sys.modules.pop(name, None)
        sys.modules.update(taken)
        sys.path[:] = path
    return mod


def _run(rnd: int, channel: str, cpu: float, *, matcher: str = "lexical", storage: str = "sqlite",
         problems: tuple[str, ...] = ()) -> dict:
    return {"scenario": {"channel": channel, "matcher": "-" if channel == "ceiling" else matcher,
                         "storage": "-" if channel == "ceiling" else storage, "instances": 1, "variant": ""},
            "round": rnd, "answered": 100, "msg_per_s": 1000 / cpu, "p50_ms": 10 * cpu, "p95_ms": 20 * cpu,
            "p99_ms": 30 * cpu, "cpu_ms_per_msg_total": cpu, "peak_rss_mb": 100 + cpu, "problems": list(problems)}


def test_rounds_give_medians_the_cpu_range_and_ratios_within_each_round() -> None:
    cap = _capacity()
    # round 2 ran on a busier machine: everything dearer; the ratio within each round is what holds
    runs = [_run(1, "ceiling", 0.05), _run(1, "webchat", 0.40), _run(1, "telegram", 0.48),
            _run(2, "ceiling", 0.08), _run(2, "webchat", 0.80), _run(2, "telegram", 1.04, problems=("lost one",)),
            _run(3, "ceiling", 0.06), _run(3, "webchat", 0.50), _run(3, "telegram", 0.55)]
    ceiling, web, tg = cap.combine(runs)
    assert [r["rounds"] for r in (ceiling, web, tg)] == [3, 3, 3]
    assert web["cpu_ms_per_msg_total"] == 0.50 and web["cpu_range"] == [0.40, 0.80]
    assert tg["cpu_ms_per_msg_total"] == 0.55 and tg["cpu_range"] == [0.48, 1.04]
    # per-round ratios 1.2, 1.3, 1.1: the median is 1.2, not 0.55 / 0.50 (1.1) of the medians
    assert abs(tg["x_web_chat"] - 1.2) < 1e-9
    assert abs(web["x_ceiling"] - 25 / 3) < 1e-9            # 8.0, 10.0, 8.33
    assert web["peak_rss_mb"] == 100.80 and web["answered"] == 300
    assert tg["problems"] == ["round 2: lost one"] and not web["problems"]
    assert ceiling["x_ceiling"] is None and web["x_web_chat"] is None

    settings = {"clients": 64, "warmup": 1, "seconds": 4, "unique": True, "rounds": 3, "command": "python x"}
    info = {"cpu": "cpu", "cores": 2, "ram_gb": 4, "python": "3.11", "os": "linux", "loadavg_at_start": [1.0]}
    table = cap.markdown(info, [ceiling, web, tg], settings)
    assert "3 rounds (medians" in table
    lines = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert "| server CPU ms/msg | CPU range | x ceiling |" in lines[0]
    cells = lines[3].split(" | ")
    assert cells[0] == "| Telegram webhook (errors)" and cells[7:10] == ["0.55", "0.48-1.04", "9.6"]   # 9.6, 13.0, 9.17
    assert cells[10] == "1.20"
    assert all(len(ln.split("|")) == len(lines[0].split("|")) for ln in lines)


def test_a_row_skipped_in_some_rounds_says_so_and_one_skipped_in_all_is_skipped() -> None:
    cap = _capacity()
    skipped = {"scenario": _run(2, "telegram", 1)["scenario"], "round": 2, "skipped": "time budget"}
    runs = [_run(1, "ceiling", 0.05), _run(1, "webchat", 0.40), _run(1, "telegram", 0.48),
            {"scenario": _run(1, "whatsapp", 1)["scenario"], "round": 1, "skipped": "time budget"},
            _run(2, "ceiling", 0.05), _run(2, "webchat", 0.40), skipped,
            {"scenario": _run(1, "whatsapp", 1)["scenario"], "round": 2, "skipped": "time budget"}]
    rows = cap.combine(runs)
    assert [r["rounds"] for r in rows] == [2, 2, 1, 0] and rows[3]["skipped"] == "time budget"
    settings = {"clients": 64, "warmup": 1, "seconds": 4, "unique": True, "rounds": 2, "command": "python x"}
    info = {"cpu": "cpu", "cores": 2, "ram_gb": 4, "python": "3.11", "os": "linux", "loadavg_at_start": [1.0]}
    lines = [ln for ln in cap.markdown(info, rows, settings).splitlines() if ln.startswith("| ")]
    assert lines[3].startswith("| Telegram webhook (1 of 2 rounds) |")
    assert lines[4].startswith("| WhatsApp webhook | lexical | SQLite | skipped: time budget |")
    assert all(len(ln.split("|")) == len(lines[0].split("|")) for ln in lines)


def test_conversations_per_day_follow_the_readme_s_assumptions() -> None:
    cap = _capacity()
    assert cap.conversations_per_day(1161) == 1161 * 86_400 / 8 / 4 / 2       # README: about 1,570,000
    rows = [_run(1, "ceiling", 0.05), _run(1, "webchat", 0.5), _run(1, "whatsapp", 1.0, storage="pg")]
    table = cap.per_day(cap.combine(rows))
    assert "| web chat, lexical, SQLite | 2000 | about 2,700,000 |" in table      # 2000 msg/s -> 2.7M
    assert "| WhatsApp webhook, lexical, PostgreSQL | 1000 | about 1,400,000 |" in table
    assert "ceiling" not in table
def test_whatsapp_statuses_are_sent_for_every_reply(tmp_path: Path) -> None:
    """--whatsapp-statuses: Meta's sent, delivered and read webhooks for each reply, counted in the row."""
    out = tmp_path / "capacity.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "capacity.py"), "--quick", "--channels", "whatsapp",
         "--matchers", "lexical", "--storage", "sqlite", "--clients", "4", "--warmup", "0.5", "--seconds", "1",
         "--whatsapp-statuses", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| WhatsApp webhook | lexical | SQLite |" in proc.stdout       # without statuses, then with
    assert "| WhatsApp webhook + statuses | lexical | SQLite |" in proc.stdout
    _, plain, row = json.loads(out.read_text())["rows"]
    assert "status_webhooks" not in plain and plain["answered"] > 0 and not plain["problems"]
    assert row["answered"] > 0 and not row["problems"]
    # three per reply, every one answered 200 (a refused one is a problem), the warm-up's too
    assert row["status_webhooks"] >= 3 * row["answered"] and row["status_webhooks"] % 3 == 0
