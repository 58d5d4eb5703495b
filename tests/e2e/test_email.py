"""E-mail end to end: omnibot reads a real dovecot mailbox over IMAP and answers through a
real SMTP server (aiosmtpd), both on 127.0.0.1 (tests/mailserver.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import AsyncIterator

import pytest

from bot.config import Config
from bot.logs import configure_logging
from cluster import on_pg
from conftest import Running, agent_headers, agent_queue, make_config, start_app, stop_app, until
from e2e.chat import ChatClient
from e2e.test_agent_attachments import agent_upload
from e2e.test_tickets_e2e import _file_complaint
from mailserver import MailServer, SmtpSink

CUSTOMER = "Bob Baker <Bob.Baker@example.test>"
ADDRESS = "bob.baker@example.test"


def mail(subject: str, body: str, *, sender: str = CUSTOMER, html: str | None = None,
         msgid: str | None = None, **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "Support <support@shop.test>"
    m["Subject"] = subject
    m["Message-ID"] = msgid or make_msgid(domain="example.test")
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    if html is not None and not body:
        m.set_content(html, subtype="html")
    else:
        m.set_content(body)
        if html is not None:
            m.add_alternative(html, subtype="html")
    return m


def reply_to(ours: EmailMessage, body: str, *, keep_headers: bool = True, **kw: str) -> EmailMessage:
    """The customer's answer to one of our mails (their client may drop the threading headers)."""
    headers = {"In_Reply_To": ours["Message-ID"], "References": f"{ours['References']} {ours['Message-ID']}"} \
        if keep_headers else {}
    return mail("Re: " + str(ours["Subject"]).removeprefix("Re: "), body, **headers, **kw)


def text_of(m: EmailMessage) -> str:
    return m.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture(scope="module")
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learned matcher's trained model, shared by this module's tests (trained once)."""
    return tmp_path_factory.mktemp("nlu-cache")


def email_config(tmp_path: Path, mailbox: MailServer, smtp_sink: SmtpSink, nlu_cache: Path) -> Config:
    return make_config(tmp_path, f"""
nlu: {{cache_dir: "{nlu_cache}"}}
email:
  enabled: true
  imap: {{host: 127.0.0.1, port: {mailbox.port}, tls: none, user: "{mailbox.user}", password: "{mailbox.password}",
          poll_interval: 60}}   # mail is read at once only if IDLE works
  smtp: {{host: 127.0.0.1, port: {smtp_sink.port}, security: none, from_address: support@shop.test,
          from_name: Shop Support}}
""")


@pytest.fixture
async def app(tmp_path: Path, mailbox: MailServer, smtp_sink: SmtpSink, nlu_cache: Path) -> AsyncIterator[Running]:
    r = await start_app(email_config(tmp_path, mailbox, smtp_sink, nlu_cache))
    try:
        yield r
    finally:
        await stop_app(r)


async def mails(sink: SmtpSink, n: int, timeout: float = 15.0) -> list[EmailMessage]:
    await until(lambda: len(sink.messages) >= n, timeout=timeout, what=f"{n} mail(s) sent")
    return sink.messages


async def history(r: Running, address: str = ADDRESS) -> list:
    store = r.services.store
    conv = await store.latest_conversation("email", address)
    assert conv is not None
    return await store.history(conv.id)


async def test_a_complaint_by_email_end_to_end(app: Running, mailbox: MailServer, smtp_sink: SmtpSink) -> None:
    """Each customer mail gets exactly one mail back, threaded to it; what the first mail says
    is confirmed once, not asked again; the reference goes into the subject once there is one;
    choices are answered with their number or their words, above the quoted history."""
    story = "my blender from order AB123456 is broken: the jar cracked and it leaks everywhere."
    first = mail("Broken blender", f"Hello,\n\n{story}\n\nBest regards,\nBob\n\n-- \nBob Baker\nBaker & Sons\n")
    mailbox.append(first)
    sent = [first]
    await mails(smtp_sink, 1)
    reference = None
    answers = {"talk to a member of our team": "2", "Let me check I have this right": "1", "photo": "skip"}
    bodies = []
    for _ in range(6):
        ours = smtp_sink.messages[-1]
        assert len(smtp_sink.messages) == len(sent)            # one mail out per mail in
        assert ours["In-Reply-To"] == sent[-1]["Message-ID"]
        assert sent[-1]["Message-ID"] in ours["References"].split()
        assert ours["To"] == ADDRESS and "support@shop.test" in ours["From"]
        assert ours["Auto-Submitted"] == "auto-replied"
        assert ours.get_body(preferencelist=("html",)) is not None      # an HTML alternative too
        body = text_of(ours)
        bodies.append(body)
        if reference is None and "reference number is C-" in body:
            reference = body.split("reference number is ")[1].split(".")[0]
        if reference:
            assert ours["Subject"] == f"Re: Broken blender [{reference}]"
        else:
            assert ours["Subject"] == "Re: Broken blender"
        if "anything else" in body:
            break
        answer = next((a for q, a in answers.items() if q in body), None)
        assert answer is not None, f"unexpected question: {body}"
        quoted = "\n".join("> " + line for line in body.splitlines())
        nxt = reply_to(ours, f"{answer}\n\nOn Mon, Support <support@shop.test> wrote:\n{quoted}\n")
        mailbox.append(nxt)
        sent.append(nxt)
        await mails(smtp_sink, len(sent))
    else:
        pytest.fail("the complaint did not finish")
    # asked: the summary to confirm, the photo, talking to a person; not the category, order or story
    assert len(sent) == 4 and not any("What is it about?" in b or "order number?" in b or
                                      "in your own words" in b for b in bodies)
    assert "- category: Product\r\n- order number: AB123456\r\n- description:" in bodies[0]
    assert "\r\n1. Yes\r\n2. No\r\n" in bodies[0]
    # the reference's mail carries three of the bot's messages: thanks, reference, question
    assert "Thank you for explaining" in bodies[2] and "1. Yes, talk to a person" in bodies[2]
    assert reference is not None
    ticket = await app.services.store.get_ticket(reference)
    assert ticket is not None and ticket.category == "product" and ticket.fields.get("order_number") == "AB123456"
    assert story in ticket.fields["description"] and "Baker & Sons" not in ticket.fields["description"]
    msgs = [m for m in await history(app) if m.direction == "in"]
    assert [(m.text, m.payload) for m in msgs][1:] == [     # quotes stripped; numbers and words mapped
        ("1", "prefill:yes"), ("skip", "skip"), ("2", "no")]
    assert "Bob Baker" not in msgs[0].text and "Baker & Sons" not in msgs[0].text      # the signature too
    await until(lambda: all("\\Seen" in f for f in mailbox.flags()), what="all mails seen")


async def test_a_reply_that_keeps_only_the_subject(app: Running, mailbox: MailServer, smtp_sink: SmtpSink) -> None:
    """No In-Reply-To, no References: the subject's reference (and the address) still finds the
    conversation, and our answer threads to this new mail."""
    mailbox.append(mail("Late parcel", "Hello, my parcel for order CD654321 is late. It was due last week."))
    await mails(smtp_sink, 1)
    conv = await app.services.store.latest_conversation("email", ADDRESS)
    lost = mail("Re: Late parcel [C-1042]", "2")
    mailbox.append(lost)
    out = await mails(smtp_sink, 2)
    assert out[1]["In-Reply-To"] == lost["Message-ID"]
    assert out[1]["Subject"].startswith("Re: Late parcel")
    again = await app.services.store.latest_conversation("email", ADDRESS)
    assert again.id == conv.id                       # type: ignore[union-attr]
    ins = [m for m in await history(app) if m.direction == "in"]
    assert len(ins) == 2 and ins[1].payload == "prefill:no"     # "2" is the second choice: No
    assert "What is it about?" in text_of(out[1])


async def test_an_html_only_mail(app: Running, mailbox: MailServer, smtp_sink: SmtpSink) -> None:
    markup = ("<html><head><style>p {color: red}</style></head><body><p>Hello,</p>"
              "<p>my order <b>AB123456</b> arrived&nbsp;damaged &amp; I want a refund.</p>"
              "<div class=\"gmail_quote\">On Monday Shop wrote:<blockquote>Old news</blockquote></div>"
              "</body></html>")
    mailbox.append(mail("Damaged", "", html=markup, sender="Zoë Weiß <zoe@example.test>"))
    out = await mails(smtp_sink, 1)
    assert out[0]["To"] == "zoe@example.test"
    (msg,) = [m for m in await history(app, "zoe@example.test") if m.direction == "in"]
    assert "my order AB123456 arrived damaged & I want a refund." in msg.text
    assert "Old news" not in msg.text and "color" not in msg.text and "<" not in msg.text
    assert msg.sender_name == "Zoë Weiß"


async def test_an_attachment_goes_into_the_conversation(app: Running, mailbox: MailServer,
                                                        smtp_sink: SmtpSink) -> None:
    m = mail("Photo of the damage", "Here is a photo of the broken jar, order AB123456.")
    m.add_attachment(PNG, maintype="image", subtype="png", filename="jar.png")
    mailbox.append(m)
    await mails(smtp_sink, 1)
    (msg,) = [x for x in await history(app) if x.direction == "in"]
    (att,) = msg.attachments
    assert att.kind == "image" and att.mime == "image/png" and att.name == "jar.png" and att.size == len(PNG)
    media = app.services.connectors["email"].media       # type: ignore[attr-defined]
    assert await media.read(att.url.removeprefix("/media/")) == PNG


async def test_auto_replies_and_bounces_are_stored_not_answered(app: Running, mailbox: MailServer,
                                                                smtp_sink: SmtpSink) -> None:
    mailbox.append(mail("Out of office: Re: Broken blender", "I am away until Monday.",
                        Auto_Submitted="auto-replied"))
    mailbox.append(mail("Newsletter", "Our offers this week", Precedence="bulk"))
    mailbox.append(mail("News", "Unsubscribe below", List_Unsubscribe="<mailto:off@example.test>"))
    bounce = EmailMessage()
    bounce["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    bounce["To"] = "support@shop.test"
    bounce["Subject"] = "Undelivered Mail Returned to Sender"
    bounce["Message-ID"] = make_msgid(domain="mx.example.test")
    bounce.set_content("This is the mail system. Your message could not be delivered.")
    report = EmailMessage()
    report.set_content("Reporting-MTA: dns; mx.example.test\n\nFinal-Recipient: rfc822; x@example.test\n"
                       "Action: failed\nStatus: 5.1.1\n")
    bounce.make_mixed()
    bounce.attach(report)
    bounce.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; '
                          f'boundary="{bounce.get_boundary()}"')
    mailbox.append(bounce)
    await until(lambda: all("\\Seen" in f for f in mailbox.flags()) and len(mailbox.flags()) == 4,
                timeout=15, what="all four stored and seen")
    store = app.services.store
    stored = [m for a in (ADDRESS, "mailer-daemon@mx.example.test")
              for m in await history(app, a) if m.direction == "in"]
    assert len(stored) == 4 and all(m.status == "processed" for m in stored)
    # a person's mail afterwards is answered, and it is the only mail sent
    mailbox.append(mail("Hours", "Hello, when are you open?"))
    out = await mails(smtp_sink, 1)
    await asyncio.sleep(1.0)
    assert len(smtp_sink.messages) == 1 and out[0]["Subject"] == "Re: Hours"
    assert all(m.direction == "in" or m.status in ("sent", "pending") for m in await history(app))
    assert not [m for m in await history(app, "mailer-daemon@mx.example.test") if m.direction == "out"]
    del store


async def test_a_duplicate_delivery_is_answered_once(app: Running, mailbox: MailServer, smtp_sink: SmtpSink) -> None:
    m = mail("Hours", "Hello, when are you open?")
    mailbox.append(m)
    mailbox.append(m)             # the same Message-ID delivered twice
    await mails(smtp_sink, 1)
    await until(lambda: all("\\Seen" in f for f in mailbox.flags()), what="both seen")
    await asyncio.sleep(1.0)
    assert len(smtp_sink.messages) == 1
    assert len([x for x in await history(app) if x.direction == "in"]) == 1


async def test_handoff_agent_replies_by_mail_and_the_bot_is_silent(app: Running, mailbox: MailServer,
                                                                   smtp_sink: SmtpSink) -> None:
    mailbox.append(mail("Help", "I want to talk to a person, please."))
    out = await mails(smtp_sink, 1)
    assert "queue" in text_of(out[0])
    handoffs = await agent_queue(app)
    assert len(handoffs) == 1 and handoffs[0]["channel"] == "email"
    hid = handoffs[0]["id"]
    for action, body in (("claim", None), ("reply", {"text": "Hello Bob, I'm Anna. Let me look into it."})):
        async with app.http.post(f"{app.url}/agent/api/handoffs/{hid}/{action}", headers=agent_headers(),
                                 json=body or {}) as resp:
            assert resp.status == 200, await resp.text()
    out = await mails(smtp_sink, 3)
    assert "Anna from Customer Care has joined" in text_of(out[1])   # the claim, then the reply
    agent_mail = out[2]
    assert "I'm Anna" in text_of(agent_mail) and text_of(agent_mail).rstrip().endswith("-- Anna")
    assert agent_mail["In-Reply-To"] == out[0]["In-Reply-To"]     # still the customer's last mail
    assert agent_mail["Auto-Submitted"] is None                    # a person wrote it
    # the customer answers; the agent owns the conversation: the bot stays silent
    mailbox.append(reply_to(agent_mail, "Thanks Anna, the order is AB123456."))
    await until(lambda: all("\\Seen" in f for f in mailbox.flags()) and len(mailbox.flags()) == 2,
                what="the answer stored")
    await asyncio.sleep(1.5)
    assert len(smtp_sink.messages) == 3
    ins = [m for m in await history(app) if m.direction == "in"]
    assert ins[-1].text == "Thanks Anna, the order is AB123456." and ins[-1].status == "processed"
    # the agent attaches a file (the desk's Attach button): it arrives as a part of the mail
    up = await agent_upload(app, PNG, "label.png")
    async with app.http.post(f"{app.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers(),
                             json={"text": "Here is your return label.", "attachments": [{"id": up["id"]}]}) as resp:
        assert resp.status == 200, await resp.text()
    out = await mails(smtp_sink, 4)
    parts = [p for p in out[3].iter_attachments()]
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [("label.png", "image/png")]
    assert parts[0].get_content() == PNG and "return label" in text_of(out[3])


async def test_no_password_and_no_customer_text_in_the_log(tmp_path: Path, mailbox: MailServer, smtp_sink: SmtpSink,
                                                           nlu_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A handoff by mail, the agent's reply and the customer's answer, at DEBUG, logging set up as
    ``omnibot run`` does: neither the mailbox password nor what the customer wrote (words, name,
    address, subject) reaches a log line."""
    word, name = f"zanzibar{secrets.token_hex(4)}", f"Quirinus{secrets.token_hex(3)}"
    address = f"zed.{secrets.token_hex(4)}@example.test"
    subject = f"Broken ottoman{secrets.token_hex(4)}"
    config = make_config(tmp_path, f"""
nlu: {{cache_dir: "{nlu_cache}"}}
email:
  enabled: true
  imap: {{host: 127.0.0.1, port: {mailbox.port}, tls: none, user: "{mailbox.user}", password: "{mailbox.password}"}}
  smtp: {{host: 127.0.0.1, port: {smtp_sink.port}, security: none, from_address: support@shop.test}}
""")
    configure_logging(config)
    logging.getLogger("mail.log").setLevel(logging.WARNING)     # the test's SMTP server, not omnibot
    r = await start_app(config)
    try:
        assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
        # the random words only where no intent has to be recognised (they would sway the matcher)
        mailbox.append(mail("Help", "I want to talk to a person, please.", sender=f"{name} <{address}>"))
        await mails(smtp_sink, 1)
        (handoff,) = await agent_queue(r)
        for action, body in (("claim", None), ("reply", {"text": "Hello, I'm Anna."})):
            async with r.http.post(f"{r.url}/agent/api/handoffs/{handoff['id']}/{action}",
                                   headers=agent_headers(), json=body or {}) as resp:
                assert resp.status == 200
        await mails(smtp_sink, 3)
        mailbox.append(mail(f"Re: Help {subject}", f"my {word} from order AB123456 is broken",
                            sender=f"{name} <{address}>", In_Reply_To=smtp_sink.messages[-1]["Message-ID"]))
        await until(lambda: len(mailbox.flags()) == 2 and all("\\Seen" in f for f in mailbox.flags()),
                    what="the customer's answer stored")
        assert word in (await history(r, address))[-1].text
    finally:
        await stop_app(r)
    lines = capsys.readouterr().err.splitlines()
    assert any(" connectors.email: " in line for line in lines) and any(" DEBUG " in line for line in lines)
    found = [f"{what}: {line[:300]}" for what, value in (("password", mailbox.password), ("word", word),
                                                         ("name", name), ("address", address),
                                                         ("subject", subject.split()[1]))
             for line in lines if value in line]
    assert not found, "leaked into the log:\n" + "\n".join(found[:20])


async def test_two_instances_read_one_mailbox_and_answer_each_mail_once(
        tmp_path: Path, mailbox: MailServer, smtp_sink: SmtpSink, nlu_cache: Path, pg_url: str) -> None:
    """Several instances on one PostgreSQL database all read the mailbox: the Message-ID dedupe
    makes each mail one message with one answer."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = await start_app(on_pg(email_config(tmp_path / "a", mailbox, smtp_sink, nlu_cache), pg_url))
    b = await start_app(on_pg(email_config(tmp_path / "b", mailbox, smtp_sink, nlu_cache), pg_url))
    try:
        sent = [mail("Hours", "Hello, when are you open?", sender=f"c{i}@example.test") for i in range(6)]
        for m in sent:
            mailbox.append(m)
        await mails(smtp_sink, 6, timeout=30)
        await until(lambda: len(mailbox.flags()) == 6 and all("\\Seen" in f for f in mailbox.flags()),
                    what="all seen")
        await asyncio.sleep(1.5)
        assert len(smtp_sink.messages) == 6
        assert sorted(m["In-Reply-To"] for m in smtp_sink.messages) == sorted(m["Message-ID"] for m in sent)
        for i in range(6):
            assert len([m for m in await history(a, f"c{i}@example.test") if m.direction == "in"]) == 1
    finally:
        await stop_app(a)
        await stop_app(b)


async def test_a_linked_customer_sees_their_web_chat_complaint_by_mail(app: Running, mailbox: MailServer,
                                                                       smtp_sink: SmtpSink) -> None:
    web = ChatClient(app.http, app.ws_url)
    await web.connect()
    try:
        ref = await _file_complaint(web, "shipping", "AB123456", "The parcel never came.")
        await web.say("No, that's all", payload="no")
        [m] = await web.say("link my accounts")
        code = re.search(r'"link (\d{6})"', m["text"])
        assert code, m["text"]
        mailbox.append(mail("Linking", f"link {code.group(1)}"))
        out = await mails(smtp_sink, 1)
        assert "Done: your accounts are linked" in text_of(out[0])
        mailbox.append(mail("My complaint", f"What's the status of {ref}?"))
        out = await mails(smtp_sink, 2)
        assert f"Your complaint {ref} about shipping" in text_of(out[1])
    finally:
        await web.close()

