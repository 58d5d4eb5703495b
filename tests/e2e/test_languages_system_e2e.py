"""What omnibot writes itself arrives in the customer's language (README "Languages"), over the real
web chat and the real Telegram connector: the card-data notice, the answers of the ticket_status and
link_with_code actions (with dates in the customer's language), and the Telegram public-group reply
and spent-link word. Spanish and Indonesian conversations on a copy of the demo flows, lexical
matcher with a few examples in those languages (as tests/e2e/test_languages_e2e.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import AsyncIterator

import pytest

from conftest import Running, make_config, serving
from e2e.apps import LEXICAL, demo_copy, fake_server, on_flows, tg_config
from e2e.chat import ChatClient
from fakes.telegram_api import BOT_USERNAME, FakeTelegram, command_update
from test_telegram import to_chat
from test_telegram_public import GROUP, LINK, in_group

EXTRA = {
    "complaint": ["saya mau komplain soal pesanan saya", "pesanan saya rusak", "barang saya datang rusak",
                  "saya mau komplain", "paket saya tidak sampai", "mi pedido llegó roto", "quiero poner una reclamación"],
    "complaint_status": ["bagaimana status keluhan saya", "status keluhan", "cómo va mi reclamación",
                         "estado de mi reclamación"],
    "opening_hours": ["jam berapa kalian buka", "a qué hora abren", "cuál es el horario"],
}
fake = fake_server(FakeTelegram)
ID_DATE = r"(Sen|Sel|Rab|Kam|Jum|Sab|Min) \d\d (Jan|Feb|Mar|Apr|Mei|Jun|Jul|Agu|Sep|Okt|Nov|Des), \d\d:\d\d UTC"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(on_flows(make_config(tmp_path, LEXICAL), demo_copy(tmp_path, examples=EXTRA))) as r:
        yield r


async def test_spanish_card_notice_status_and_link_answers(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        [m] = await c.say("¿a qué hora abren los sábados?")
        assert m["text"].startswith("Nuestro servicio de atención al cliente")
        # card data: removed before storing, and the customer is told so in Spanish
        await c.send("pagué con la tarjeta 4111 1111 1111 1111 y me cobraron dos veces")
        got = await c.replies_until(lambda m: m["role"] == "system")
        assert got[-1]["text"] == "Por tu seguridad hemos borrado el número de tu tarjeta; aquí nunca lo necesitamos."
        # the ticket_status action, for a reference that is not theirs
        got = await c.say("¿cómo va mi reclamación C-1042?", expect_text="C-1042")
        assert got[-1]["text"].startswith("No he encontrado ninguna reclamación C-1042 a tu nombre.")
        [m] = await c.say("cómo va mi reclamación")
        assert m["text"] == "No tienes ninguna reclamación abierta con nosotros."
        # the link_with_code action: a code nobody gave
        [m] = await c.say("link code 123456")
        assert m["text"].startswith("Ese código no es válido: los códigos sirven una sola vez")
    finally:
        await c.close()


async def test_indonesian_card_notice_first_message_and_open_complaint_status(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        # the very first message carries the card: the notice is in the language that message shows
        await c.send("saya sudah bayar dengan kartu 4111 1111 1111 1111 tapi pesanan saya tidak sampai")
        got = await c.replies_until(lambda m: m["role"] == "system")
        assert got[-1]["text"] == ("Demi keamanan Anda, nomor kartu Anda kami hapus; kami tidak pernah "
                                   "memerlukannya di sini.")
    finally:
        await c.close()
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        await c.say("halo, saya mau komplain soal pesanan saya", expect_text="Masalahnya tentang apa?")
        await c.say("barangnya datang rusak", expect_text="Berapa nomor pesanan Anda?")
        await c.say("AB123456", expect_text="Silakan ceritakan")
        await c.say("Layar laptopnya retak waktu paket dibuka", expect_text="foto")
        msgs = await c.say("lewati", expect_text="Apakah Anda ingin berbicara dengan petugas kami sekarang?")
        [ref] = [m["text"] for m in msgs if m["text"].startswith("Nomor referensi Anda C-1001")]
        assert re.search("paling lambat " + ID_DATE, ref), ref          # the due date in Indonesian
        await c.say("tidak, terima kasih")
        got = await c.say("bagaimana status keluhan C-1001", expect_text="C-1001")
        assert re.fullmatch(r"Keluhan Anda C-1001 tentang produk: sedang menunggu tim Customer Care kami\. "
                            r"Kami menargetkan selesai paling lambat " + ID_DATE + r"\.", got[-1]["text"]), got[-1]
    finally:
        await c.close()


@pytest.fixture
async def telegram(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Running]:
    config = tg_config(tmp_path, fake, sections=LEXICAL)
    async with serving(on_flows(config, demo_copy(tmp_path, examples=EXTRA))) as r:
        yield r


def speaking(update: dict, code: str) -> dict:
    update["message"]["from"]["language_code"] = code
    return update


async def test_telegram_public_reply_and_spent_link_in_spanish(telegram: Running, fake: FakeTelegram) -> None:
    said = f"@{BOT_USERNAME} hola, mi pedido llegó roto y nadie me contesta los correos"
    fake.push_update(speaking(in_group(801, said, entities=[{"offset": 0, "length": len(BOT_USERNAME) + 1,
                                                             "type": "mention"}]), "es"))
    [call] = await fake.wait_for("sendMessage", predicate=to_chat(GROUP))
    text = call.args["text"]
    assert text.startswith("Lamentamos lo ocurrido. Para ayudarte sin compartir tus datos aquí"), text
    token = LINK.search(text).group(1)
    # someone else opens it: the word about a spent link, in their app's language
    fake.push_update(speaking(command_update(802, "/start", payload=token, first_name="Luis"), "id"))
    [note] = await fake.wait_for("sendMessage", predicate=to_chat(802, text="Maaf, tautan ini"))
    assert note.args["text"].startswith("Maaf, tautan ini sudah tidak berlaku")
