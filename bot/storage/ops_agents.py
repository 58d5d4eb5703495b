"""Store operations for agent accounts (``agents`` table, schema 12; see :mod:`bot.agents`).

E-mails are stored lower case (the login is case-insensitive). Secrets are never stored:
``password_hash`` is an Argon2id hash, ``token_hash`` the SHA-256 of a random personal token.
``session_gen`` is signed into every session cookie: disabling an account or setting its
password bumps it, so every session of that account stops verifying at once, on every instance.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .base import AgentAccount
from .rows import iso, parse_iso
from .sql import All, One, Op, Run

_COLUMNS = "id, name, email, teams, role, password_hash, token_hash, session_gen, disabled, created_at"


def _account(row: Any) -> AgentAccount:
    return AgentAccount(id=row["id"], name=row["name"], email=row["email"], teams=tuple(json.loads(row["teams"])),
                        role=row["role"], disabled=bool(row["disabled"]),
                        created_at=parse_iso(row["created_at"]),  # type: ignore[arg-type]
                        session_gen=int(row["session_gen"]), password_hash=row["password_hash"],
                        token_hash=row["token_hash"])


def create_agent(agent_id: str, *, name: str, email: str, teams: list[str], role: str,
                 password_hash: str | None, created_at: datetime) -> Op[bool]:
    """Add an account; False (nothing changed) if the e-mail is taken."""
    n = yield Run(f"INSERT INTO agents({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, 0, 0, ?) "
                  "ON CONFLICT(email) DO NOTHING",
                  (agent_id, name, email.strip().lower(), json.dumps(list(teams)), role, password_hash,
                   iso(created_at)))
    return n == 1  # type: ignore[no-any-return]


def get_agent(agent_id: str) -> Op[AgentAccount | None]:
    row = yield One(f"SELECT {_COLUMNS} FROM agents WHERE id=?", (agent_id,))
    return _account(row) if row else None


def agent_by_email(email: str) -> Op[AgentAccount | None]:
    row = yield One(f"SELECT {_COLUMNS} FROM agents WHERE email=?", (email.strip().lower(),))
    return _account(row) if row else None


def agent_by_token(token_hash: str) -> Op[AgentAccount | None]:
    """The account whose personal token hashes to ``token_hash``."""
    row = yield One(f"SELECT {_COLUMNS} FROM agents WHERE token_hash=?", (token_hash,))
    return _account(row) if row else None


def list_agents() -> Op[list[AgentAccount]]:
    """Every account (disabled ones too), by e-mail."""
    rows = yield All(f"SELECT {_COLUMNS} FROM agents ORDER BY email")
    return [_account(r) for r in rows]


def count_agents() -> Op[int]:
    """Accounts, disabled ones included: while there are none, the shared desk token works."""
    row = yield One("SELECT COUNT(*) AS n FROM agents")
    return int(row["n"])


def set_agent_disabled(email: str, disabled: bool) -> Op[bool]:
    """Disable (ending its sessions) or enable an account; False if there is no such e-mail."""
    n = yield Run("UPDATE agents SET disabled=?, session_gen=session_gen+1 WHERE email=?",
                  (1 if disabled else 0, email.strip().lower()))
    return n == 1  # type: ignore[no-any-return]


def set_agent_password(email: str, password_hash: str) -> Op[bool]:
    """A new password hash, ending the account's sessions; False if there is no such e-mail."""
    n = yield Run("UPDATE agents SET password_hash=?, session_gen=session_gen+1 WHERE email=?",
                  (password_hash, email.strip().lower()))
    return n == 1  # type: ignore[no-any-return]


def set_agent_token(email: str, token_hash: str) -> Op[bool]:
    """Replace the account's personal token (the old one stops working); False if no such e-mail."""
    n = yield Run("UPDATE agents SET token_hash=? WHERE email=?", (token_hash, email.strip().lower()))
    return n == 1  # type: ignore[no-any-return]
