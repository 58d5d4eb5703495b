"""One omnibot per SQLite database: SingleInstanceLock on <database>.lock (bot/storage/filelock.py)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from bot.errors import StoreError
from bot.storage.filelock import DatabaseInUse, SingleInstanceLock, lock_path

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from bot.storage.filelock import SingleInstanceLock
lock = SingleInstanceLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the lock of tmp_path/omnibot.db (killed at the end if still alive)."""
    db = tmp_path / "omnibot.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc, db
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


def test_lock_writes_the_pid_and_release_frees_it(tmp_path: Path) -> None:
    db = tmp_path / "data" / "omnibot.db"
    lock = SingleInstanceLock(db)
    lock.acquire()
    try:
        assert lock.held
        assert lock.path == Path(str(db) + ".lock")
        assert lock.path.read_text() == f"{os.getpid()}\n"
        lock.acquire()   # a second acquire of the same lock is a no-op
    finally:
        lock.release()
    assert not lock.held
    lock.release()       # idempotent
    assert lock.path.read_text() == ""   # the file stays (removing it would race a new holder)
    with SingleInstanceLock(db):         # free again
        pass


def test_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.db"
    with SingleInstanceLock(db):
        with pytest.raises(DatabaseInUse) as err:
            SingleInstanceLock(db).acquire()
        assert err.value.pid == os.getpid()
    with SingleInstanceLock(db):   # released by the with block
        pass


def test_lock_held_by_another_process_is_refused_with_its_pid(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, db = holder
    lock = SingleInstanceLock(str(db))
    with pytest.raises(StoreError) as err:
        lock.acquire()
    assert isinstance(err.value, DatabaseInUse)
    assert err.value.pid == proc.pid
    assert str(err.value) == (
        f"{db} is in use by another omnibot (pid {proc.pid}). SQLite serves one instance; for several "
        "instances use PostgreSQL (storage.url: postgresql://...)")
    assert not lock.held


def test_lock_is_freed_when_the_holder_is_killed(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, db = holder
    with pytest.raises(DatabaseInUse):
        SingleInstanceLock(db).acquire()
    os.kill(proc.pid, signal.SIGKILL)   # no cleanup runs: the kernel drops the flock
    assert proc.wait(timeout=10) == -signal.SIGKILL
    with SingleInstanceLock(db) as lock:
        assert lock.path is not None and lock.path.read_text() == f"{os.getpid()}\n"


def test_message_without_a_pid_when_the_holder_wrote_none(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.db"
    fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT)   # a holder that has not written its pid yet
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DatabaseInUse, match=r"omnibot\.db is in use by another omnibot\. SQLite") as err:
            SingleInstanceLock(db).acquire()
        assert err.value.pid is None
    finally:
        os.close(fd)


def test_a_symlink_to_the_database_shares_its_lock(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.db"
    db.touch()
    link = tmp_path / "other-name.db"
    link.symlink_to(db)
    with SingleInstanceLock(db):
        with pytest.raises(DatabaseInUse, match="other-name.db is in use"):
            SingleInstanceLock(link).acquire()


@pytest.mark.parametrize("path", [":memory:", ""])
def test_memory_database_needs_no_lock(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a, b = SingleInstanceLock(path), SingleInstanceLock(path)
    a.acquire()
    b.acquire()
    assert a.path is None and not a.held
    a.release()
    b.release()
    assert list(tmp_path.iterdir()) == []
