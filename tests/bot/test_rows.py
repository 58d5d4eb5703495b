"""bot/storage/rows.py message_of: the same Message whatever the shape of the row it reads."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from bot.model import Attachment, Button, Message
from bot.storage.rows import message_of

_COLUMNS = ("id INTEGER PRIMARY KEY, conversation_id TEXT, direction TEXT, role TEXT, sender_name TEXT, "
            "text TEXT, attachments TEXT, buttons TEXT, platform_message_id TEXT, payload TEXT, "
            "status TEXT, last_error TEXT, created_at TEXT")


def _db() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    con.row_factory = sqlite3.Row
    con.execute(f"CREATE TABLE messages ({_COLUMNS})")
    con.execute("CREATE TABLE conversations (id TEXT, external_id TEXT)")
    con.execute("INSERT INTO conversations VALUES ('conv_1', 'v1')")
    con.executemany(
        "INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, buttons, "
        "platform_message_id, payload, status, last_error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [("conv_1", "out", "bot", "", "hello", "[]", '[{"title": "Yes", "payload": "y"}]', None, None,
          "failed", "gone", "2026-12-01T09:00:00+00:00"),
         ("conv_1", "in", "customer", "Ann", "hi", '[{"kind": "image", "url": "/media/m1"}]', "[]", "v1:1",
          "p", "received", None, "2026-12-01T09:00:01+00:00")])
    return con


EXPECTED = [
    Message(1, "conv_1", "out", "bot", "hello", datetime.fromisoformat("2026-12-01T09:00:00+00:00"), "",
            (), (Button("Yes", "y"),), None, "failed", None, "gone"),
    Message(2, "conv_1", "in", "customer", "hi", datetime.fromisoformat("2026-12-01T09:00:01+00:00"), "Ann",
            (Attachment("image", "/media/m1"),), (), "v1:1", "received", "p", None),
]


def test_message_of_reads_every_shape_of_row_alike() -> None:
    con = _db()
    shapes = [
        "SELECT * FROM messages ORDER BY id",
        ("SELECT m.*, c.external_id AS c_external_id FROM messages m JOIN conversations c "
         "ON c.id = m.conversation_id ORDER BY m.id"),
        # other columns first (one named like a message column: the first of a name counts, as
        # row["name"] finds it), and the columns in another order
        ("SELECT m.id, c.external_id AS x, m.*, 'no' AS status FROM messages m JOIN conversations c "
         "ON c.id = m.conversation_id ORDER BY m.id"),
        ("SELECT created_at, last_error, status, payload, platform_message_id, buttons, attachments, text, "
         "sender_name, role, direction, conversation_id, id FROM messages ORDER BY id"),
    ]
    for sql in shapes:
        for _ in range(2):        # the second time from the remembered positions
            assert [message_of(r) for r in con.execute(sql)] == EXPECTED, sql
    got = message_of(con.execute("SELECT * FROM messages WHERE id = 1").fetchone())
    assert hash(got) == hash(EXPECTED[0]) and repr(got) == repr(EXPECTED[0])


def test_a_row_without_a_message_column_fails_as_before() -> None:
    con = _db()
    row = con.execute("SELECT id, text FROM messages").fetchone()
    try:
        message_of(row)
    except IndexError:
        pass
    else:
        raise AssertionError("a row without the message's columns must not make a message")
