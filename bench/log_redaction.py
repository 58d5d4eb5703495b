"""Cost of the log redaction filter (bot/logs.py RedactingFilter), A/B in one run.

Records every log record (message and arguments, before any cleaning) that a real web-chat
conversation makes at DEBUG: omnibot in this process (SQLite, demo flows, lexical matcher), a
WebSocket customer sending messages with ids, dates, amounts and phone numbers; and makes the
DEBUG lines of the same messages on Telegram (python-telegram-bot's call dumps, full of ids and
dates: where the phone check cost 0.4-1.4 ms a line, issue 20). Then cleans the
same records with the filter's phone check as it was (libphonenumber's matcher over the whole
text, ``A``) and as it is (the matcher only on stretches that can hold a number, remembered per
stretch, ``B``), interleaved and repeated; prints the cost per log line and per customer message,
and checks both give the same masked text.

    python bench/log_redaction.py [--messages 30] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))          # serving.py: the app on 127.0.0.1, as the tests start it

TEXTS = ["when are you open?", "how long does shipping take to Germany?", "order AB123456 of 2026-11-30",
         "call me on +44 20 7946 0958 please", "my number is (415) 555-2671", "it cost €1,234.56",
         "ticket C-1042 is still open", "the parcel 00340434161234567890 never came",
         "what is your return policy", "030 12345678 is my landline"]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, int, object, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.msg, record.args))


async def record_conversation(n: int) -> list[tuple[str, int, object, object]]:
    from bot.config import parse_config
    from serving import serving

    tmp = Path(tempfile.mkdtemp(prefix="omnibot-bench-"))
    config = parse_config(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "sqlite:///{tmp / 'omnibot.sqlite3'}", media_dir: "{tmp / 'media'}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
nlu: {{matcher: lexical}}
handoff: {{default_team: support, teams: {{support: {{name: Care}}, complaints: {{name: Complaints}}}}}}
logging: {{level: DEBUG, customer_text: true}}
""", path=str(tmp / "config.yaml"))
    cap = Capture()
    root = logging.getLogger()
    async with serving(config) as r:
        root.addHandler(cap)
        root.setLevel(logging.DEBUG)
        try:
            async with r.http.ws_connect(r.ws_url) as ws:
                await ws.send_json({"type": "hello", "token": None, "last_id": 0})
                while (await ws.receive_json(timeout=10))["type"] != "welcome":
                    pass
                for i in range(n):
                    cid = str(uuid.uuid4())
                    await ws.send_json({"type": "message", "client_id": cid, "text": TEXTS[i % len(TEXTS)]})
                    while True:                          # until the bot's reply (or a quiet second)
                        try:
                            f = await ws.receive_json(timeout=2)
                        except asyncio.TimeoutError:
                            break
                        if f.get("type") == "message" and f["message"].get("direction") == "out":
                            break
        finally:
            root.removeHandler(cap)
    return cap.records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=30, help="customer messages in the conversation")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved A/B rounds")
    args = ap.parse_args()

    from bot import privacy
    from bot.logs import RedactingFilter

    web = asyncio.run(record_conversation(args.messages))
    tg = telegram_records(args.messages)
    new, old = privacy._phones, privacy._phones_full
    flt = RedactingFilter(customer_text=True)

    def run(impl: object, recs: list) -> tuple[float, list[str]]:
        privacy._phones = impl            # type: ignore[assignment]
        privacy._phones_in.cache_clear()  # each round starts cold: the cache fills within the run
        out = []
        t = time.perf_counter()
        for name, level, msg, a in recs:
            r = logging.LogRecord(name, level, __file__, 1, msg, a, None)
            flt.clean(r)
            out.append(r.msg)
        return time.perf_counter() - t, out

    run(old, web[:50] + tg[:50])          # load libphonenumber's metadata before timing
    sets = {"web chat (recorded)": web, "telegram-shaped": tg}
    times: dict[tuple[str, str], list[float]] = {}
    same = True
    for _ in range(args.rounds):
        for name, recs in sets.items():
            outs = {}
            for label, impl in (("A", old), ("B", new)):
                t, outs[label] = run(impl, recs)
                times.setdefault((name, label), []).append(t)
            same = same and outs["A"] == outs["B"]
    privacy._phones = new                 # type: ignore[assignment]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {platform.system()} "
          f"python {platform.python_version()}; {args.messages} customer messages; {args.rounds} interleaved "
          "rounds, median; A = matcher over the whole text (before), B = matcher per stretch, remembered (now)")
    print(f"{'':22} {'records':>8} {'A/line':>9} {'B/line':>9} {'A/message':>10} {'B/message':>10} {'A/B':>6}")
    for name, recs in sets.items():
        a = statistics.median(times[(name, "A")])
        b = statistics.median(times[(name, "B")])
        n = max(1, len(recs))
        print(f"{name:22} {len(recs):8d} {a / n * 1e3:7.3f}ms {b / n * 1e3:7.3f}ms "
              f"{a / args.messages * 1e3:8.3f}ms {b / args.messages * 1e3:8.3f}ms {a / b:5.1f}x")
    print(f"same masked text from A and B: {'yes' if same else 'NO'}")


def telegram_records(n: int) -> list[tuple[str, int, object, object]]:
    """The DEBUG lines python-telegram-bot and omnibot write per Telegram message (shapes taken from
    a real run: the getUpdates result, the stored message, the sendMessage call), with each
    message's own ids, dates and text, so nothing repeats between messages but what repeats in life
    (the chat id, the year)."""
    out = []
    for i in range(n):
        uid, mid, date = 987654321 + i, 4242 + 2 * i, 1764500000 + 7 * i
        text = TEXTS[i % len(TEXTS)]
        out += [
            ("telegram.Bot", logging.DEBUG, "Call to Bot API endpoint `%s` finished with return value `%s`",
             ("getUpdates", f"[Update(message=Message(channel_chat_created=False, chat=Chat(first_name='Ann', "
                            f"id=123456789, type=<ChatType.PRIVATE>), date=datetime.datetime(2026, 11, 30, 19, "
                            f"{i % 60}, {(7 * i) % 60}, tzinfo=<UTC>), from_user=User(first_name='Ann', "
                            f"id=123456789, is_bot=False, language_code='en'), message_id={mid}, text={text!r}), "
                            f"update_id={uid})]")),
            ("bot.runtime", logging.DEBUG, "message %s in %s: %s", (mid, "conv_cc1f25dd676552ac", text)),
            ("telegram.Bot", logging.DEBUG, "Calling Bot API endpoint `%s` with parameters `%s`",
             ("sendMessage", f"{{'chat_id': 123456789, 'text': 'Thanks, noted.', 'parse_mode': 'HTML', "
                             f"'reply_parameters': {{'message_id': {mid}}}, 'date': {date}}}")),
        ]
    return out


if __name__ == "__main__":
    main()
