"""Agent accounts: the store's operations on both backends, password hashing, sessions and
``omnibot agent add|list|disable|token`` through click's runner."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import argon2
import pytest
from click.testing import CliRunner, Result

from bot.agents import (AccountError, Sessions, add_agent, check_password, hash_password, new_token,
                        token_hash)
from bot.cli import main
from bot.storage import Store, open_store

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


# -- the store (SQLite and PostgreSQL) -------------------------------------------------------------

async def test_accounts_are_stored_and_found_by_email_and_token(store: Store) -> None:
    assert await store.count_agents() == 0 and await store.list_agents() == []
    assert await store.create_agent("agt_1", name="Anna Smith", email="Anna@Shop.test ", teams=["support"],
                                    role="agent", password_hash="h1", created_at=T0)
    # the e-mail is the login: unique, whatever its case
    assert not await store.create_agent("agt_2", name="Other", email="anna@shop.TEST", teams=[], role="admin",
                                        password_hash="h2", created_at=T0)
    a = await store.agent_by_email("ANNA@shop.test")
    assert a is not None and (a.id, a.name, a.email, a.teams, a.role, a.disabled) == (
        "agt_1", "Anna Smith", "anna@shop.test", ("support",), "agent", False)
    assert a.password_hash == "h1" and a.token_hash is None and a.created_at == T0
    assert await store.get_agent("agt_1") == a and await store.get_agent("agt_x") is None
    assert await store.agent_by_token("ab" * 32) is None
    assert await store.set_agent_token("anna@shop.test", "ab" * 32)
    assert (await store.agent_by_token("ab" * 32)).id == "agt_1"  # type: ignore[union-attr]
    assert await store.set_agent_token("anna@shop.test", "cd" * 32)       # the old token stops working
    assert await store.agent_by_token("ab" * 32) is None
    assert not await store.set_agent_token("nobody@shop.test", "ef" * 32)
    assert await store.count_agents() == 1


async def test_disable_and_password_change_end_sessions(store: Store) -> None:
    await store.create_agent("agt_1", name="Anna", email="anna@shop.test", teams=["support"], role="agent",
                             password_hash="h1", created_at=T0)
    gen = (await store.get_agent("agt_1")).session_gen  # type: ignore[union-attr]
    assert await store.set_agent_password("anna@shop.test", "h2")
    a = await store.get_agent("agt_1")
    assert a is not None and a.password_hash == "h2" and a.session_gen == gen + 1
    assert await store.set_agent_disabled("anna@shop.test", True)
    a = await store.get_agent("agt_1")
    assert a is not None and a.disabled and a.session_gen == gen + 2
    assert await store.set_agent_disabled("anna@shop.test", False)
    assert not (await store.get_agent("agt_1")).disabled  # type: ignore[union-attr]
    assert not await store.set_agent_disabled("nobody@shop.test", True)
    assert [x.email for x in await store.list_agents()] == ["anna@shop.test"]


# -- hashing, accounts, sessions --------------------------------------------------------------------

def test_passwords_are_argon2id_hashes(real_password_hashes: None) -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct horse" not in h
    # argon2-cffi's defaults, RFC 9106's low-memory profile (the other tests hash cheaply: conftest)
    assert argon2.extract_parameters(h) == argon2.profiles.RFC_9106_LOW_MEMORY
    assert check_password(h, "correct horse")
    assert not check_password(h, "Correct horse") and not check_password(None, "x")
    assert not check_password("not a hash", "x")
    assert hash_password("correct horse") != h          # salted
    t = new_token()
    assert t.startswith("omb_") and len(t) > 40 and token_hash(t) != t and len(token_hash(t)) == 64


async def test_add_agent_checks_its_input(memory_store: Store) -> None:
    teams = ["support", "complaints"]
    a = await add_agent(memory_store, name=" Anna Smith ", email="Anna@shop.test", teams=["support"],
                        role="agent", password="long enough", known_teams=teams)
    assert (a.name, a.email) == ("Anna Smith", "anna@shop.test") and check_password(a.password_hash, "long enough")
    bad = [dict(email="x@shop.test", name="B", teams=["nope"]), dict(email="not-an-email", name="B"),
           dict(email="b@shop.test", name="B", role="boss"), dict(email="b@shop.test", name="B", password="short"),
           dict(email="anna@shop.test", name="B"), dict(email="b@shop.test", name="anna smith"),
           dict(email="b@shop.test", name="B", teams=[])]
    for kw in bad:
        args = {"teams": ["support"], "role": "agent", "password": "long enough"} | kw
        with pytest.raises(AccountError):
            await add_agent(memory_store, known_teams=teams, **args)  # type: ignore[arg-type]
    assert await memory_store.count_agents() == 1


async def test_sessions_expire_and_end_with_the_generation(memory_store: Store) -> None:
    clock = type("Clock", (), {"now": T0, "__call__": lambda self: self.now})()
    a = await add_agent(memory_store, name="Anna", email="anna@shop.test", teams=["support"], role="agent",
                        password="long enough")
    sessions = Sessions("secret", hours=12, clock=clock)
    cookie = sessions.issue(a)
    assert (await sessions.account(memory_store, cookie)).id == a.id  # type: ignore[union-attr]
    assert await Sessions("other secret", hours=12, clock=clock).account(memory_store, cookie) is None
    assert await sessions.account(memory_store, cookie[:-2] + "xx") is None
    assert await sessions.account(memory_store, None) is None
    clock.now = T0 + timedelta(hours=12)
    assert await sessions.account(memory_store, cookie) is None          # expired
    clock.now = T0
    await memory_store.set_agent_password("anna@shop.test", hash_password("another one"))
    assert await sessions.account(memory_store, cookie) is None          # ended by the password change
    fresh = sessions.issue((await memory_store.get_agent(a.id)))  # type: ignore[arg-type]
    assert await sessions.account(memory_store, fresh) is not None
    await memory_store.set_agent_disabled("anna@shop.test", True)
    assert await sessions.account(memory_store, fresh) is None           # disabled


# -- the CLI -----------------------------------------------------------------------------------------

def cfg(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
storage: {{url: "sqlite:///{tmp_path / 'omnibot.sqlite3'}"}}
handoff:
  default_team: support
  teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}
""")
    return str(path)


def agent(c: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["agent", *args[:1], "-c", c, *args[1:]], input=stdin)


async def stored(c: str, email: str):  # type: ignore[no-untyped-def]
    store = await open_store(f"sqlite:///{Path(c).parent / 'omnibot.sqlite3'}")
    try:
        return await store.agent_by_email(email)
    finally:
        await store.close()


def test_cli_add_list_disable_token(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    r = agent(c, "list")
    assert r.exit_code == 0 and "no agent accounts" in r.output
    r = agent(c, "add", "--name", "Anna Smith", "--email", "anna@shop.test", "--teams", "support,complaints",
              "--role", "agent")
    assert r.exit_code == 0, r.output
    assert "added agent Anna Smith <anna@shop.test> (teams: support, complaints)" in r.output
    password = r.output.split("password: ")[1].split()[0]
    a = asyncio.run(stored(c, "anna@shop.test"))
    assert a is not None and check_password(a.password_hash, password) and password not in a.password_hash
    r = agent(c, "add", "--name", "Bob Lee", "--email", "bob@shop.test", "--teams", "support", "--role",
              "supervisor", "--password-stdin", stdin="bobs password\n")
    assert r.exit_code == 0 and "password:" not in r.output
    assert check_password(asyncio.run(stored(c, "bob@shop.test")).password_hash, "bobs password")

    r = agent(c, "list")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split() == ["EMAIL", "NAME", "ROLE", "TEAMS", "DISABLED"]
    assert lines[1].split() == ["anna@shop.test", "Anna", "Smith", "agent", "support,complaints", "no"]
    assert lines[2].split() == ["bob@shop.test", "Bob", "Lee", "supervisor", "support", "no"]

    r = agent(c, "token", "anna@shop.test")
    assert r.exit_code == 0
    token = r.stdout.strip()
    assert token.startswith("omb_") and asyncio.run(stored(c, "anna@shop.test")).token_hash == token_hash(token)

    r = agent(c, "password", "bob@shop.test", "--password-stdin", stdin="a new password\n")
    assert r.exit_code == 0 and r.output.strip() == "new password for bob@shop.test"
    b = asyncio.run(stored(c, "bob@shop.test"))
    assert check_password(b.password_hash, "a new password") and b.session_gen == 1   # its sessions ended
    r = agent(c, "password", "anna@shop.test")
    assert r.exit_code == 0 and check_password(asyncio.run(stored(c, "anna@shop.test")).password_hash,
                                               r.output.split(": ")[1].strip())

    r = agent(c, "disable", "bob@shop.test")
    assert r.exit_code == 0 and "disabled bob@shop.test" in r.output
    assert agent(c, "list").output.splitlines()[2].split()[-1] == "yes"


def test_cli_errors_exit_1_with_the_reason(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    add = ["add", "--name", "Anna", "--email", "anna@shop.test", "--teams", "support"]
    assert agent(c, *add).exit_code == 0
    for args, message in [(add, "exists already"),
                          (["add", "--name", "Cy", "--email", "cy@shop.test", "--teams", "sales"],
                           "unknown team 'sales' (teams: support, complaints)"),
                          (["add", "--name", "Cy", "--email", "cy@shop.test"], "give at least one team"),
                          (["disable", "nobody@shop.test"], "no agent account with e-mail nobody@shop.test"),
                          (["token", "nobody@shop.test"], "no agent account with e-mail nobody@shop.test"),
                          (["password", "nobody@shop.test"], "no agent account with e-mail nobody@shop.test")]:
        r = agent(c, *args)
        assert r.exit_code == 1 and "error: " in r.output and message in r.output, (args, r.output)
    r = agent(c, "add", "--name", "Cy", "--email", "cy@shop.test", "--teams", "support", "--password-stdin",
              stdin="short\n")
    assert r.exit_code == 1 and "at least 8 characters" in r.output
    r = agent(c, "add", "--name", "Cy", "--email", "cy@shop.test", "--role", "boss")
    assert r.exit_code == 2 and "boss" in r.output
