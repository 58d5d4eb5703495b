"""Channel chrome in the customer's language (README "Languages"): the text WhatsApp needs above
a choice that has none of its own, and the subject of an e-mail reply to a mail without one.

WhatsApp: signed webhook POSTs into the real app, the connector against the fake Graph API
(tests/fakes/whatsapp_api.py). E-mail: a real dovecot mailbox and a real SMTP server on
127.0.0.1 (tests/mailserver.py), as tests/e2e/test_email.py. The customer writes in Spanish or
Indonesian; the conversation's language is detected from what they write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.model import Button, Outbound
from conftest import Running, make_config, serving, until
from e2e.apps import APP_SECRET, LEXICAL, T0, fake_server, frozen_clock, hook, wa_config
from e2e.test_email import mail, mails
from fakes.whatsapp_api import FakeWhatsApp, deliver_webhook, text_message
from mailserver import MailServer, SmtpSink

SPANISH = "Hola, ¿a qué hora abren la tienda los sábados por la mañana?"
INDONESIAN = "Halo, jam berapa toko kalian buka pada hari Sabtu pagi?"


fake = fake_server(FakeWhatsApp)


@pytest.fixture
async def wa_app(tmp_path: Path, fake: FakeWhatsApp) -> AsyncIterator[Running]:
    async with serving(wa_config(tmp_path, fake, sections=LEXICAL)) as r:
        frozen_clock(r)
        yield r


async def _conversation_in(r: Running, channel: str, external_id: str, lang: str) -> Any:
    store = r.services.store

    async def known() -> bool:
        conv = await store.latest_conversation(channel, external_id)
        return conv is not None and conv.language == lang
    await until(known, timeout=15, what=f"the {channel} conversation held in {lang!r}")
    return await store.latest_conversation(channel, external_id)


@pytest.mark.parametrize(("wa", "said", "lang", "prompt"), [
    ("4915100000101", SPANISH, "es", "Elige una opción:"),
    ("6281200000102", INDONESIAN, "id", "Silakan pilih:"),
])
async def test_whatsapp_choice_without_text_is_introduced_in_the_customers_language(
        wa_app: Running, fake: FakeWhatsApp, wa: str, said: str, lang: str, prompt: str) -> None:
    r = wa_app
    assert await deliver_webhook(r.http, hook(r), text_message(wa, said, ts=T0), APP_SECRET) == 200
    conv = await _conversation_in(r, "whatsapp", wa, lang)
    await fake.wait_for("messages", predicate=lambda c: c.args.get("to") == wa)
    # a choice with no text of its own: three short ones (reply buttons) and five (a list)
    three = tuple(Button(t, t.lower()) for t in ("A", "B", "C"))
    five = tuple(Button(f"Option {i}", f"o{i}") for i in range(5))
    await r.services.store.commit_turn(conv.id, inbound_id=None, flow_state=None, keep_flow_state=True,
                                       replies=[Outbound("", buttons=three), Outbound("  ", buttons=five)])
    r.services.delivery.wake()

    def ours(c: Any) -> bool:
        """One of the two choices above (the bot's own answer may have buttons too, sent meanwhile)."""
        if c.args.get("to") != wa or c.args.get("type") != "interactive":
            return False
        action = c.args["interactive"].get("action", {})
        ids = {b["reply"]["id"] for b in action.get("buttons", [])}
        ids |= {row["id"] for s in action.get("sections", []) for row in s.get("rows", [])}
        return ids in ({b.payload for b in three}, {b.payload for b in five})

    sent = await fake.wait_for("messages", predicate=ours, count=2)
    kinds = {c.args["interactive"]["type"]: c.args["interactive"]["body"]["text"] for c in sent}
    assert kinds == {"button": prompt, "list": prompt}


@pytest.fixture
async def mail_app(tmp_path: Path, mailbox: MailServer, smtp_sink: SmtpSink) -> AsyncIterator[Running]:
    async with serving(make_config(tmp_path, f"""{LEXICAL}
email:
  enabled: true
  imap: {{host: 127.0.0.1, port: {mailbox.port}, tls: none, user: "{mailbox.user}", password: "{mailbox.password}",
          poll_interval: 60}}
  smtp: {{host: 127.0.0.1, port: {smtp_sink.port}, security: none, from_address: support@shop.test,
          from_name: Shop Support}}
""")) as r:
        yield r


@pytest.mark.parametrize(("said", "lang", "subject"), [
    (SPANISH, "es", "Re: Tu mensaje"),
    (INDONESIAN, "id", "Re: Pesan Anda"),
])
async def test_email_reply_to_a_mail_without_subject_in_the_customers_language(
        mail_app: Running, mailbox: MailServer, smtp_sink: SmtpSink, said: str, lang: str, subject: str) -> None:
    mailbox.append(mail("", f"{said}\n\nGracias / Terima kasih,\nBob"))
    [ours] = await mails(smtp_sink, 1)
    conv = await _conversation_in(mail_app, "email", "bob.baker@example.test", lang)
    assert conv.language == lang
    assert ours["Subject"] == subject


async def test_an_email_with_only_a_file_keeps_no_english_word(mail_app: Running, mailbox: MailServer,
                                                               smtp_sink: SmtpSink) -> None:
    """A reply that is only an attachment is stored with no text (the desks show "(attachment)" in
    the flows' default language, desk_attachment), not with an English "(attachment)" as its words."""
    from e2e.test_email import PNG, history, reply_to

    mailbox.append(mail("", f"{SPANISH}\n\nGracias,\nBob"))
    [ours] = await mails(smtp_sink, 1)
    photo = reply_to(ours, "")
    photo.add_attachment(PNG, maintype="image", subtype="png", filename="caja.png")
    mailbox.append(photo)

    async def two_in() -> bool:
        return len([m for m in await history(mail_app) if m.direction == "in"]) == 2
    await until(two_in, timeout=15, what="the second mail stored")
    last = [m for m in await history(mail_app) if m.direction == "in"][-1]
    assert [a.name for a in last.attachments] == ["caja.png"]
    assert last.text == ""


async def test_a_whatsapp_voice_note_does_not_switch_a_spanish_conversation_to_english(
        wa_app: Running, fake: FakeWhatsApp) -> None:
    """A voice note (not supported here) is no evidence of a language: the words stored for it are
    not an English sentence the language detector would read as the customer's."""
    from fakes.whatsapp_api import _message

    r, wa = wa_app, "4915100000109"
    assert await deliver_webhook(r.http, hook(r), text_message(wa, SPANISH, ts=T0), APP_SECRET) == 200
    conv = await _conversation_in(r, "whatsapp", wa, "es")
    await fake.wait_for("messages", predicate=lambda c: c.args.get("to") == wa)
    voice = _message(wa, "audio", {"id": "media-1", "mime_type": "audio/ogg"}, ts=T0 + 5)
    assert await deliver_webhook(r.http, hook(r), voice, APP_SECRET) == 200
    await fake.wait_for("messages", predicate=lambda c: c.args.get("to") == wa, count=2)
    after = await r.services.store.get_conversation(conv.id)
    assert after is not None and after.language == "es"
