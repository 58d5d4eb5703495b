"""`omnibot report`: figures from a small hand-made database, expected values worked out by hand.

Fixture (T0 = 2026-11-02 10:00 UTC; "now" = T0 + 12 days):

conversation  customer channel   first in -> first reply   handoff queued -> claimed
v1            c1       webchat   T0 -> +2 s                +60 s -> +360 s (pickup 300 s)
v2            c2       telegram  T0+1h -> +4 s             -
v3            c3       webchat   T0+2h -> +6 s             -
v4            c1       telegram  T0+10d -> +10 s           +20 s -> +120 s (pickup 100 s)
v0            c2       webchat   2026-10-01 (before --since: left out)

ticket  conv category  opened      resolved after   reopened  CSAT
C-1001  v1   shipping  T0+5min     2 h              0         5
C-1002  v2   payment   T0+1h       30 h (> 24 h SLA) 1        2
C-1003  v4   shipping  T0+10d      open (2 days at now: SLA breached); c1's 2nd shipping ticket
C-1004  v3   product   T0+2h       1 h              0         4

=> conversations 4, first response median (2, 4, 6, 10) = 5 s, pickup median (300, 100) = 200 s,
   containment 2/4; tickets 4, resolved 3, resolution median (2 h, 30 h, 1 h) = 2 h,
   FCR 2/3, CSAT (5 + 2 + 4) / 3 = 3.67 with 2/3 satisfied, SLA breaches 2 (C-1002, C-1003),
   repeat complaints 1 (shipping: C-1003).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import report as rep
from bot.cli import main
from bot.storage import open_store

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=12)
H, D = timedelta(hours=1), timedelta(days=1)


def _ts(dt: datetime) -> str:
    return dt.isoformat()


async def _fixture(path: Path) -> Path:
    store = await open_store(f"sqlite:///{path}")     # the real schema, migrations included
    await store.close()
    con = sqlite3.connect(path)
    s = timedelta(seconds=1)
    for c in ("c1", "c2", "c3"):
        con.execute("INSERT INTO customers(id, created_at) VALUES (?, ?)", (c, _ts(T0)))
    convs = [("v1", "c1", "webchat", T0, 2), ("v2", "c2", "telegram", T0 + H, 4),
             ("v3", "c3", "webchat", T0 + 2 * H, 6), ("v4", "c1", "telegram", T0 + 10 * D, 10),
             ("v0", "c2", "webchat", datetime(2026, 10, 1, tzinfo=timezone.utc), 1)]
    for cid, cust, ch, at, reply_after in convs:
        con.execute("INSERT INTO conversations(id, customer_id, channel, external_id, state, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, 'closed', ?, ?)", (cid, cust, ch, cid, _ts(at), _ts(at)))
        for direction, when in (("in", at), ("out", at + reply_after * s), ("in", at + 30 * s)):
            con.execute("INSERT INTO messages(conversation_id, direction, role, text, channel, status, "
                        "created_at) VALUES (?, ?, 'x', 'hi', ?, 'processed', ?)", (cid, direction, ch, _ts(when)))
    for hid, cid, queued, claimed in (("h1", "v1", T0 + 60 * s, T0 + 360 * s),
                                      ("h4", "v4", T0 + 10 * D + 20 * s, T0 + 10 * D + 120 * s)):
        con.execute("INSERT INTO handoffs(id, conversation_id, state, team, reason, created_at, claimed_at, "
                    "closed_at) VALUES (?, ?, 'resolved', 'complaints', 'r', ?, ?, ?)",
                    (hid, cid, _ts(queued), _ts(claimed), _ts(claimed)))
    tickets = [("C-1001", "c1", "v1", "shipping", T0 + timedelta(minutes=5), 2 * H, 0, 5),
               ("C-1002", "c2", "v2", "payment", T0 + H, 30 * H, 1, 2),
               ("C-1003", "c1", "v4", "shipping", T0 + 10 * D, None, 0, None),
               ("C-1004", "c3", "v3", "product", T0 + 2 * H, H, 0, 4)]
    for ref, cust, conv, cat, opened, took, reopened, csat in tickets:
        con.execute("INSERT INTO tickets(reference, customer_id, conversation_id, status, category, severity, "
                    "department, team, priority, created_at, updated_at, resolved_at, reopened, csat) "
                    "VALUES (?, ?, ?, ?, ?, 'normal', 'care', 'complaints', 1, ?, ?, ?, ?, ?)",
                    (ref, cust, conv, "resolved" if took else "received", cat, _ts(opened), _ts(opened),
                     _ts(opened + took) if took else None, reopened, csat))
    con.commit()
    con.close()
    return path


async def test_figures_match_the_hand_worked_values(tmp_path: Path) -> None:
    db = await _fixture(tmp_path / "o.sqlite3")
    with rep.connect(db) as con:
        r = rep.report(con, since=datetime(2026, 11, 1, tzinfo=timezone.utc), now=NOW)
    assert r["conversations"] == 4 and r["handoffs"] == 2
    assert r["first_response_s_median"] == 5.0
    assert r["agent_pickup_s_median"] == 200.0
    assert r["bot_containment"] == 0.5
    assert (r["tickets"], r["resolved"]) == (4, 3)
    assert r["resolution_s_median"] == 7200.0
    assert r["first_contact_resolution"] == round(2 / 3, 4)
    assert r["csat_mean"] == 3.67 and r["csat_satisfied"] == round(2 / 3, 4) and r["csat_answers"] == 3
    assert r["sla_breaches"] == 2
    assert r["repeat_complaints"] == 1 and r["repeat_by_category"] == {"shipping": 1}


async def test_by_channel_and_period(tmp_path: Path) -> None:
    db = await _fixture(tmp_path / "o.sqlite3")
    with rep.connect(db) as con:
        r = rep.report(con, since=datetime(2026, 11, 1, tzinfo=timezone.utc), by="channel", now=NOW)
        first_week = rep.report(con, since=T0, until=T0 + 7 * D, now=NOW)
    web, tg = r["groups"]["webchat"], r["groups"]["telegram"]
    assert (web["tickets"], web["resolved"], web["sla_breaches"], web["csat_mean"]) == (2, 2, 0, 4.5)
    assert (tg["tickets"], tg["resolved"], tg["sla_breaches"], tg["repeat_complaints"]) == (2, 1, 2, 1)
    # the first week: v4 and C-1003 (the only repeat) fall outside
    assert (first_week["conversations"], first_week["tickets"], first_week["repeat_complaints"]) == (3, 3, 0)
    with pytest.raises(ValueError, match="--by must be one of"):
        rep.report(con, by="weekday")


async def test_cli_report_text_and_json(tmp_path: Path) -> None:
    db = await _fixture(tmp_path / "o.sqlite3")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f'storage: {{url: "sqlite:///{db}"}}\n', encoding="utf-8")
    runner = CliRunner()
    text = runner.invoke(main, ["report", "-c", str(cfg), "--since", "2026-11-01", "--by", "category"])
    assert text.exit_code == 0, text.output
    assert "first response (median) 5 s" in text.output and "SLA breaches            2" in text.output
    assert "category: shipping" in text.output
    as_json = runner.invoke(main, ["report", "-c", str(cfg), "--since", "2026-11-01", "--json"])
    assert json.loads(as_json.output)["tickets"] == 4
    bad = runner.invoke(main, ["report", "-c", str(cfg), "--since", "last tuesday"])
    assert bad.exit_code == 2 and "is not a date like 2026-11-01" in bad.output
    missing = tmp_path / "none.yaml"
    missing.write_text(f'storage: {{url: "sqlite:///{tmp_path / "nope.sqlite3"}"}}\n', encoding="utf-8")
    gone = runner.invoke(main, ["report", "-c", str(missing)])
    assert gone.exit_code == 2 and "no such database" in gone.output
