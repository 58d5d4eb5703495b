"""The issue-21 storm at real scale: 100 handoffs within a second against a fake Slack that
enforces 1 chat.postMessage per second per channel (429 + Retry-After above it), with 100 ms
per Web API call.

Prints the time to the last card, the share of chat.* calls answered 429, and the latency of a
customer message (written every 5 s by the customer of a card posted before the storm) into
its card's thread during the storm. The storm's handoffs alternate between the two teams; with
``--channels 1`` both teams share one channel (100 cards in one channel), with ``--channels 2``
(the default) each team has its own.

    .venv/bin/python bench/slack_storm.py [--handoffs 100] [--channels 2] [--rate 1] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e.slack_storm import run_storm  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handoffs", type=int, default=100)
    ap.add_argument("--channels", type=int, choices=(1, 2), default=2)
    ap.add_argument("--rate", type=float, default=1.0, help="posts per second per channel (Slack's limit)")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per Web API call")
    ap.add_argument("--probe-every", type=float, default=5.0)
    ap.add_argument("--sync-interval", type=float, default=30.0)
    args = ap.parse_args()
    logging.disable(logging.WARNING)      # the app's own INFO/DEBUG lines would drown the figures
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = await run_storm(Path(tmp), handoffs=args.handoffs, channels=args.channels, rate=args.rate,
                                 update_rate=0.8, probe_every=args.probe_every, latency=args.latency,
                                 sync_interval=args.sync_interval, timeout=600)
    for line in result.lines():
        print(line)
    print(f"Slack latency {args.latency * 1000:.0f} ms per call; chat.update limited to 0.8/s; "
          f"bench ran {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
