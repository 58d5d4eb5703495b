"""Whether storage can write right now, and one log line a minute while it cannot.

Every store reports here: a write that fails because storage is unavailable (disk full,
database locked past its timeout, I/O error, read-only file) marks it failing; the next write
that succeeds marks it healthy again. ``/readyz`` reads it, the runtime's recovery sweep waits
for it, and the log says what is wrong once a minute instead of once per message.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger("bot.storage")


class StorageHealth:
    """The state of storage as the last writes found it.

    Args:
        log_every: seconds between two WARNING lines while storage keeps failing.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, *, log_every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log_every = log_every
        self.clock = clock
        self.failing = False
        self.since: float | None = None        # when the current failure began
        self.last_error = ""
        self.failures = 0                       # failed operations in the current failure
        self._unlogged = 0                      # failures since the last WARNING line
        self._logged_at: float | None = None

    def failed(self, operation: str, error: BaseException) -> None:
        """An operation failed because storage is unavailable."""
        now = self.clock()
        if not self.failing:
            self.failing, self.since, self.failures = True, now, 0
        self.failures += 1
        self._unlogged += 1
        self.last_error = f"{operation}: {error}"
        if self._logged_at is None or now - self._logged_at >= self.log_every:
            log.warning("storage cannot write (%s); %d operation(s) failed since the last report, "
                        "%d since it began %.0f s ago; accepted messages wait and are answered when it "
                        "works again", self.last_error, self._unlogged, self.failures, now - self.since)
            self._logged_at, self._unlogged = now, 0

    def succeeded(self) -> None:
        """A write went through: storage works (again)."""
        if not self.failing:
            return
        now = self.clock()
        log.warning("storage writes again after %.1f s (%d operation(s) failed)", now - (self.since or now),
                    self.failures)
        self.failing, self.since, self._logged_at, self._unlogged = False, None, None, 0

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` shows: ``ok``, or ``failing`` with the error and for how long."""
        if not self.failing:
            return {"state": "ok"}
        return {"state": "failing", "error": self.last_error, "failures": self.failures,
                "seconds": round(self.clock() - (self.since or self.clock()), 1)}
