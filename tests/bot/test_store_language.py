"""The conversation's language (bot.storage.ops_language, schema 14) on SQLite and PostgreSQL."""

from __future__ import annotations

from bot.model import Inbound
from bot.storage import Store


async def test_a_conversation_keeps_its_language(store: Store) -> None:
    r = await store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="m1",
                                           text="hola, mi pedido llegó roto", sender_name="Ana"))
    cid = r.conversation.id
    assert r.conversation.language is None                      # not known yet
    assert await store.set_conversation_language(cid, "es") is True
    assert (await store.get_conversation(cid)).language == "es"
    assert await store.set_conversation_language(cid, "es") is False   # unchanged
    assert await store.set_conversation_language(cid, "id") is True
    loaded = await store.load_turn(cid)
    assert loaded is not None and loaded[0].language == "id"
    # the next message of the same conversation finds it there
    again = await store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="m2",
                                               text="ok", sender_name="Ana"))
    assert again.conversation.language == "id"
    assert await store.set_conversation_language("conv_nope", "en") is False
