"""CPU to read one platform answer in connectors/lean_http.py's _Conn (parsing, collecting, the
Response), A/B against the file at another git revision, in one process (issue 20).

No sockets: each answer is handed to ``data_received`` whole, as a small JSON answer arrives, and
its future's result read. Rounds interleave the two (forwards, then backwards); medians and the
ratio to the baseline are printed:

    python bench/http_parse.py [--rev 1524763] [--rounds 7] [--answers 20000]

1524763 is the last revision with the hand-written parser (before httptools).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BODY = b'{"ok":true,"result":{"message_id":5}}'
DATE = b"Date: Tue, 01 Dec 2026 12:00:00 GMT\r\n"
ANSWERS = {
    # as aiohttp's server (the Telegram fake, bench/http_client.py) and nginx (Telegram, Graph) send them
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s"
                      b"Server: Python/3.11 aiohttp/3.10.5\r\n\r\n%s" % (len(BODY), DATE, BODY),
    "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n%s"
               b"Server: nginx\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (DATE, len(BODY), BODY),
}


class _Transport:
    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def per_answer(module: Any, data: bytes, n: int, loop: asyncio.AbstractEventLoop) -> float:
    """Microseconds of CPU per answer."""
    conn = module._Conn()
    conn.connection_made(_Transport())
    try:
        conn.start(loop)
        start = conn.start
    except TypeError:          # the hand parser's start(loop, no_body)
        def start(loop: asyncio.AbstractEventLoop) -> Any:
            return conn.start(loop, no_body=False)
    t0 = time.process_time()
    for _ in range(n):
        fut = start(loop)
        conn.data_received(data)
        assert fut.result().body == BODY
    return (time.process_time() - t0) / n * 1e6


async def run(args: argparse.Namespace) -> None:
    from http_client import lean_at

    import connectors.lean_http as current

    base = sys.modules[lean_at(args.rev).__module__]
    loop = asyncio.get_running_loop()
    print(f"CPU per answer read by _Conn ({args.rounds} interleaved rounds x {args.answers}):")
    for label, data in ANSWERS.items():
        a: list[float] = []
        b: list[float] = []
        for r in range(args.rounds):
            pairs = [(base, a), (current, b)]
            for module, acc in (pairs if r % 2 == 0 else pairs[::-1]):
                acc.append(per_answer(module, data, args.answers, loop))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"  {label:15s} {args.rev}: {ma:5.1f} us   this tree: {mb:5.1f} us   x{mb / ma:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="1524763", help="git revision of the baseline (default 1524763)")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per variant, interleaved (default 7)")
    ap.add_argument("--answers", type=int, default=20000, help="answers per round (default 20000)")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
