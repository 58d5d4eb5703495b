"""Logging set-up with redaction: no secret, session token or card number reaches a log.

``setup_logging`` puts one handler on the root logger and makes every log record pass the
``RedactingFilter`` as it is created (a log-record factory), so what any handler sees (ours,
pytest's, one a library adds) is already clean, for every logger and level, third-party ones
included. The filter also sits on our handler, for records made before set-up.

What it removes:

- every registered secret (the configured ones, and generated ones as soon as they exist:
  ``add_secrets``), and token shapes: Telegram bot tokens, Slack tokens, Slack request
  signatures, our own HMAC-signed tokens (web-chat sessions, agent cookies), ``Bearer ...``,
  and the values of secret-carrying headers and fields (``Authorization``, ``Cookie``,
  ``X-Telegram-Bot-Api-Secret-Token``, ``X-Slack-Signature``, ``token``, ``secret_token`` ...);
- payment card numbers (13-19 digits, optional spaces or dashes, passing the Luhn check), and every
  other kind of personal data :mod:`bot.privacy` finds (security codes, IBANs, e-mail addresses, phone
  numbers, the admin's ``privacy.patterns``) that ``privacy.policy`` masks in ``logs`` (by default:
  all), in the message, its arguments and tracebacks, at every level;
- database call arguments (aiosqlite logs every call with its arguments at DEBUG): only the
  operation's name and how many arguments it had are kept;
- unless ``logging.customer_text`` is on: what customers write. Our own log lines pass customer
  text wrapped in ``customer(...)``, which prints as ``<customer text>``; in third-party lines
  the values of text-like fields (``text``, ``first_name``, ``email`` ...) in the dicts, JSON,
  reprs and form bodies they dump are replaced by ``'<customer text>'``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from typing import IO, Any, Callable, Iterable

from bot.privacy import luhn   # the one Luhn check, for the log filter and the masking

MASK = "***"
HIDDEN = "<customer text>"

# Telegram bot tokens (123456789:AA...; in URLs as bot123456789:AA...), Slack tokens and request
# signatures, our own signed tokens (base64url value "." 43-character HMAC-SHA256, bot.auth.Signer).
_TOKENS = re.compile("|".join([
    r"(?<![A-Za-z0-9])(?:bot)?\d{5,}:[A-Za-z0-9_-]{30,}",
    r"bot\d{3,}:[A-Za-z0-9_-]{20,}",
    r"\bxox[a-z][-.][A-Za-z0-9._-]{10,}",
    r"\bxapp-[A-Za-z0-9-]{10,}",
    r"\bv0=[0-9a-fA-F]{64}\b",
    r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])",
    r"\b(?:Bearer|bearer|BEARER)\s+[A-Za-z0-9._~+/=-]{6,}",
    r"\bBasic\s+[A-Za-z0-9+/]{8,}={0,2}",
]))

_UNQUOTED = r"""[^\s,;&'"{}()\[\]]+(?=[\s,;&'"{}\)\]]|$)"""     # a bare value, not Message(...)
_QUOTED = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\\""""


def _field_pattern(keys: str, unquoted: str) -> re.Pattern[str]:
    """``key: value`` / ``'key': 'value'`` / ``"key": "value"`` / ``key=value`` with the value in group ``v``."""
    return re.compile(
        rf"""(?P<k>(?<![A-Za-z0-9_-])(?P<q>\\?['"]?)(?:{keys})(?P=q)\s*[:=]\s*)(?P<v>{_QUOTED}|{unquoted})""",
        re.IGNORECASE)


# Values of secret-carrying headers and fields, whatever the quoting (dict repr, JSON, header line,
# query string, form body, keyword repr).
_SECRET_FIELDS = _field_pattern(
    r"authorization|proxy-authorization|cookie|set-cookie|x-telegram-bot-api-secret-token|x-slack-signature"
    r"|token|access_token|bot_token|app_token|secret_token|signing_secret|client_secret|app_secret|secret"
    r"|password",
    _UNQUOTED)

# Fields that carry what customers (and agents) write, or who they are, in the payloads libraries dump
# (Telegram updates and Bot API calls, Slack Web API bodies, Socket Mode envelopes, form bodies).
_CUSTOMER_FIELDS = _field_pattern(
    r"text|caption|first_name|last_name|full_name|username|name|real_name|display_name|email|phone_number"
    r"|title|description|initial_comment|fallback|pretext|value|data|query|comment|payload|sender_name"
    r"|customer_name|user_name|message|body|slots",
    _UNQUOTED)

_NO_DIGITS = str.maketrans("", "", "0123456789")
_DIGIT_RUN = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,}(?![\d])")


def mask_cards(text: str) -> str:
    """Replace anything that looks like a payment card number with ``[card ****1234]``."""
    def sub(m: re.Match[str]) -> str:
        run = m.group(0)
        groups = re.split(r"[ -]", run)
        # the whole run, or the longest stretch of its space/dash-separated groups, 13-19 digits passing Luhn
        for i in range(len(groups)):
            best = 0
            for j in range(i + 1, len(groups) + 1):
                digits = "".join(groups[i:j])
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn(digits):
                    best = j
            if best:
                digits = "".join(groups[i:best])
                before, after = " ".join(groups[:i]), sub_rest(" ".join(groups[best:]))
                return " ".join(p for p in (before, f"[card ****{digits[-4:]}]", after) if p)
        return run

    def sub_rest(rest: str) -> str:      # a second card in the same run
        return _DIGIT_RUN.sub(sub, rest) if len(rest) >= 13 else rest
    if len(text) - len(text.translate(_NO_DIGITS)) < 13:
        return text
    return _DIGIT_RUN.sub(sub, text)


class CustomerText:
    """A log argument that customers wrote; shown only when ``logging.customer_text`` is on."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return HIDDEN

    __repr__ = __str__


def customer(value: Any) -> CustomerText:
    """Wrap customer-written text (message text, names, e-mail addresses, slot values) for a log call:
    ``log.debug("message from %s: %s", conv_id, customer(text))``."""
    return CustomerText(value)


def _summarise_call(fn: Any) -> str:
    """aiosqlite's ``functools.partial(<bound method _Ops.record_inbound ...>, Inbound(...))`` without its arguments."""
    if isinstance(fn, functools.partial):
        name = getattr(fn.func, "__qualname__", None) or getattr(fn.func, "__name__", None) or type(fn.func).__name__
        args = list(fn.args)
        sql = ""
        if name.rsplit(".", 1)[-1] in ("execute", "executemany", "executescript") and args and isinstance(args[0], str):
            sql = " ".join(args.pop(0).split())      # the statement is ours; its parameters are data
            sql = repr(sql if len(sql) <= 160 else sql[:157] + "...") + ", "
        n = len([a for a in args if a is not None and not (isinstance(a, (tuple, list, dict)) and not a)])
        n += len(fn.keywords or {})
        return f"{name}({sql}{n} argument{'s' if n != 1 else ''} not logged)"
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class RedactingFilter(logging.Filter):
    """Cleans a record once: secrets, tokens, card numbers, database arguments and (unless allowed)
    customer text. Usable as a handler or logger filter; ``setup_logging`` also runs it on every
    record as it is created."""

    def __init__(self, secrets: Iterable[str] = (), *, customer_text: bool = False, privacy: Any = None) -> None:
        super().__init__()
        self.customer_text = customer_text
        from bot.privacy import Privacy
        # what privacy.policy masks in logs (bot.config.PrivacyConfig; None: the defaults, every kind)
        self.privacy = privacy if isinstance(privacy, Privacy) else Privacy(privacy)
        self.secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Register more secret values (4 characters or more); longest replaced first."""
        new = {s for s in secrets if s and len(s) >= 4} - set(self.secrets)
        if new:
            self.secrets = sorted(set(self.secrets) | new, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with secrets, token shapes, card numbers and (unless allowed) customer fields removed."""
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        text = _TOKENS.sub(MASK, text)     # before the fields: "Authorization: Bearer x" loses "x" too
        if ":" in text or "=" in text:
            text = _SECRET_FIELDS.sub(lambda m: m.group("k") + _masked_like(m.group("v")), text)
            if not self.customer_text:
                text = _CUSTOMER_FIELDS.sub(_hide_customer_field, text)
        return self.privacy.logs(mask_cards(text))

    def clean(self, record: logging.LogRecord) -> None:
        if record.__dict__.get("_omnibot_clean") is self:    # made by the factory, now at our handler
            return
        record._omnibot_clean = self  # type: ignore[attr-defined]
        args = record.args
        if isinstance(args, tuple) and args:
            if record.name == "aiosqlite" or record.name.startswith("aiosqlite."):
                args = tuple(_summarise_call(a) if callable(a) else a for a in args)
            if self.customer_text:
                args = tuple(a.value if isinstance(a, CustomerText) else a for a in args)
        try:
            msg = str(record.msg) % args if args else str(record.msg)
        except Exception:  # noqa: BLE001 - a bad format string must not make the log call raise
            msg = f"{record.msg} {args!r}"
        try:
            record.msg, record.args = self.redact(msg), None
        except Exception:  # noqa: BLE001 - never let a record through uncleaned
            record.msg, record.args = "<log message could not be cleaned>", None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)

    def filter(self, record: logging.LogRecord) -> bool:
        self.clean(record)
        return True


def _masked_like(value: str) -> str:
    for q in ('\\"', "'", '"'):
        if value.startswith(q) and value.endswith(q) and len(value) >= 2 * len(q):
            return q + MASK + q
    return MASK


def _hide_customer_field(m: re.Match[str]) -> str:
    v = m.group("v")
    for q in ('\\"', "'", '"'):
        if v.startswith(q) and v.endswith(q) and len(v) >= 2 * len(q):
            return m.group("k") + q + HIDDEN + q
    # unquoted (form bodies, key=value): numbers and booleans are not text
    if re.fullmatch(r"-?\d+(\.\d+)?|True|False|None|true|false|null", v):
        return m.group(0)
    return m.group("k") + HIDDEN


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out)


class _CleaningFactory:
    """A log-record factory that cleans each record with the active filter as it is made."""

    def __init__(self, base: Callable[..., logging.LogRecord], flt: RedactingFilter) -> None:
        self.base, self.filter = base, flt

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        self.filter.clean(record)
        return record


# Libraries that log full request URLs (with the Telegram bot token) at INFO.
_QUIET = ("httpx", "httpcore", "aiohttp.access")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one at set-up (as
    Python's own last-resort handler): a line a library thread logs while a test harness swaps
    or closes its captured stderr goes to the current one instead of raising "I/O operation on
    closed file"."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr


def setup_logging(level: str = "INFO", *, secrets: Iterable[str] = (), fmt: str = "text",
                  customer_text: bool = False, stream: IO[str] | None = None, privacy: Any = None) -> RedactingFilter:
    """Configure the root logger (again: the previous set-up is replaced, never stacked).

    Args:
        level: root level (DEBUG also shows the libraries' DEBUG lines, cleaned).
        secrets: values never to log; more can be added later with ``add_secrets``.
        fmt: ``text`` or ``json`` (one object per line).
        customer_text: let customer-written text into the log lines.
        stream: where to write (default: standard error).
        privacy: the ``privacy`` config section (what is masked in logs, the admin's patterns);
            None: the defaults.

    Returns:
        The filter, to register more secrets on.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_omnibot", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler._omnibot = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    flt = RedactingFilter(secrets, customer_text=customer_text, privacy=privacy)
    handler.addFilter(flt)
    root.addHandler(handler)
    root.setLevel(level)
    base = logging.getLogRecordFactory()
    if isinstance(base, _CleaningFactory):
        base = base.base
    logging.setLogRecordFactory(_CleaningFactory(base, flt))
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return flt


def configure_logging(config: Any, *, level: str | None = None, stream: IO[str] | None = None) -> RedactingFilter:
    """``setup_logging`` from a ``bot.config.Config``'s ``logging`` section and secrets (``omnibot run``)."""
    return setup_logging(level or config.logging.level, secrets=config.secrets(), fmt=config.logging.format,
                         customer_text=config.logging.customer_text, stream=stream,
                         privacy=getattr(config, "privacy", None))


def active_filter() -> RedactingFilter | None:
    """The filter ``setup_logging`` installed, if any."""
    factory = logging.getLogRecordFactory()
    return factory.filter if isinstance(factory, _CleaningFactory) else None


def add_secrets(*values: str | None) -> None:
    """Never log these values (call as soon as a secret is generated or read). A no-op before
    ``setup_logging``; the token patterns still apply to generated tokens then."""
    flt = active_filter()
    if flt is not None:
        flt.add(*values)


def reset_logging() -> None:
    """Undo ``setup_logging`` (for tests): remove its handler and record factory, and put the root
    level back to Python's default."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for h in list(root.handlers):
        if getattr(h, "_omnibot", False):
            root.removeHandler(h)
    factory = logging.getLogRecordFactory()
    if isinstance(factory, _CleaningFactory):
        logging.setLogRecordFactory(factory.base)
