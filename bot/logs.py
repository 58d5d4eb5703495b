"""Logging set-up with a redaction filter: secrets and bot tokens never reach a log."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Iterable

# Telegram bot tokens in URLs (https://api.telegram.org/bot123:ABC.../sendMessage) and Slack tokens.
_TOKEN_PATTERNS = [
    re.compile(r"bot\d{3,}:[A-Za-z0-9_-]{20,}"),
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"xapp-[A-Za-z0-9-]{10,}"),
]


class RedactingFilter(logging.Filter):
    """Replaces known secrets and token-shaped strings in every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        for p in _TOKEN_PATTERNS:
            text = p.sub("***", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = self.redact(msg)
        if red != msg:
            record.msg, record.args = red, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out)


def setup_logging(level: str = "INFO", *, secrets: Iterable[str] = (), fmt: str = "text") -> RedactingFilter:
    """Configure the root logger once; returns the filter so more secrets can be added."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_omnibot", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._omnibot = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    flt = RedactingFilter(secrets)
    handler.addFilter(flt)
    root.addHandler(handler)
    root.setLevel(level)
    # These log full request URLs at INFO (Telegram URLs carry the bot token).
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return flt
