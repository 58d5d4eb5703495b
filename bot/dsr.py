"""Data subject requests: find a customer, export everything about them, erase them (README "Privacy").

``omnibot customer export`` and ``omnibot customer erase`` are thin wrappers around these; both
record themselves in the audit log (:mod:`bot.audit`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from bot import audit
from bot.media import safe_name
from bot.model import utcnow


class NotFound(LookupError):
    """No customer matches what was given."""


async def find_customers(store: Any, *, customer_id: str | None = None, email: str | None = None,
                         phone: str | None = None, channel: str | None = None, external_id: str | None = None,
                         phone_regions: list[str] | None = None) -> list[str]:
    """Customer ids matching the id, an e-mail address, a phone number (any format, as WhatsApp
    knows it) or a channel's identity."""
    digits = None
    if phone:
        from bot.privacy import normalize_phone

        e164 = normalize_phone(phone, phone_regions or ["GB", "DE", "FR", "US"])
        if e164 is None:
            raise ValueError(f"{phone!r} is not a phone number (give it with its country code, like +44 20 7946 0958)")
        digits = e164.lstrip("+")
    return list(await store.find_customers(customer_id=customer_id, email=email, phone_digits=digits,
                                           channel=channel, external_id=external_id))


def _json_default(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return None
    return str(v)


async def export_customer(store: Any, customer_id: str, out: Path, *, actor: str = "cli") -> dict[str, int]:
    """Write ``out`` (a zip: ``customer.json`` with every record, ``media/`` with every file); the counts.

    Raises:
        NotFound: no such customer.
    """
    data = await store.customer_data(customer_id)
    if data is None:
        raise NotFound(customer_id)
    data = {"exported_at": utcnow().isoformat(), "format": "omnibot customer export 1", **data}
    files = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for m in data["media"]:
            body = await store.media_data(m["id"])
            if body is None:
                continue
            m["file"] = f"media/{m['id']}-{safe_name(m['name'])}"
            z.writestr(m["file"], body)
            files += 1
        z.writestr("customer.json", json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))
    tmp.replace(out)
    counts = {k: len(data[k]) for k in ("identities", "conversations", "messages", "handoffs", "notes", "tickets",
                                         "surveys", "compensations", "media")}
    counts["files"] = files
    await audit.record(store, actor, "export", customer_id=customer_id, detail=counts)
    return counts


async def erase_customer(store: Any, customer_id: str, *, slack: Any = None, actor: str = "cli") -> dict[str, int]:
    """Erase the customer: first the copies in Slack (``slack``: an AsyncWebClient, when the Slack desk
    is on), then everything in the database (see :mod:`bot.storage.ops_privacy`); the counts.

    Raises:
        NotFound: no such customer.
    """
    if await store.get_customer(customer_id) is None:
        raise NotFound(customer_id)
    counts: dict[str, int] = {}
    if slack is not None:
        from handoff.slack_erase import delete_slack_copies

        threads = await store.customer_desk_threads(customer_id)
        done = await delete_slack_copies(slack, threads)
        counts.update({f"slack_{k}": v for k, v in done.items()})
    erased = await store.erase_customer(customer_id)
    if erased is None:
        raise NotFound(customer_id)
    counts.update(erased)
    await audit.record(store, actor, "erase", customer_id=customer_id, detail=counts)
    return counts
