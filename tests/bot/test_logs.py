"""bot.logs: what never reaches a log line (secrets, token shapes, card numbers, database arguments)
and what reaches it only when ``logging.customer_text`` says so."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from pathlib import Path
from typing import Iterator

import aiosqlite
import pytest

from bot.auth import Signer
from bot.config import parse_config
from bot.logs import (HIDDEN, RedactingFilter, active_filter, add_secrets, configure_logging, customer,
                      mask_cards, reset_logging, setup_logging)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The product's set-up at DEBUG, writing to a buffer; undone afterwards."""
    root = logging.getLogger()
    level, factory = root.level, logging.getLogRecordFactory()
    buf = io.StringIO()
    setup_logging("DEBUG", secrets=["configured-s3cret"], stream=buf)
    try:
        yield buf
    finally:
        reset_logging()
        root.setLevel(level)
        assert logging.getLogRecordFactory() is factory


# -- card numbers -----------------------------------------------------------------


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
                                  "378282246310005", "3782 822463 10005", "6011111111111117",
                                  "4000 0566 5566 5556 123"[:19]])
def test_card_numbers_are_masked(card: str) -> None:
    digits = card.replace(" ", "").replace("-", "")
    out = mask_cards(f"my card {card}, thanks")
    assert digits not in out.replace(" ", "").replace("-", "")
    assert out == f"my card [card ****{digits[-4:]}], thanks"


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",            # fails the Luhn check
    "order AB123456, 12 items",
    "due_outbox 1796039289.2543724",  # a timestamp
    "ts 1700000000.000100",
    "411111111111",                   # 12 digits: too short
    "2026-11-30 11:48:15",
])
def test_other_numbers_are_kept(text: str) -> None:
    assert mask_cards(text) == text


def test_card_inside_a_longer_run_of_numbers() -> None:
    out = mask_cards("ref 12 4111 1111 1111 1111 ok")
    assert "4111 1111 1111 1111" not in out and "****1111" in out and out.startswith("ref 12 ")


# -- secrets and token shapes ---------------------------------------------------------


def test_token_shapes_and_secret_headers_are_masked() -> None:
    f = RedactingFilter()
    session = Signer("k", "webchat-session").sign("v_0123456789abcdef0123456789abcdef")
    cookie = Signer("k", "agent-session").sign("Anna Smith")
    cases = {
        f"hello frame token {session}": session,
        f"Cookie: omnibot_agent={cookie}; other=1": cookie,
        "Authorization: Bearer agt-Zq9xXkJ2mB7": "agt-Zq9xXkJ2mB7",
        "{'Authorization': 'Bearer agt-Zq9xXkJ2mB7'}": "agt-Zq9xXkJ2mB7",
        "{'X-Telegram-Bot-Api-Secret-Token': 'whs_1234abcd'}": "whs_1234abcd",
        "X-Telegram-Bot-Api-Secret-Token: whs_1234abcd": "whs_1234abcd",
        "x-slack-signature: v0=" + "ab" * 32: "ab" * 32,
        "(signature: v0=" + "cd" * 32 + ", timestamp: 1)": "cd" * 32,
        '{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "team_id": "T1"}': "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "GET /webchat/media/3?token=abc.def&x=1": "abc.def",
        "{'url': 'https://x', 'secret_token': 'whs_1234abcd'}": "whs_1234abcd",
        "token=xoxb-1-2-abcdefghijkl&channel=C1": "xoxb-1-2-abcdefghijkl",
        "POST http://127.0.0.1:1/bot987654321:AAH-abcdefghijklmnopqrstuvwxyz12345/getMe":
            "AAH-abcdefghijklmnopqrstuvwxyz12345",
        "xapp-1-A0123-9f8e7d6c5b4a": "9f8e7d6c5b4a",
    }
    for line, secret in cases.items():
        out = f.redact(line)
        assert secret not in out, (line, out)
        assert "***" in out, (line, out)


def test_secrets_added_after_setup_are_masked(logs: io.StringIO) -> None:
    lg = logging.getLogger("omnibot.test.logs")
    add_secrets("generated-4f9a8b7c", None, "")
    lg.debug("meta app_secret=%s and %s", "generated-4f9a8b7c", "configured-s3cret")
    lg.warning("plain generated-4f9a8b7c")
    out = logs.getvalue()
    assert "generated-4f9a8b7c" not in out and "configured-s3cret" not in out
    assert out.count("***") == 3


def test_add_secrets_without_setup_is_a_no_op() -> None:
    assert active_filter() is None
    add_secrets("whatever-secret")       # nothing to register on, and no error


def test_every_handler_and_logger_sees_clean_records(logs: io.StringIO) -> None:
    """Records are cleaned as they are made: a library's own handler (no propagation) and a second
    handler on the root logger get the redacted text too, at DEBUG."""
    other = io.StringIO()
    lib = logging.getLogger("somelib.transport")
    h = logging.StreamHandler(other)
    lib.addHandler(h)
    lib.propagate = False
    lib.setLevel(logging.DEBUG)
    try:
        lib.debug("sending %s with headers %s", {"text": "my card is 4111 1111 1111 1111"},
                  {"Authorization": "Bearer configured-s3cret"})
    finally:
        lib.removeHandler(h)
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    out = other.getvalue()
    assert "4111" not in out and "configured-s3cret" not in out and "my card" not in out
    assert "'text': '<customer text>'" in out and "'Authorization': '***'" in out


def test_exception_text_is_cleaned(logs: io.StringIO) -> None:
    try:
        raise ValueError("bad token configured-s3cret for card 4111111111111111")
    except ValueError:
        logging.getLogger("omnibot.test.logs").exception("failed")
    out = logs.getvalue()
    assert "Traceback" in out and "ValueError: bad token *** for card [card ****1111]" in out


def test_a_bad_format_string_never_raises(logs: io.StringIO) -> None:
    logging.getLogger("omnibot.test.logs").info("count %d", "configured-s3cret")
    assert "configured-s3cret" not in logs.getvalue() and "count" in logs.getvalue()


def test_setup_twice_replaces_and_reset_restores() -> None:
    root = logging.getLogger()
    level, factory = root.level, logging.getLogRecordFactory()
    try:
        first = setup_logging("INFO", stream=io.StringIO())
        second = setup_logging("INFO", stream=io.StringIO())
        assert active_filter() is second and active_filter() is not first
        assert len([h for h in root.handlers if getattr(h, "_omnibot", False)]) == 1
    finally:
        reset_logging()
        root.setLevel(level)
    assert logging.getLogRecordFactory() is factory
    assert not [h for h in root.handlers if getattr(h, "_omnibot", False)]


# -- database arguments -----------------------------------------------------------


async def test_aiosqlite_debug_lines_keep_the_statement_not_the_arguments(logs: io.StringIO, tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "x.sqlite3") as db:
        await db.execute("CREATE TABLE meta (k TEXT, v TEXT)")
        await db.execute("INSERT INTO meta VALUES (?, ?)", ("app_secret", "Qm9uSm91ckxlTW9uZGUhIQ-XyZ"))
        await db.commit()
    await asyncio.to_thread(db._thread.join, 5)      # its last DEBUG line follows the close
    out = logs.getvalue()
    assert "aiosqlite: executing Connection.execute('INSERT INTO meta VALUES (?, ?)', 1 argument not logged)" in out
    assert "Qm9uSm91ckxlTW9uZGUhIQ-XyZ" not in out and "app_secret" not in out


def test_aiosqlite_arguments_stay_out_even_with_customer_text_on() -> None:
    f = RedactingFilter(customer_text=True)

    class Ops:
        def record_inbound(self, inbound: object) -> None: ...

    call = functools.partial(Ops().record_inbound, "Inbound(text='hello from Zed')")
    rec = logging.LogRecord("aiosqlite", logging.DEBUG, __file__, 1, "executing %s", (call,), None)
    f.filter(rec)
    assert rec.getMessage() == ("executing test_aiosqlite_arguments_stay_out_even_with_customer_text_on."
                                "<locals>.Ops.record_inbound(1 argument not logged)")


# -- customer text ------------------------------------------------------------------


def _record(msg: str, *args: object, name: str = "bot.runtime") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_customer_text_is_hidden_by_default() -> None:
    f = RedactingFilter()
    rec = _record("message %s in %s: %s", 7, "conv_1", customer("I am Zed, zed@example.com"))
    f.filter(rec)
    assert rec.getMessage() == f"message 7 in conv_1: {HIDDEN}"
    assert str(customer("x")) == repr(customer("x")) == HIDDEN       # also without any set-up


def test_customer_text_shown_when_the_setting_is_on_but_still_redacted() -> None:
    f = RedactingFilter(["configured-s3cret"], customer_text=True)
    rec = _record("message: %s", customer("I am Zed, card 4111 1111 1111 1111, configured-s3cret"))
    f.filter(rec)
    assert rec.getMessage() == "message: I am Zed, card [card ****1111], ***"


@pytest.mark.parametrize("line, kept", [
    ("Calling Bot API endpoint `sendMessage` with parameters `{'chat_id': 7, 'text': \"it's Zed here\"}`",
     "'chat_id': 7"),
    ("Processing update Update(message=Message(chat=Chat(id=7, type='private'), text='Zed here', "
     "from_user=User(first_name='Zed', id=7)), update_id=3)", "update_id=3"),
    ('on_message invoked: (message: {"envelope_id": "e1", "payload": {"event": {"text": "Zed here"}}})',
     '"envelope_id": "e1"'),
    ("Invalid request signature detected (body: token=abc&user_name=zed&text=Zed+here&channel_id=C1)",
     "channel_id=C1"),
    ("json: {'blocks': [{'type': 'section', 'text': {'type': 'mrkdwn', 'text': '*Customer*: Zed here'}}]}",
     "'type': 'mrkdwn'"),
    ('frame {\\"type\\": \\"message\\", \\"text\\": \\"Zed here\\"}', '\\"type\\"'),
    ("users.info: {'real_name': 'Zed Zedson', 'profile': {'email': 'zed@example.com'}}", "'profile'"),
])
def test_customer_fields_in_library_lines_are_hidden(line: str, kept: str) -> None:
    off, on = RedactingFilter(), RedactingFilter(customer_text=True)
    out = off.redact(line)
    assert "Zed" not in out and "zed" not in out, out
    assert HIDDEN in out and kept in out, out
    assert "Zed" in on.redact(line)


def test_customer_text_setting_in_config(tmp_path: Path) -> None:
    assert parse_config("", path=str(tmp_path / "c.yaml")).logging.customer_text is False
    cfg = parse_config("logging: {level: DEBUG, customer_text: true}", path=str(tmp_path / "c.yaml"))
    assert cfg.logging.customer_text is True
    root = logging.getLogger()
    level = root.level
    buf = io.StringIO()
    try:
        flt = configure_logging(cfg, stream=buf)
        assert flt.customer_text is True and root.level == logging.DEBUG
        logging.getLogger("bot.runtime").debug("message %s: %s", 1, customer("hello Zed"))
    finally:
        reset_logging()
        root.setLevel(level)
    assert "message 1: hello Zed" in buf.getvalue()


def test_two_cards_in_one_run_and_long_runs_of_small_numbers() -> None:
    out = mask_cards("4111 1111 1111 1111 5555 5555 5555 4444")
    assert out == "[card ****1111] [card ****4444]"
    many = " ".join(["7"] * 300)                       # no card, and quick
    assert mask_cards(many) == many


def test_a_real_telegram_update_repr_keeps_its_shape_but_not_the_customer() -> None:
    """What python-telegram-bot prints at DEBUG ("Processing update %s", the Bot API calls)."""
    from telegram import Update

    from fakes.telegram_api import text_update

    upd = Update.de_json(text_update(5, "hi, Zed here: 4111 1111 1111 1111", first_name="Zedd",
                                     last_name="Zedson", username="zedz"), None)
    for shown in (upd, upd.to_dict()):
        out = RedactingFilter().redact(f"Processing update {shown}")
        assert "Zed" not in out and "zedz" not in out and "4111" not in out, out
        assert "update_id" in out and ("'id': 5" in out or "id=5" in out)
    assert "Update(message=Message(" in RedactingFilter().redact(repr(upd))


def test_every_detected_kind_is_masked_in_every_record_at_every_level(undo_logging_setup: None) -> None:
    """bot.privacy's kinds (security codes, IBANs, e-mail, phone, admin patterns) in the message, its
    arguments and tracebacks, even with customer text allowed into the logs; negative controls stay."""
    import io

    from bot.config import parse_config

    cfg = parse_config(r"privacy: {patterns: [{name: national_id, pattern: '\b\d{3}-\d{2}-\d{4}\b'}]}")
    buf = io.StringIO()
    setup_logging("DEBUG", customer_text=True, stream=buf, privacy=cfg.privacy)
    lg = logging.getLogger("privacy.test")
    lg.debug("from %s: %s", "ann@shop.example", customer("call +44 20 7946 0958, iban GB82WEST12345698765432"))
    lg.info("cvv 123 and id 123-45-6789")
    lg.warning("order AB123456 on 2026-11-30 09:15:00 for €1,234.56, ticket C-1042")
    try:
        raise ValueError("bad address ann@shop.example")
    except ValueError:
        lg.error("failed", exc_info=True)
    out = buf.getvalue()
    for value in ("ann@shop.example", "7946 0958", "GB82WEST12345698765432", "cvv 123", "123-45-6789"):
        assert value not in out
    assert "a***@shop.example" in out and "[national_id]" in out and "cvv ***" in out
    assert "order AB123456 on 2026-11-30 09:15:00 for €1,234.56, ticket C-1042" in out


def test_default_stream_is_stderr_at_emit_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``stream`` the handler writes to the ``sys.stderr`` of the moment: a line logged
    (by a library thread, say) after the stderr seen at set-up was swapped out and closed goes
    to the current one instead of raising "I/O operation on closed file"."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    setup_logging("DEBUG")
    try:
        logging.getLogger("omnibot.test").warning("one")
        first_text = first.getvalue()
        monkeypatch.setattr("sys.stderr", second)
        first.close()
        logging.getLogger("aiosqlite").debug("operation %s completed", "close")
        out = second.getvalue()
        assert "aiosqlite: operation close completed" in out and "Logging error" not in out
        assert "one" in first_text
    finally:
        reset_logging()
