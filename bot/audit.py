"""The audit log: who did what (README "Privacy"). Append-only; ``omnibot audit`` reads it.

Exports, erasures and retention runs record themselves here; the desks record logins, claims,
reveals of masked data and approvals with the same call::

    await record(store, "agent:Anna Smith", "reveal", customer_id=cid, target=handoff_id)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.model import utcnow


async def record(store: Any, actor: str, action: str, *, customer_id: str | None = None, target: str | None = None,
                 detail: dict[str, Any] | None = None, at: datetime | None = None) -> Any:
    """Append one entry. ``actor``: ``agent:<name>``, ``cli:<user>``, ``system``; ``detail``: counts and
    ids only, never personal data (the log outlives what it describes)."""
    return await store.audit(actor, action, at=at or utcnow(), customer_id=customer_id, target=target,
                             detail=detail)
