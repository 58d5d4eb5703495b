"""A real, throwaway PostgreSQL cluster for the test session, and its fixtures.

``pg_server`` (session) starts a private cluster on first use: initdb into a
temp directory, trust auth on 127.0.0.1 only, a free port, durability off for
speed, started with ``pg_ctl -w start`` and stopped at the end of the session
with ``pg_ctl -m fast stop`` (or, failing that, by killing the postmaster pid
this session started). ``pg_url`` (function) is a fresh, empty database on it,
dropped after the test.

As root (CI), initdb refuses to run, so initdb/pg_ctl/postgres run as the
``postgres`` OS user (setpriv, else runuser) and the temp directory is chowned
to it. PostgreSQL comes from Debian's ``postgresql`` package, which
scripts/install-test-deps.sh installs.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterator, TypeVar

import pytest

log = logging.getLogger(__name__)

T = TypeVar("T")

PG_USER = "postgres"          # OS user the server runs as when we are root; also the DB superuser
HOST = "127.0.0.1"
START_TIMEOUT = 30            # seconds for pg_ctl -w start / stop

SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "max_connections": "200",
    # A throwaway cluster: durability off for speed.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
}

HBA = f"""\
# omnibot test cluster: trust, on its private socket and 127.0.0.1 only.
local all all              trust
host  all all {HOST}/32 trust
"""


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: OMNIBOT_PG_BINDIR, the newest
    /usr/lib/postgresql/<ver>/bin (Debian), ``pg_config --bindir``, then PATH."""
    env = os.environ.get("OMNIBOT_PG_BINDIR")
    candidates: list[Path] = [Path(env)] if env else []

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file() and os.access(d / "initdb", os.X_OK):
            return d
    raise PostgresMissing(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin, "
        "pg_config --bindir or PATH: run scripts/install-test-deps.sh "
        "(or set OMNIBOT_PG_BINDIR)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _as_server_user() -> list[str]:
    """The command prefix that runs a program as the server's OS user (empty unless root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        raise PostgresMissing(
            f"running as root, but there is no '{PG_USER}' OS user to run PostgreSQL as "
            "(initdb refuses root): run scripts/install-test-deps.sh") from None
    if setpriv := shutil.which("setpriv"):
        return [setpriv, f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "--"]
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", PG_USER, "--"]
    raise PostgresMissing("running as root, but neither setpriv nor runuser is available "
                          f"to run PostgreSQL as '{PG_USER}'")


@dataclass
class PgServer:
    """A running throwaway cluster: connect to ``host:port`` as ``user`` (trust)."""

    bindir: Path
    base: Path                    # temp directory: data/, the socket, server.log
    host: str = HOST
    port: int = 0
    user: str = PG_USER
    version: str = ""
    pid: int | None = None        # the postmaster this session started
    _db_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    @property
    def admin_dsn(self) -> str:
        """DSN of the maintenance database, as the superuser."""
        return self.dsn("postgres")

    def dsn(self, dbname: str) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/<dbname>``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def next_dbname(self) -> str:
        """A database name not used before in this session: omnibot_test_N."""
        return f"omnibot_test_{next(self._db_numbers)}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT + 10) -> subprocess.CompletedProcess[str]:
        """Run one of the cluster's programs as the server's OS user."""
        return subprocess.run(
            [*_as_server_user(), str(self.bindir / args[0]), *args[1:]],
            cwd=self.base, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"})

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server (fast shutdown, else kill the postmaster we started) and
        delete its directory. Idempotent."""
        if self.pid is not None:
            out = self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w",
                            "-t", str(START_TIMEOUT), "stop")
            if out.returncode != 0:
                log.warning("pg_ctl stop failed (%s); killing postmaster %d",
                            (out.stderr or out.stdout).strip(), self.pid)
                _kill_postmaster(self.pid)
            self.pid = None
        shutil.rmtree(self.base, ignore_errors=True)


def _kill_postmaster(pid: int) -> None:
    """SIGQUIT (immediate shutdown), then SIGKILL if it is still there after 5 s."""
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _postmaster_pid(datadir: Path) -> int | None:
    """The pid on the first line of postmaster.pid, if the server wrote one."""
    try:
        return int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def start_cluster(*, attempts: int = 3) -> PgServer:
    """initdb a temp cluster and start it on a free 127.0.0.1 port (retried if the
    port was taken in between). The caller must ``stop()`` it."""
    bindir = find_bindir()
    prefix = _as_server_user()
    base = Path(tempfile.mkdtemp(prefix="omnibot-pg-"))
    server = PgServer(bindir=bindir, base=base)
    try:
        if prefix:
            pw = pwd.getpwnam(PG_USER)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        out = server._run("initdb", "-D", str(server.datadir), "-U", PG_USER, "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        if out.returncode != 0:
            hint = (f"\n(as root, {PG_USER} must be able to reach {base}: check TMPDIR)"
                    if prefix else "")
            raise RuntimeError(f"initdb failed (exit {out.returncode}):\n{out.stderr or out.stdout}{hint}")
        (server.datadir / "pg_hba.conf").write_text(HBA)
        for attempt in range(1, attempts + 1):
            server.port = free_port()
            # A private socket directory, unless the path is too long for a socket (TCP only then).
            sockdir = str(base) if len(str(base)) < 80 else ""
            conf = {**SETTINGS, "port": str(server.port), "unix_socket_directories": f"'{sockdir}'"}
            # postgresql.auto.conf is read last, so these win over postgresql.conf.
            (server.datadir / "postgresql.auto.conf").write_text(
                "".join(f"{k} = {v}\n" for k, v in conf.items()))
            out = server._run("pg_ctl", "-D", str(server.datadir), "-l", str(server.logfile),
                              "-w", "-t", str(START_TIMEOUT), "start")
            server.pid = _postmaster_pid(server.datadir)
            if out.returncode == 0 and server.pid:
                break
            if server.pid:  # started but pg_ctl gave up waiting: stop what we started
                _kill_postmaster(server.pid)
                server.pid = None
            if attempt == attempts or "Address already in use" not in server.log_tail():
                raise RuntimeError(f"pg_ctl start failed (exit {out.returncode}): "
                                   f"{(out.stderr or out.stdout).strip()}\n--- server log:\n{server.log_tail()}")
        server.version = server._run("postgres", "--version", timeout=10).stdout.strip()
        return server
    except BaseException:
        server.stop()
        raise


def run_async(fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run ``fn()`` to completion on a private event loop in a worker thread, so
    sync fixtures work whatever loop (if any) the test itself runs in."""
    result: list[T] = []
    error: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(asyncio.wait_for(fn(), timeout)))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(e)

    t = threading.Thread(target=main, name="pg-fixture", daemon=True)
    t.start()
    t.join(timeout + 5)
    if error:
        raise error[0]
    if not result:
        raise TimeoutError("PostgreSQL fixture operation did not finish")
    return result[0]


async def _admin(server: PgServer, sql: str) -> None:
    """Run one statement on the maintenance database."""
    import asyncpg

    conn = await asyncpg.connect(server.admin_dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(server: PgServer) -> str:
    """A new empty database (copied from template0); returns its name."""
    name = server.next_dbname()
    run_async(lambda: _admin(server, f'CREATE DATABASE "{name}" TEMPLATE template0'))
    return name


def drop_database(server: PgServer, name: str) -> None:
    """Drop a test database, disconnecting anything still connected to it."""
    run_async(lambda: _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's throwaway PostgreSQL cluster, started on first use."""
    server = start_cluster()
    atexit.register(server.stop)  # in case the session dies before teardown
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for this test:
    ``postgresql://postgres@127.0.0.1:PORT/omnibot_test_N``; dropped afterwards."""
    name = create_database(pg_server)
    try:
        yield pg_server.dsn(name)
    finally:
        drop_database(pg_server, name)


__all__ = ["PgServer", "PostgresMissing", "create_database", "drop_database", "find_bindir",
           "pg_server", "pg_url", "start_cluster"]
