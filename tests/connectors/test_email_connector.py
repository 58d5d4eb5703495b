"""The e-mail connector's parts: reading mail (charsets, HTML, quotes, machines), choices and
subjects, and the mailbox round against the real dovecot (tests/mailserver.py)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.errors import ConfigError, PermanentSendError, StorageUnavailable, TransientSendError
from bot.media import MediaStore
from bot.model import Button, Inbound, Outbound
from bot.storage import Store
from connectors.email import EmailConnector, answer_choice, html_to_text, parse_mail, reply_subject
from mailserver import MailServer


def raw(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_charsets_and_encoded_words() -> None:
    m = parse_mail(raw("From: =?iso-8859-1?q?J=FCrgen_M=FCller?= <J@Example.TEST>\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\n"
                       "Message-ID: <a@b>\nContent-Type: text/plain; charset=iso-8859-1\n"
                       "Content-Transfer-Encoding: 8bit\n", "Schöne Grüße, mein Mixer ist kaputt".encode("latin-1")))
    assert (m.name, m.address, m.subject, m.message_id) == ("Jürgen Müller", "j@example.test", "Grüße", "<a@b>")
    assert m.text == "Schöne Grüße, mein Mixer ist kaputt" and not m.automatic


def test_an_unknown_charset_does_not_lose_the_mail() -> None:
    m = parse_mail(raw("From: a@example.test\nSubject: x\nContent-Type: text/plain; charset=x-unknown-9\n",
                       "héllo".encode()))
    assert m.text == "héllo"
    assert m.message_id.startswith("<sha256.")      # no Message-ID: the content's hash (same mail, same id)


def test_html_to_text_drops_styles_quotes_and_keeps_links() -> None:
    text = html_to_text("<style>x{}</style><p>Hi&nbsp;there</p><ul><li>one</li><li>two</li></ul>"
                        "<a href='https://shop.test/o/1'>my order</a><br>thanks"
                        "<blockquote>old</blockquote><div id='divRplyFwdMsg'>From: Shop</div><p>older</p>")
    assert text == "Hi there\n\n- one\n\n- two\n\nmy order (https://shop.test/o/1)\nthanks"


@pytest.mark.parametrize("headers,why", [
    ("Auto-Submitted: auto-replied\n", "Auto-Submitted"),
    ("Auto-Submitted: auto-generated\n", "Auto-Submitted"),
    ("Precedence: bulk\n", "Precedence"),
    ("Precedence: junk\n", "Precedence"),
    ("List-Id: <news.example.test>\n", "List-Id"),
    ("X-Autoreply: yes\n", "X-Autoreply"),
    ("Return-Path: <>\n", "Return-Path"),
    ("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n", "multipart/report"),
])
def test_mail_written_by_machines(headers: str, why: str) -> None:
    m = parse_mail(raw(f"From: a@example.test\nSubject: x\n{headers}", b"--b\r\n\r\nx\r\n--b--\r\n"))
    assert why in m.automatic


def test_people_are_not_machines() -> None:
    for headers in ("Auto-Submitted: no\n", "X-Auto-Response-Suppress: All\n", "Precedence: first-class\n"):
        assert parse_mail(raw(f"From: a@example.test\nSubject: x\n{headers}", b"hi")).automatic == ""
    assert "postmaster" in parse_mail(raw("From: postmaster@mx.test\nSubject: x\n", b"hi")).automatic
    assert parse_mail(raw("From: Support@Shop.test\nSubject: x\n", b"hi"), own_address="support@shop.test").automatic


def test_choices_by_number_or_words() -> None:
    buttons = (Button("Product", "product"), Button("Shipping", "shipping"), Button("Yes, talk to a person", "yes"))
    assert answer_choice("2", buttons).payload == "shipping"               # type: ignore[union-attr]
    assert answer_choice(" 3.\n\nthanks", buttons).payload == "yes"        # type: ignore[union-attr]
    assert answer_choice("shipping!", buttons).payload == "shipping"       # type: ignore[union-attr]
    assert answer_choice("1. Product", buttons).payload == "product"       # type: ignore[union-attr]
    assert answer_choice("4", buttons) is None
    assert answer_choice("my shipping was late", buttons) is None          # the flow reads the words itself


def test_reply_subjects() -> None:
    assert reply_subject("Broken blender", None) == "Re: Broken blender"
    assert reply_subject("Re: RE: Broken blender", "C-1042") == "Re: Broken blender [C-1042]"
    assert reply_subject("AW: Broken blender [C-1042]", "C-1042") == "Re: Broken blender [C-1042]"
    assert reply_subject("", None) == "Re: Your message"


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="imap.password, smtp.from_address"):
        parse_config("email: {enabled: true, imap: {host: h, user: u}, smtp: {host: s}}")
    with pytest.raises(ConfigError, match="not an e-mail address"):
        parse_config("email: {enabled: true, imap: {host: h, user: u, password: p}, "
                     "smtp: {host: s, from_address: nobody}}")
    with pytest.raises(ConfigError, match="tls"):
        parse_config("email: {imap: {tls: maybe}}")
    with pytest.raises(ConfigError, match="29 minutes"):
        parse_config("email: {enabled: true, imap: {host: h, user: u, password: p, poll_interval: 1h}, "
                     "smtp: {host: s, from_address: a@b.test}}")
    c = parse_config("email: {enabled: true, imap: {host: h, user: u, password: '${P}'}, "
                     "smtp: {host: s, from_address: a@b.test}}", env={"P": "pw"})
    assert c.email.imap.password.get_secret_value() == "pw" and "pw" in c.secrets()
    assert parse_config("").email.enabled is False


def _connector(box: MailServer, store: Store, accept: object, *, poll: float = 60) -> EmailConnector:
    cfg = parse_config(f"""
email:
  enabled: true
  imap: {{host: 127.0.0.1, port: {box.port}, tls: none, user: "{box.user}", password: "{box.password}",
          poll_interval: {poll}}}
  smtp: {{host: 127.0.0.1, port: 25, security: none, from_address: support@shop.test}}
""").email
    return EmailConnector(config=cfg, accept=accept, store=store, media=MediaStore(store))  # type: ignore[arg-type]


def _mail(subject: str = "Hello") -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "a@example.test", "support@shop.test", subject, make_msgid()
    m.set_content("Where is my parcel?")
    return m


async def test_a_mail_is_seen_only_once_stored(mailbox: MailServer, memory_store: Store) -> None:
    """Storage down: the mail stays unseen and comes again; once stored it is marked seen."""
    calls: list[Inbound] = []

    async def accept(inbound: Inbound) -> None:
        calls.append(inbound)
        if len(calls) == 1:
            raise StorageUnavailable("disk full")

    conn = _connector(mailbox, memory_store, accept)
    mailbox.append(_mail())
    await conn.mailbox.connect()
    try:
        assert await conn.read_new() > 0                       # not stored: pause, then again
        assert "\\Seen" not in mailbox.flags()[0]
        assert await conn.read_new() == 0
        assert "\\Seen" in mailbox.flags()[0]
        assert len(calls) == 2 and calls[0].platform_message_id == calls[1].platform_message_id
        assert await conn.read_new() == 0 and len(calls) == 2   # seen mail is not read again
    finally:
        await conn.stop()


async def test_polling_when_the_server_has_no_idle(mailbox: MailServer, memory_store: Store) -> None:
    got: list[Inbound] = []

    async def accept(inbound: Inbound) -> None:
        got.append(inbound)

    conn = _connector(mailbox, memory_store, accept, poll=0.3)
    connect = conn.mailbox._connect

    def no_idle() -> None:
        connect()
        conn.mailbox.idle_ok = False

    conn.mailbox._connect = no_idle  # type: ignore[method-assign]
    await conn.start()
    try:
        mailbox.append(_mail("one"))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.05)
        assert [g.text for g in got] == ["one\n\nWhere is my parcel?"] and conn.readiness() == "ok"
    finally:
        await conn.stop()


async def test_an_unreachable_mailbox_degrades(memory_store: Store) -> None:
    box = MailServer(Path("/nonexistent"), 1, None, "u", "p")  # type: ignore[arg-type]
    conn = _connector(box, memory_store, lambda i: None)
    await conn.start()
    try:
        for _ in range(100):
            if conn.readiness().startswith("degraded"):
                break
            await asyncio.sleep(0.02)
        assert conn.readiness() == "degraded: cannot reach the IMAP server"
    finally:
        await conn.stop()


def test_attachments_nested_or_not_and_bounces_carry_none() -> None:
    m = EmailMessage()
    m["From"], m["Subject"] = "a@example.test", "photos"
    m.set_content("see the photos")
    m.add_alternative("<p>see <img src='cid:p1'></p>", subtype="html")
    m.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", cid="<p1>",
                                   filename="inline.png")
    m.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf")
    parsed = parse_mail(m.as_bytes())
    assert sorted(name for name, _, _ in parsed.files) == ["inline.png", "invoice.pdf"]
    assert parsed.text == "see the photos"
    bounce = raw("From: MAILER-DAEMON@mx.test\nSubject: failed\nContent-Type: multipart/report; "
                 "report-type=delivery-status; boundary=b\n",
                 b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
                 b"From: us@shop.test\r\nSubject: hi\r\n\r\nhello\r\n--b--\r\n")
    assert parse_mail(bounce).files == () and parse_mail(bounce).automatic


class _Refusing:
    """An SMTP server that answers RCPT TO with a fixed reply."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(self, server: object, session: object, envelope: object, address: str,
                          options: list[str]) -> str:
        return self.reply


@pytest.mark.parametrize("reply,error", [("550 5.1.1 no such user", PermanentSendError),
                                         ("451 4.3.0 try again later", TransientSendError),
                                         (None, TransientSendError)], ids=["550", "451", "unreachable"])
async def test_smtp_refusals_are_permanent_or_transient(memory_store: Store, reply: str | None,
                                                        error: type[Exception]) -> None:
    from aiosmtpd.controller import Controller

    from mailserver import free_port

    port = free_port()
    controller = Controller(_Refusing(reply or ""), hostname="127.0.0.1", port=port) if reply else None
    if controller:
        controller.start()
    try:
        cfg = parse_config(f"""
email:
  enabled: true
  imap: {{host: 127.0.0.1, user: u, password: p}}
  smtp: {{host: 127.0.0.1, port: {port}, security: none, from_address: support@shop.test, timeout: 5}}
""").email
        conn = EmailConnector(config=cfg, accept=lambda i: None, store=memory_store,  # type: ignore[arg-type]
                              media=MediaStore(memory_store))
        r = await memory_store.record_inbound(Inbound(channel="email", external_id="a@example.test",
                                                      platform_message_id="<m1@example.test>", text="hi"))
        queued = await memory_store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                                replies=[Outbound("Hello")])
        (item,) = await memory_store.outbox_turn(queued[0].id)
        with pytest.raises(error):
            await conn.send_batch([item])
        assert conn.smtp_state == ("degraded: cannot reach the SMTP server" if reply is None else "ok")
    finally:
        if controller:
            controller.stop()


async def test_idle_sees_mail_that_came_just_before_it(mailbox: MailServer, memory_store: Store) -> None:
    """Mail that arrives between a round's search and IDLE wakes the reader at once (the server
    reports it right behind IDLE's continuation), not at the next renewal."""
    conn = _connector(mailbox, memory_store, lambda i: None)
    await conn.mailbox.connect()
    try:
        assert conn.mailbox.idle_ok
        await conn.mailbox.idle(0.1)             # whatever SELECT reported
        assert await conn.mailbox.unseen() == []
        mailbox.append(_mail("meanwhile"))
        t0 = asyncio.get_running_loop().time()
        assert await conn.mailbox.idle(20) is True
        assert asyncio.get_running_loop().time() - t0 < 5
        assert len(await conn.mailbox.unseen()) == 1
        # and nothing new: IDLE waits its time and says so
        assert await conn.mailbox.idle(1.5) is False
    finally:
        await conn.stop()


async def test_a_refused_login_degrades_and_says_so(mailbox: MailServer, memory_store: Store) -> None:
    box = MailServer(mailbox.root, mailbox.port, mailbox.proc, mailbox.user, "not-the-password")
    conn = _connector(box, memory_store, lambda i: None)
    await conn.start()
    try:
        for _ in range(200):
            if conn.readiness().startswith("degraded"):
                break
            await asyncio.sleep(0.02)
        assert conn.readiness() == "degraded: the IMAP server refused the login"
    finally:
        await conn.stop()
