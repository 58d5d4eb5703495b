"""One customer across channels: link two accounts with a one-time code.

A customer asks on one channel ("link my accounts"): the bot answers there with a 6-digit
code, valid once for ``CODE_TTL``. Sending that code from the other account ("link 482913")
proves the same person holds both: the second customer record is merged into the first
(identities, conversations, tickets), so history and open complaints follow them to every
channel and agents see all of it. Nothing is ever linked on a claim alone (an e-mail address
or a name typed in a chat): only a code delivered through one connector and returned through
another. Wrong codes are limited per account (``MAX_FAILURES`` per ``CODE_TTL``). What the
customer is told is in their conversation's language (flows/i18n.py ``link_*``).
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime, timedelta
from typing import Any, Callable

from bot.model import utcnow
from bot.storage import Store
from flows.engine import ActionContext

log = logging.getLogger(__name__)

CODE_TTL = timedelta(minutes=10)
MAX_FAILURES = 5
CODE = re.compile(r"(?<!\d)(\d{3})[ -]?(\d{3})(?!\d)")


class Linker:
    def __init__(self, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock

    async def _customer(self, ctx: ActionContext) -> str | None:
        conv = await self.store.get_conversation(ctx.conversation_id)
        return conv.customer_id if conv else None

    async def new_code(self, ctx: ActionContext) -> str:
        customer = await self._customer(ctx)
        if customer is None:
            raise LookupError(f"conversation {ctx.conversation_id} is not stored")
        code = f"{secrets.randbelow(10**6):06d}"
        now = self.clock()
        await self.store.create_link_code(customer, code, at=now, expires_at=now + CODE_TTL)
        return code

    async def redeem(self, ctx: ActionContext) -> str:
        customer = await self._customer(ctx)
        m = CODE.search(ctx.text or "")
        if customer is None or m is None:
            return ctx.say("link_bad_format")
        key = f"linkfail:{customer}"
        now = self.clock()
        failures = [datetime.fromisoformat(t) for t in (await self.store.get_meta(key) or "").split() if t]
        failures = [t for t in failures if now - t < CODE_TTL]
        if len(failures) >= MAX_FAILURES:
            return ctx.say("link_too_many")
        kept = await self.store.redeem_link_code(m.group(1) + m.group(2), customer, at=now)
        if kept is None:
            await self.store.set_meta(key, " ".join(t.isoformat() for t in failures + [now]))
            return ctx.say("link_invalid")
        log.info("customer %s linked into %s (%s)", customer, kept, ctx.channel)
        return ctx.say("link_done")


def linking_actions(linker: Linker) -> dict[str, Callable[[ActionContext], Any]]:
    async def link_code(ctx: ActionContext) -> str:
        return await linker.new_code(ctx)

    async def link_with_code(ctx: ActionContext) -> str:
        return await linker.redeem(ctx)

    return {"link_code": link_code, "link_with_code": link_with_code}
