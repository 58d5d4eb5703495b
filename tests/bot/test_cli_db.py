"""``omnibot db migrate`` and ``omnibot db status`` through click's runner, on temporary databases."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from bot.storage import SqliteStore
from bot.storage.admin import mask_url, redact
from bot.storage.filelock import DatabaseInUse, SingleInstanceLock
from bot.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, split_sql

LATEST = SCHEMA_VERSION


def build(path: Path, version: int) -> None:
    """A database at schema ``version`` with one customer, conversation and two messages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:version]:
            for stmt in split_sql(script):
                con.execute(stmt)
        con.execute(f"PRAGMA user_version={version}")
        if version >= 1:
            t = "2026-03-01T09:00:00+00:00"
            con.execute("INSERT INTO customers(id, display_name, created_at) VALUES ('cus_1', 'Ann', ?)", (t,))
            con.execute("INSERT INTO identities VALUES ('telegram', '42', 'cus_1', ?)", (t,))
            con.execute("INSERT INTO conversations(id, customer_id, channel, external_id, state, created_at, "
                        "updated_at) VALUES ('conv_1', 'cus_1', 'telegram', '42', 'bot', ?, ?)", (t, t))
            for direction, role, status in (("in", "customer", "processed"), ("out", "bot", "sent")):
                con.execute("INSERT INTO messages(conversation_id, direction, role, text, channel, status, "
                            "created_at) VALUES ('conv_1', ?, ?, 'hi', 'telegram', ?, ?)", (direction, role, status, t))
    finally:
        con.close()


def user_version(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def config(tmp_path: Path, url: str = "sqlite:///data/omnibot.db") -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {{url: '{url}'}}\n")
    return cfg


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["db", *args])


# -- migrate ------------------------------------------------------------------


def test_help_lists_the_db_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "migrate" in result.output and "status" in result.output
    assert "omnibot db status" in CliRunner().invoke(main, ["--help"]).output


def test_migrate_from_an_old_version_prints_the_numbers_then_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "data" / "omnibot.db"   # storage.url is relative to the config file
    build(db, 7)
    cfg = config(tmp_path)

    result = run("migrate", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"sqlite:///{db}: schema version 7 -> {LATEST} "
                             f"({LATEST - 7} migrations applied)\n")
    assert user_version(db) == LATEST

    again = run("migrate", "-c", str(cfg))
    assert again.exit_code == 0, again.output
    assert again.stdout == f"sqlite:///{db}: already at schema version {LATEST}\n"

    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT display_name FROM customers").fetchall() == [("Ann",)]
        assert con.execute("SELECT COUNT(*) FROM messages").fetchone() == (2,)
    finally:
        con.close()


def test_migrate_one_version_and_a_new_file(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    build(old, LATEST - 1)
    result = run("migrate", "--url", f"sqlite:///{old}")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"sqlite:///{old}: schema version {LATEST - 1} -> {LATEST} (1 migration applied)\n"

    new = tmp_path / "new" / "omnibot.db"
    result = run("migrate", "--url", str(new))   # a plain path works too
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{new}: schema version 0 -> {LATEST} ({LATEST} migrations applied)\n"
    assert user_version(new) == LATEST


def test_url_option_overrides_the_config(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    other = tmp_path / "other.db"
    build(other, 5)
    result = run("migrate", "-c", str(cfg), "--url", f"sqlite:///{other}")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"sqlite:///{other}: schema version 5 -> {LATEST}")
    assert not (tmp_path / "data").exists()


def test_migrate_refuses_a_newer_database_and_leaves_it(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.db"
    build(db, LATEST)
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={LATEST + 2}")
    con.commit()
    con.close()
    result = run("migrate", "--url", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"error: sqlite:///{db}: schema version {LATEST + 2} is newer than this omnibot "
                             f"(latest {LATEST}); upgrade omnibot\n")
    assert user_version(db) == LATEST + 2


@pytest.mark.parametrize("kind", ["not-a-database", "directory"])
def test_migrate_an_unreadable_database_exits_1(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "omnibot.db"
    if kind == "directory":
        db.mkdir()
    else:
        db.write_text("these are not the pages you are looking for\n" * 100)
    result = run("migrate", "--url", f"sqlite:///{db}")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {db}: cannot read the database: ")
    assert "Traceback" not in result.output


def test_an_unknown_scheme_or_memory_exits_2() -> None:
    result = run("migrate", "--url", "mysql://root:pw@localhost/omni")
    assert result.exit_code == 2
    assert "unsupported storage url mysql://" in result.stderr
    result = run("status", "--url", "sqlite:///:memory:")
    assert result.exit_code == 2
    assert "in-memory database" in result.stderr


# -- passwords never printed ------------------------------------------------------


@pytest.mark.parametrize("command", ["migrate", "status"])
def test_a_postgresql_password_is_never_printed(tmp_path: Path, command: str, pg_url: str) -> None:
    # a real database (trust auth takes any password) and an unreachable one
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    for args in (["--url", url], ["-c", str(config(tmp_path, url))]):
        result = run(command, *args)
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output and "postgres:***@" in result.output
    down = "postgresql://omnibot:hunter2@127.0.0.1:1/omnibot"
    for args in (["--url", down], ["-c", str(config(tmp_path, down))]):
        result = run(command, *args)
        assert result.exit_code == 1, result.output
        assert "hunter2" not in result.output
        assert result.stderr.startswith("error: postgresql://omnibot:***@127.0.0.1:1/omnibot: ")


def test_db_migrate_and_status_on_postgresql(pg_url: str) -> None:
    result = run("migrate", "--url", pg_url)
    assert result.exit_code == 0, result.output
    assert result.output == f"{pg_url}: schema version 0 -> {SCHEMA_VERSION} ({SCHEMA_VERSION} migrations applied)\n"
    again = run("migrate", "--url", pg_url)
    assert again.output == f"{pg_url}: already at schema version {SCHEMA_VERSION}\n"
    status = run("status", "--url", pg_url)
    assert status.exit_code == 0, status.output
    assert "backend: postgresql" in status.output and f"schema version: {SCHEMA_VERSION}" in status.output
    assert "  messages:      0\n" in status.output and "  instances:     0\n" in status.output


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
    ("postgresql://user:p@ss:w/rd@host:5432/db?sslmode=require",
     "postgresql://user:***@host:5432/db?sslmode=require"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("postgresql://host/db?user=u&password=secret&sslmode=require",
     "postgresql://host/db?user=u&password=***&sslmode=require"),
    ("sqlite:///data/omnibot.db", "sqlite:///data/omnibot.db"),
    ("data/omnibot.db", "data/omnibot.db"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_redact_hides_the_password_anywhere_in_a_message() -> None:
    url = "postgresql://u:s3cr3t@h/db"
    assert redact(f'connection to {url} failed: password "s3cr3t" rejected', url) == (
        'connection to postgresql://u:***@h/db failed: password "***" rejected')


# -- status -----------------------------------------------------------------------


def test_status_counts_rows_without_migrating(tmp_path: Path) -> None:
    db = tmp_path / "data" / "omnibot.db"
    build(db, 7)
    cfg = config(tmp_path)
    result = run("status", "-c", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "backend: sqlite",
        f"url: sqlite:///{db}",
        "schema version: 7",
        f"latest version: {LATEST}",
        f"pending migrations: {LATEST - 7} (omnibot db migrate applies them)",
        "rows:",
        "  conversations: 1",
        "  customers:     1",
        "  desk_threads:  0",
        "  handoffs:      0",
        "  identities:    1",
        "  link_codes:    0",
        "  messages:      2",
        "  meta:          0",
        "  seen_events:   0",
        "  tickets:       0",
    ]
    assert user_version(db) == 7   # status only reads

    assert run("migrate", "-c", str(cfg)).exit_code == 0
    lines = run("status", "-c", str(cfg)).stdout.splitlines()
    assert lines[2:5] == [f"schema version: {LATEST}", f"latest version: {LATEST}", "pending migrations: 0"]
    assert "  effects:       0" in lines and "  messages:      2" in lines


def test_status_of_a_database_not_created_yet(tmp_path: Path) -> None:
    result = run("status", "--url", f"sqlite:///{tmp_path}/none.db")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2:] == [
        "schema version: 0 (no database yet)", f"latest version: {LATEST}",
        f"pending migrations: {LATEST} (omnibot db migrate applies them)", "rows: (no tables)"]
    assert not (tmp_path / "none.db").exists()


def test_status_of_a_newer_database(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.db"
    build(db, LATEST)
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={LATEST + 1}")
    con.commit()
    con.close()
    result = run("status", "--url", str(db))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2:5] == [
        f"schema version: {LATEST + 1}", f"latest version: {LATEST}",
        "pending migrations: none (the database is newer than this omnibot; upgrade omnibot)"]


async def test_status_is_safe_beside_a_running_bot(tmp_path: Path) -> None:
    """A running omnibot has the store open and holds the one-instance lock: status still reads."""
    db = tmp_path / "omnibot.db"
    store = SqliteStore(db)
    await store.open()
    try:
        lock = SingleInstanceLock(db)
        try:
            lock.acquire()
        except DatabaseInUse:
            pass   # SqliteStore.open took it already
        try:
            await store.set_meta("k", "v")
            result = await asyncio.to_thread(run, "status", "--url", str(db))   # asyncio.run needs its own thread
            assert result.exit_code == 0, result.output
            assert "  meta:          1" in result.stdout.splitlines()
        finally:
            lock.release()
    finally:
        await store.close()


def test_migrate_of_a_database_in_use_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once SqliteStore.open takes the one-instance lock, a running bot makes migrate refuse."""
    import bot.storage

    real_open_store = bot.storage.open_store

    async def open_store_with_lock(url: str, **options: object):  # type: ignore[no-untyped-def]
        SingleInstanceLock(url[len("sqlite:///"):]).acquire()   # what SqliteStore.open will do
        return await real_open_store(url, **options)

    monkeypatch.setattr(bot.storage, "open_store", open_store_with_lock)
    db = tmp_path / "omnibot.db"
    build(db, 7)
    with SingleInstanceLock(db):
        result = run("migrate", "--url", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {db} is in use by another omnibot (pid ")
    assert user_version(db) == 7
