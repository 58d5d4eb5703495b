"""Client CPU per Bot API call: PTB's HTTPXRequest against our AiohttpRequest, A/B in one run.

The fake Bot API (tests/fakes/telegram_api.py) runs in a child process, so only the client's
work is counted: this process's CPU time (user + system, ``time.process_time``) per
``bot.send_message`` call, with ``--concurrency`` calls in flight, as the outbox sends replies.
Rounds alternate between the two request classes (A B B A A B ...), so drift from other load
on the machine hits both alike; the ratio per pair of rounds and its median are printed.

    python bench/telegram_http.py [--rounds 6] [--calls 400] [--concurrency 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def serve_fake() -> None:
    """Child process: run a FakeTelegram until terminated; print its base URL and token."""
    from fakes.telegram_api import FakeTelegram

    async def main() -> None:
        fake = FakeTelegram()
        await fake.start()
        print(json.dumps({"base_url": fake.base_url, "token": fake.token}), flush=True)
        while True:          # until terminated; keep memory flat over long runs
            await asyncio.sleep(1)
            fake.calls.clear()
            fake.messages.clear()
    asyncio.run(main())


def start_fake() -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fake"], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def make_request(kind: str) -> Any:
    if kind == "httpx":
        from telegram.request import HTTPXRequest
        return HTTPXRequest(connection_pool_size=32, read_timeout=15, write_timeout=15)
    from connectors.telegram_http import AiohttpRequest
    return AiohttpRequest(32, read_timeout=15, write_timeout=15)


async def one_round(bot: Any, calls: int, concurrency: int) -> float:
    """CPU milliseconds of this process per send_message."""
    queue = iter(range(calls))

    async def worker(w: int) -> None:
        for i in queue:
            await bot.send_message(chat_id=1000 + w, text=f"<b>Agent</b>: answer number {i}", parse_mode="HTML")
    c0 = time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return (time.process_time() - c0) * 1000 / calls


async def run(args: argparse.Namespace, fake: dict[str, str]) -> dict[str, Any]:
    from telegram import Bot

    bots = {k: Bot(fake["token"], base_url=fake["base_url"], request=make_request(k)) for k in ("httpx", "aiohttp")}
    for b in bots.values():
        await b.initialize()
    try:
        for b in bots.values():           # warm-up: connections, imports, caches
            await one_round(b, max(50, args.calls // 4), args.concurrency)
        per: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        for r in range(args.rounds):
            order = ("httpx", "aiohttp") if r % 2 == 0 else ("aiohttp", "httpx")
            for k in order:
                per[k].append(await one_round(bots[k], args.calls, args.concurrency))
            print(f"round {r + 1}: httpx {per['httpx'][-1]:.3f} ms/call, aiohttp {per['aiohttp'][-1]:.3f} ms/call",
                  file=sys.stderr)
    finally:
        for b in bots.values():
            await b.shutdown()
    ratios = [a / h for h, a in zip(per["httpx"], per["aiohttp"])]
    return {"httpx_ms_per_call": per["httpx"], "aiohttp_ms_per_call": per["aiohttp"],
            "median_httpx_ms": statistics.median(per["httpx"]), "median_aiohttp_ms": statistics.median(per["aiohttp"]),
            "median_ratio_aiohttp_over_httpx": statistics.median(ratios)}


def main() -> None:
    if sys.argv[1:] == ["--serve-fake"]:
        serve_fake()
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="rounds per request class, interleaved (default 6)")
    ap.add_argument("--calls", type=int, default=400, help="send_message calls per round (default 400)")
    ap.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    proc, fake = start_fake()
    try:
        r = asyncio.run(run(args, fake))
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"client CPU per sendMessage ({args.rounds} interleaved rounds x {args.calls} calls, "
          f"{args.concurrency} in flight): httpx {r['median_httpx_ms']:.3f} ms, aiohttp {r['median_aiohttp_ms']:.3f} ms "
          f"(median ratio aiohttp/httpx {r['median_ratio_aiohttp_over_httpx']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
