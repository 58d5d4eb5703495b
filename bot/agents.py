"""Agent accounts: passwords, personal tokens and desk sessions.

* Passwords are hashed with Argon2id (argon2-cffi's :class:`~argon2.PasswordHasher`, its
  default parameters); a hash made with weaker parameters is replaced at the next login.
* Personal API tokens (``omb_`` + 32 random bytes) are shown once; the database keeps their
  SHA-256 (a random 256-bit token needs no slow hash, and a hash can be looked up).
* Sessions are signed cookies, no table: ``<account id>.<session generation>.<expiry>``
  signed with the app secret (:class:`bot.auth.Signer`). Every instance verifies them with
  the shared secret; the account row is read on each request anyway (for its role and
  teams), and its ``session_gen`` must match, so disabling an account or changing its
  password ends every session of it at once. Logging out deletes the cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.auth import Signer
from bot.errors import OmnibotError
from bot.storage import Store
from bot.storage.base import AgentAccount
from bot.storage.rows import new_id

ROLES = ("agent", "supervisor", "admin")
TOKEN_PREFIX = "omb_"
_hasher = PasswordHasher()


class AccountError(OmnibotError):
    """An account cannot be added or changed (the message says why)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


_DUMMY: list[str] = []


def check_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; without a hash (no such account) as slow as with one, so the
    time taken does not tell which e-mails have accounts."""
    if not password_hash:
        if not _DUMMY:
            _DUMMY.append(_hasher.hash(secrets.token_urlsafe(16)))
        password_hash = _DUMMY[0]
        password = "\0" + password      # never matches
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    """A generated password: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def add_agent(store: Store, *, name: str, email: str, teams: list[str], role: str,
                    password: str, known_teams: list[str] | None = None) -> AgentAccount:
    """Create an account.

    Raises:
        AccountError: bad name, e-mail, role or team, or the e-mail (or name) is taken.
    """
    name, email = name.strip(), email.strip().lower()
    if not 1 <= len(name) <= 60:
        raise AccountError("the name must be 1-60 characters")
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise AccountError(f"{email!r} is not an e-mail address")
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    teams = [t.strip() for t in teams if t.strip()]
    if known_teams is not None and (unknown := [t for t in teams if t not in known_teams]):
        raise AccountError(f"unknown team {unknown[0]!r} (teams: {', '.join(known_teams)})")
    if not teams and role != "admin":
        raise AccountError("give at least one team (--teams support,complaints)")
    if len(password) < 8:
        raise AccountError("the password must be at least 8 characters")
    # the name is who acts on the desks (a claim is held by a name): two accounts must not share one
    if any(a.name.casefold() == name.casefold() for a in await store.list_agents()):
        raise AccountError(f"an account named {name!r} exists already; give a distinct name")
    agent_id = new_id("agt")
    if not await store.create_agent(agent_id, name=name, email=email, teams=teams, role=role,
                                    password_hash=hash_password(password), created_at=_utcnow()):
        raise AccountError(f"an account with e-mail {email} exists already")
    account = await store.get_agent(agent_id)
    assert account is not None
    return account


async def update_agent(store: Store, email: str, *, name: str | None = None, teams: list[str] | None = None,
                       role: str | None = None) -> AgentAccount:
    """Change an account's name, teams or role. Sessions go on: the desks read the account's
    role and teams on every request, so a change applies at its next one.

    Raises:
        AccountError: a bad name, role, no team for a non-admin, or the name is another account's.
        LookupError: no account with this e-mail.
    """
    account = await store.agent_by_email(email)
    if account is None:
        raise LookupError(email)
    if name is not None:
        name = name.strip()
        if not 1 <= len(name) <= 60:
            raise AccountError("the name must be 1-60 characters")
        if any(a.name.casefold() == name.casefold() and a.id != account.id for a in await store.list_agents()):
            raise AccountError(f"an account named {name!r} exists already; give a distinct name")
    if role is not None and role not in ROLES:
        raise AccountError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not (teams if teams is not None else account.teams) and (role or account.role) != "admin":
        raise AccountError("give at least one team (--teams support,complaints)")
    await store.update_agent(email, name=name, teams=teams, role=role)
    changed = await store.agent_by_email(email)
    assert changed is not None
    return changed


class Sessions:
    """Signed, expiring session cookies for agent accounts.

    Args:
        secret: the app secret.
        hours: how long a session lasts (agent_desk.session_hours).
        clock: now, as an aware datetime (tests move it).
    """

    def __init__(self, secret: str, *, hours: float, clock: Callable[[], datetime] = _utcnow) -> None:
        self._signer = Signer(secret, "agent-account-session")
        self.hours = hours
        self.clock = clock

    def issue(self, account: AgentAccount) -> str:
        expires = int((self.clock() + timedelta(hours=self.hours)).timestamp())
        return self._signer.sign(f"{account.id}.{account.session_gen}.{expires}")

    async def account(self, store: Store, cookie: str | None) -> AgentAccount | None:
        """The enabled account the cookie stands for, or None (forged, expired, ended, disabled)."""
        value = self._signer.verify(cookie)
        if value is None or value.count(".") != 2:
            return None
        agent_id, gen, expires = value.split(".")
        if not (gen.isdigit() and expires.isdigit()) or int(expires) <= self.clock().timestamp():
            return None
        account = await store.get_agent(agent_id)
        if account is None or account.disabled or account.session_gen != int(gen):
            return None
        return account
