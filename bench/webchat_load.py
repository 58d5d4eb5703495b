"""Web-chat round-trip benchmark: N concurrent customers ask routine questions.

Starts omnibot (SQLite, demo flows) and, as the ceiling, a bare aiohttp
WebSocket echo server, each in its own process on 127.0.0.1; drives both with
the same load for the same time; prints messages/s, p50/p95/p99 latency and
the server's peak RSS, and omnibot's figures as a ratio of the echo server's.

    python bench/webchat_load.py [--clients 64] [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["when are you open?", "how long does shipping take", "what is your return policy",
             "what payment methods do you accept"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_omnibot(tmp: Path, port: int) -> subprocess.Popen[str]:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
storage: {{url: "sqlite:///{tmp / 'bench.sqlite3'}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
webchat: {{messages_per_minute: 1000000}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
logging: {{level: WARNING}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-c", str(cfg)], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if re.search(r"web chat:\s+http://", line):
            return proc
    raise SystemExit("omnibot did not start")


def start_echo(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "echo_server.py"), str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


async def customer(url: str, stop_at: float, latencies: list[float], errors: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            await ws.send_json({"type": "hello", "token": None})
            while (await ws.receive_json())["type"] != "welcome":
                pass
            i = 0
            while time.monotonic() < stop_at:
                q = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                t0 = time.perf_counter()
                await ws.send_json({"type": "message", "client_id": str(uuid.uuid4()), "text": q})
                while True:
                    f = await asyncio.wait_for(ws.receive_json(), 30)
                    if f["type"] == "message":
                        break
                    if f["type"] == "error":
                        errors.append(f["code"])
                        break
                latencies.append(time.perf_counter() - t0)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


async def drive(url: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds
    t0 = time.monotonic()
    await asyncio.gather(*(customer(url, stop_at, latencies, errors) for _ in range(clients)))
    elapsed = time.monotonic() - t0
    return {"messages": len(latencies), "msg_per_s": len(latencies) / elapsed, "p50_ms": pct(latencies, 50),
            "p95_ms": pct(latencies, 95), "p99_ms": pct(latencies, 99), "errors": len(errors)}


def show(name: str, r: dict[str, float]) -> None:
    print(f"{name:<10} {r['msg_per_s']:>9.0f} msg/s   p50 {r['p50_ms']:>7.1f} ms   p95 {r['p95_ms']:>7.1f} ms   "
          f"p99 {r['p99_ms']:>7.1f} ms   peak RSS {r['peak_rss_mb']:>6.1f} MB   ({int(r['messages'])} round trips, "
          f"{int(r['errors'])} errors)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64, help="concurrent customers (default 64)")
    ap.add_argument("--seconds", type=float, default=10, help="load time per server (default 10)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("echo", "omnibot"):
            port = free_port()
            print(f"[{name}] starting server on 127.0.0.1:{port} ...", file=sys.stderr)
            proc = start_echo(port) if name == "echo" else start_omnibot(Path(tmp), port)
            try:
                print(f"[{name}] {args.clients} customers for {args.seconds:.0f} s ...", file=sys.stderr)
                r = asyncio.run(drive(f"http://127.0.0.1:{port}/webchat/ws", args.clients, args.seconds))
                r["peak_rss_mb"] = peak_rss_mb(proc.pid)
                results[name] = r
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"\nweb-chat round trip, {args.clients} concurrent customers, {args.seconds:.0f} s each, "
          f"{os.cpu_count()} CPUs")
    show("echo", results["echo"])
    show("omnibot", results["omnibot"])
    e, o = results["echo"], results["omnibot"]
    print(f"omnibot / echo ceiling: throughput x{o['msg_per_s'] / e['msg_per_s']:.2f}, "
          f"p50 latency x{o['p50_ms'] / e['p50_ms']:.1f}, p99 latency x{o['p99_ms'] / e['p99_ms']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
