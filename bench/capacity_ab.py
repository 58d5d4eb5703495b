"""A/B of two commits with bench/capacity.py, interleaved (A B B A A B ...), on this machine.

Each commit is exported (``git archive``) to a temporary directory and its own
``bench/capacity.py`` runs there, so the server, the fakes and the load are that commit's.
Runs alternate ABBA so drift in the machine's load hits both sides alike; per run it prints
each row's server CPU per answered message and p99 round trip (web chat too) and a webhook
channel's ratio to web chat in the same run (issue 20's "x web chat"), then the medians and the
B/A ratio of the medians.
``--storage sqlite,pg1`` compares PostgreSQL (one instance) rows too.

    python bench/capacity_ab.py 3465471 HEAD --rounds 3 --channels webchat,telegram --matchers lexical
    python bench/capacity_ab.py main HEAD --rounds 4 --channels webchat --matchers learned   # an NLU change

Without web chat in ``--channels`` only CPU per message is compared (shorter runs: the A/B of a
connector change). Extra arguments after ``--`` go to capacity.py (default ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export(rev: str, where: Path) -> Path:
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def one_run(tree: Path, args: argparse.Namespace, out: Path) -> dict[tuple[str, str], dict]:
    cmd = [sys.executable, "bench/capacity.py", *args.capacity, "--channels", args.channels,
           "--matchers", args.matchers, "--storage", args.storage, "--json", str(out)]
    proc = subprocess.run(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    rows = json.loads(out.read_text())["rows"]
    return {(r["scenario"]["channel"] + (f"+{v}" if (v := r["scenario"].get("variant")) else ""),
             r["scenario"]["matcher"], r["scenario"]["storage"]): r
            for r in rows if "skipped" not in r and r["scenario"]["channel"] != "ceiling"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="commit A (before)")
    ap.add_argument("b", help="commit B (after)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per side (default 3)")
    ap.add_argument("--channels", default="webchat,telegram", help="capacity.py --channels (default webchat,telegram)")
    ap.add_argument("--matchers", default="lexical", help="capacity.py --matchers (default lexical)")
    ap.add_argument("--storage", default="sqlite", help="capacity.py --storage (default sqlite; sqlite,pg1: both)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else ["--quick"]
    ap.epilog = "after --: arguments for capacity.py (default --quick)"
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.capacity = extra
    per: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    with tempfile.TemporaryDirectory(prefix="omnibot-ab-") as tmp:
        trees = {"A": export(args.a, Path(tmp) / "A"), "B": export(args.b, Path(tmp) / "B")}
        for i in range(args.rounds * 2):
            side = "AB"[(i + i // 2) % 2]          # A B B A A B ...
            rows = one_run(trees[side], args, Path(tmp) / "run.json")
            shown = []
            for (chan, matcher, storage), r in rows.items():
                cpu = r["cpu_ms_per_msg_total"]
                name = f"{chan}/{matcher}/{storage}"
                per[side].setdefault(f"{name} cpu", []).append(cpu)
                per[side].setdefault(f"{name} p99 ms", []).append(r["p99_ms"])
                item = f"{name} {cpu:.2f} ms/msg, p99 {r['p99_ms']:.0f} ms"
                web = rows.get(("webchat", matcher, storage)) if chan != "webchat" else None
                if web:
                    x = cpu / web["cpu_ms_per_msg_total"]
                    per[side].setdefault(f"{name} x web chat", []).append(x)
                    item += f" (web chat {web['cpu_ms_per_msg_total']:.2f}, x {x:.2f})"
                shown.append(item)
            print(f"{side}: " + "; ".join(shown), flush=True)
    print()
    for key in per["A"]:
        a, b = statistics.median(per["A"][key]), statistics.median(per["B"].get(key, [float("nan")]))
        print(f"{key}: median A {a:.2f}, B {b:.2f}, B/A {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
