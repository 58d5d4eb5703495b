"""Signed tokens and the log redaction filter."""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Iterator

import pytest

from bot.auth import Signer
from bot.logs import JsonFormatter, RedactingFilter, reset_logging, setup_logging

TG_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TG_URL = f"https://api.telegram.org/bot{TG_TOKEN}/sendMessage"
SLACK = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"
SECRET = "agent-desk-s3cr3t"


# -- Signer ---------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    s = Signer("k1", "webchat")
    for value in ("visitor-1", "", "ünïcødé 👋", "a.b.c", "x" * 500):
        tok = s.sign(value)
        assert tok.count(".") == 1
        assert s.verify(tok) == value
    assert s.sign("v") == Signer("k1", "webchat").sign("v")   # deterministic


def test_other_purpose_or_secret_does_not_verify() -> None:
    tok = Signer("k1", "webchat").sign("visitor-1")
    assert Signer("k1", "agent").verify(tok) is None
    assert Signer("k2", "webchat").verify(tok) is None


def test_tampered_tokens_do_not_verify() -> None:
    s = Signer("k1", "webchat")
    tok = s.sign("visitor-1")
    v64, mac64 = tok.split(".")
    other = base64.urlsafe_b64encode(b"visitor-2").rstrip(b"=").decode()
    assert s.verify(f"{other}.{mac64}") is None                   # value swapped, old MAC
    flipped = mac64[:-1] + ("A" if mac64[-1] != "A" else "B")
    assert s.verify(f"{v64}.{flipped}") is None                    # MAC changed
    assert s.verify(f"{v64}.") is None
    assert s.verify(f"{v64}.{mac64}x") is None
    assert s.verify(tok + "." + mac64) is None


@pytest.mark.parametrize("garbage", [
    None, "", ".", "..", "nodot", "a.b.c", "!!!.???", "%%%%.%%%%", "YQ.é", "é.YQ", "\ud800.x",
    "x" * 2000 + ".y", "/w==.AAAA", 12345,
])
def test_garbage_tokens_give_none(garbage: object) -> None:
    assert Signer("k1", "webchat").verify(garbage) is None  # type: ignore[arg-type]


def test_non_utf8_value_gives_none() -> None:
    s = Signer("k1", "webchat")
    v64 = base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode()
    assert s.verify(f"{v64}.{s.sign('x').split('.')[1]}") is None


# -- RedactingFilter ------------------------------------------------------------


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger whose handler carries the filter, writing to a buffer."""
    lg = logging.getLogger("omnibot.test.redact")
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    h.addFilter(RedactingFilter([SECRET, "", "abc"]))
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    try:
        yield lg, buf
    finally:
        lg.removeHandler(h)
        lg.propagate = True


def test_redacts_secret_and_tokens_in_message(logger: tuple[logging.Logger, io.StringIO]) -> None:
    lg, buf = logger
    lg.info("POST %s failed; token=%s slack=%s", TG_URL, SECRET, SLACK)
    out = buf.getvalue()
    assert TG_TOKEN not in out
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in out
    assert SECRET not in out
    assert SLACK not in out and "xoxb-" not in out
    assert out == "INFO POST https://api.telegram.org/***/sendMessage failed; token=*** slack=***\n"


def test_short_secrets_are_ignored_and_other_text_kept(logger: tuple[logging.Logger, io.StringIO]) -> None:
    lg, buf = logger
    lg.warning("abc is fine, so is bot12:short and xoxb-short")
    assert buf.getvalue() == "WARNING abc is fine, so is bot12:short and xoxb-short\n"


def test_redacts_exception_text(logger: tuple[logging.Logger, io.StringIO]) -> None:
    lg, buf = logger
    try:
        raise ConnectionError(f"cannot reach {TG_URL} (auth {SECRET}, {SLACK})")
    except ConnectionError:
        lg.exception("send failed")
    out = buf.getvalue()
    assert "Traceback" in out and "ConnectionError" in out
    assert TG_TOKEN not in out
    assert SECRET not in out
    assert SLACK not in out
    assert "cannot reach https://api.telegram.org/***/sendMessage (auth ***, ***)" in out


def test_filter_on_logger_redacts_what_caplog_sees(caplog: pytest.LogCaptureFixture) -> None:
    lg = logging.getLogger("omnibot.test.redact.caplog")
    flt = RedactingFilter([SECRET])
    lg.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger=lg.name):
            lg.info("secret %s here", SECRET)
            try:
                raise RuntimeError(f"GET {TG_URL}")
            except RuntimeError:
                lg.exception("boom %s", SLACK)
    finally:
        lg.removeFilter(flt)
    assert [r.getMessage() for r in caplog.records] == ["secret *** here", "boom ***"]
    assert SECRET not in caplog.text
    assert TG_TOKEN not in caplog.text
    assert "RuntimeError: GET https://api.telegram.org/***/sendMessage" in caplog.text


def test_redact_directly() -> None:
    f = RedactingFilter(["longsecret", "longsecret-extended"])
    # the longest secret is replaced first, so no fragment of it remains
    assert f.redact("x longsecret-extended y longsecret") == "x *** y ***"
    assert f.redact("xapp-1-A0123456789-abcdef") == "***"


def test_setup_logging_json_with_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level = root.level
    try:
        flt = setup_logging("INFO", secrets=[SECRET], fmt="json")
        assert isinstance(flt, RedactingFilter)
        # calling again replaces, never stacks, its handler
        setup_logging("INFO", secrets=[SECRET], fmt="json")
        assert len([h for h in root.handlers if getattr(h, "_omnibot", False)]) == 1
        logging.getLogger("omnibot.test.json").info("token %s", SECRET)
        err = capsys.readouterr().err.strip().splitlines()
        records = [json.loads(line) for line in err if line.startswith("{")]
        assert [r["msg"] for r in records] == ["token ***"]
        assert records[0]["level"] == "INFO"
        assert logging.getLogger("httpx").level == logging.WARNING
    finally:
        reset_logging()
        root.setLevel(level)


def test_json_formatter_includes_exception_text() -> None:
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    rec.exc_text = "Traceback: boom"
    assert json.loads(JsonFormatter().format(rec))["exc"] == "Traceback: boom"
