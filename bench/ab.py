"""A/B of bench/cluster.py between source trees, interleaved and repeated (the machine is noisy).

Each tree is a checkout of omnibot (``git archive <commit> | tar -x -C DIR``); the first is the
baseline. For every round and scenario, each tree's own bench/cluster.py runs once (its own
throwaway PostgreSQL, its own `omnibot run` processes), the trees taking turns in an order that
rotates each round. Printed per scenario and tree: the median over rounds of server CPU per
answered message (omnibot alone, and omnibot + PostgreSQL), commits and statements per message,
messages/s, and each median's ratio to the baseline's.

    python bench/ab.py /tmp/A /tmp/B [--rounds 3] [--scenarios pg1,pg3] [-- cluster.py options]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FIGURES = (("cpu_ms_per_msg_omnibot", "cpu bot"), ("cpu_ms_per_msg_total", "cpu bot+pg"),
           ("xact_per_msg", "xact/msg"), ("statements_per_msg", "stmt/msg"), ("msg_per_s", "msg/s"),
           ("p50_ms", "p50 ms"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="+", help="source trees; the first is the baseline")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", default="pg1,pg3")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    extra = argv[cut + 1:]     # options for bench/cluster.py
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="omnibot-ab-") as tmp:
        for rnd in range(args.rounds):
            for scen in args.scenarios.split(","):
                k = rnd % len(args.trees)
                for tree in args.trees[k:] + args.trees[:k]:
                    out = Path(tmp) / "r.json"
                    cmd = [sys.executable, str(Path(tree) / "bench" / "cluster.py"), "--scenarios", scen,
                           "--json", str(out), *extra]
                    p = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
                    if p.returncode != 0 or not out.exists():
                        print(f"[{tree} {scen}] failed:\n{p.stderr[-2000:]}", file=sys.stderr)
                        continue
                    r = json.loads(out.read_text())["results"][scen]
                    out.unlink()
                    runs.setdefault((scen, tree), []).append(r)
                    print(f"round {rnd} {scen} {tree}: " + ", ".join(
                        f"{label} {r.get(key, float('nan')):.2f}" for key, label in FIGURES), file=sys.stderr)
    for scen in args.scenarios.split(","):
        print(f"\n{scen} (median of {args.rounds} rounds; ratio to {args.trees[0]})")
        base = runs.get((scen, args.trees[0]), [])
        for tree in args.trees:
            rs = runs.get((scen, tree), [])
            cells = []
            for key, label in FIGURES:
                vals = [r[key] for r in rs if key in r]
                bvals = [r[key] for r in base if key in r]
                if not vals:
                    continue
                m = statistics.median(vals)
                ratio = m / statistics.median(bvals) if bvals else float("nan")
                cells.append(f"{label} {m:.2f} (x{ratio:.2f})")
            print(f"  {tree}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
