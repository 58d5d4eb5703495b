"""A real, throwaway mail set-up for the e-mail tests: dovecot (IMAP) and aiosmtpd (SMTP).

``mail_server`` (session) starts Debian's dovecot (``dovecot-imapd``, installed by
scripts/install-test-deps.sh) on first use: a minimal config in a temp directory,
``protocols = imap`` on 127.0.0.1 and a free port, plaintext login allowed (loopback only,
no TLS), one user in a passwd-file, maildir under the temp directory. It runs in the
foreground (``dovecot -F``) as this session's child and is stopped by its pid at the end.
As root, dovecot's own unprivileged users (``dovecot``, ``dovenull``) run its processes and
own the mail; otherwise everything runs as the current user.

``smtp_sink`` (function) is an aiosmtpd server on a free port that keeps every mail it
receives (``sink.messages``: parsed with ``policy=default``) for the test to read.

``append`` puts a mail INTO the mailbox with the real IMAP client (stdlib imaplib: APPEND).
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

HOST = "127.0.0.1"
USER = "support@shop.test"
PASSWORD = secrets.token_urlsafe(18)      # random per session: the log test searches for it
DOVECOT = os.environ.get("OMNIBOT_DOVECOT", "/usr/sbin/dovecot")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class MailServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "dovecot.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(HOST, self.port, timeout=10)
        conn.login(self.user, self.password)
        return conn

    def append(self, msg: EmailMessage | bytes, folder: str = "INBOX") -> None:
        """Deliver a mail into the mailbox (IMAP APPEND, unseen)."""
        data = msg if isinstance(msg, bytes) else msg.as_bytes(policy=email.policy.SMTP)
        conn = self.imap()
        try:
            typ, resp = conn.append(folder, "", imaplib.Time2Internaldate(time.time()), data)
            assert typ == "OK", resp
        finally:
            conn.logout()

    def flags(self, folder: str = "INBOX") -> list[str]:
        """The flags of every mail in the folder, in order (to check \\Seen)."""
        conn = self.imap()
        try:
            conn.select(folder, readonly=True)
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            return [d.decode() for d in data if isinstance(d, bytes)]
        finally:
            conn.logout()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def _config(root: Path, port: int, internal: str, login: str, uid: int, gid: int) -> str:
    return f"""\
# omnibot test mailbox: IMAP on {HOST}:{port} only, plaintext login, no TLS.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def start_mail_server(*, attempts: int = 3) -> MailServer:
    if not os.access(DOVECOT, os.X_OK):
        pytest.fail(f"{DOVECOT} not found: run scripts/install-test-deps.sh (Debian's dovecot-imapd)")
    for attempt in range(attempts):
        root = Path(tempfile.mkdtemp(prefix="omnibot-dovecot-"))
        port = free_port()
        if os.geteuid() == 0:
            internal, login = "dovecot", "dovenull"
            owner = pwd.getpwnam("dovecot")
        else:
            owner = pwd.getpwuid(os.getuid())
            internal = login = owner.pw_name
        for d in ("run", "state", "mail", "home"):
            (root / d).mkdir()
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        (root / "dovecot.conf").write_text(_config(root, port, internal, login, owner.pw_uid, owner.pw_gid))
        os.chmod(root, 0o755)
        for d in ("mail", "home", "state"):
            os.chown(root / d, owner.pw_uid, owner.pw_gid)
        proc = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                stdout=subprocess.DEVNULL, stderr=open(root / "stderr.log", "wb"))
        server = MailServer(root, port, proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection((HOST, port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return server
            except OSError:
                time.sleep(0.05)
        detail = server.log_tail() + (root / "stderr.log").read_text(errors="replace")
        server.stop()
        if attempt == attempts - 1:
            pytest.fail(f"dovecot did not start on port {port}:\n{detail}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def mail_server() -> Iterator[MailServer]:
    server = start_mail_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox(mail_server: MailServer) -> Iterator[MailServer]:
    """The session's mailbox, emptied before the test."""
    conn = mail_server.imap()
    try:
        conn.select("INBOX")
        conn.store("1:*", "+FLAGS", "\\Deleted")
        conn.expunge()
    except imaplib.IMAP4.error:
        pass
    finally:
        conn.logout()
    yield mail_server


@dataclass
class SmtpSink:
    """What omnibot sent: every mail the local SMTP server received."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # aiosmtpd hook
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))  # type: ignore[attr-defined]
        self.messages.append(email.message_from_bytes(envelope.original_content,  # type: ignore[attr-defined]
                                                      policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink(free_port())
    controller = Controller(sink, hostname=HOST, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
