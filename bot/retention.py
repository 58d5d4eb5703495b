"""Retention (README "Privacy"): personal data is kept no longer than ``privacy.retention`` says.

Every ``check_every`` each instance wakes up; the one holding the ``privacy-retention`` lease (one
per cluster; with SQLite the only instance) runs the job when the last run, kept in the database
(``meta``), is at least ``check_every`` old, so restarts neither skip nor repeat it. A run removes
message texts, attachments, whole closed conversations and audit entries past their age
(:mod:`bot.storage.ops_privacy`), keeping the figures (tickets' counts, times and CSAT scores), and
records what it did in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from bot import audit
from bot.errors import StorageUnavailable
from bot.model import utcnow
from bot.storage.rows import iso, parse_iso

log = logging.getLogger(__name__)

LEASE = "privacy-retention"
LAST_RUN = "privacy:retention:last_run"


class Retention:
    """The retention job.

    Args:
        store: storage.
        cfg: ``privacy.retention`` (bot.config.RetentionConfig).
        holder: who takes the lease (the cluster instance's id).
        clock: aware "now" (tests move it by hand).
        monotonic: the lease's clock (seconds), the cluster's.
    """

    def __init__(self, store: Any, cfg: Any, *, holder: str, clock: Callable[[], datetime] = utcnow,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.holder = holder
        self.clock = clock
        self.monotonic = monotonic or (lambda: self.clock().timestamp())

    async def run_if_due(self) -> dict[str, Any] | None:
        """Run once if this instance holds the lease and the last run is ``check_every`` old; what it did."""
        if not await self.store.take_lease(LEASE, self.holder, now=self.monotonic(), ttl=self.cfg.check_every):
            return None
        now = self.clock()
        last = parse_iso(await self.store.get_meta(LAST_RUN))
        if last is not None and now - last < timedelta(seconds=self.cfg.check_every):
            return None
        done = await self.run(now)
        await self.store.set_meta(LAST_RUN, iso(now))
        return done

    async def run(self, now: datetime) -> dict[str, Any]:
        """Remove what is past its age at ``now``; recorded in the audit log."""
        c = self.cfg
        done: dict[str, Any] = {}

        def before(seconds: float) -> datetime:
            return now - timedelta(seconds=seconds)

        if c.message_texts is not None:
            done["message_texts"] = await self.store.expire_message_texts(before(c.message_texts))
        if c.attachments is not None:
            done["attachments"] = await self.store.expire_attachments(before(c.attachments))
        if c.closed_conversations is not None:
            counts = await self.store.expire_conversations(before(c.closed_conversations))
            done["conversations"] = counts.get("conversations", 0)
            done["customers_anonymised"] = counts.get("customers_anonymised", 0)
        if c.audit is not None:
            done["audit_entries"] = await self.store.expire_audit(before(c.audit))
        await audit.record(self.store, "system", "retention", at=now, detail=done)
        if any(done.values()):
            log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        return done

    async def loop(self, *, start_delay: float = 15.0) -> None:
        """Run when due, every ``check_every`` seconds (at most a minute apart), until cancelled.

        The first check waits ``start_delay`` seconds: start-up stays quick, and a bot started on a
        failing database reports that (its writes fail) instead of this job's small writes hiding
        it. Nothing is skipped by waiting: when the last run was is kept in the database."""
        await asyncio.sleep(start_delay)
        while True:
            try:
                await self.run_if_due()
            except asyncio.CancelledError:
                raise
            except StorageUnavailable as exc:
                log.info("retention postponed: %s", exc)
            except Exception:  # noqa: BLE001 - a bad round must not stop the next one
                log.exception("retention run failed")
            await asyncio.sleep(min(self.cfg.check_every, 60.0))
