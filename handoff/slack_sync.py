"""Keeping Slack in step with storage: the card of each handoff, and its thread.

Storage is the truth; Slack is brought up to date by two jobs per handoff, each running
alone per handoff (a second request while one runs makes it run once more afterwards):

- the *card job* posts the card of a new handoff, moves it on a transfer, and updates it when
  what it shows changed (a hash of the rendered card is kept in ``desk_threads``, so an
  unchanged card is never sent again, across restarts too);
- the *thread job* relays what the customer wrote (and what agents wrote on other desks) past
  ``desk_threads.relayed_upto``, tells the thread about failed deliveries once, and pings the
  team once when the handoff has waited too long (:meth:`Store.claim_desk_alert`).

Jobs of different handoffs run side by side; Slack's limits are kept by
:class:`handoff.slack_poster.SlackPoster`, where thread messages go ahead of new cards and card
updates have their own lane. Events start the jobs at once; :meth:`DeskSync.sweep` starts them
for every open handoff every ``slack.sync_interval`` seconds, and each job first checks with
small queries whether anything is missing, so a quiet desk costs no Slack call and no
transcript rebuild. Every cursor moves only after Slack answered, so an outage or a restart
delays a card or a message, never loses it, and nothing is posted twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import privacy
from bot.config import Config
from bot.errors import StorageUnavailable
from bot.model import outbound_meta, utcnow
from bot.storage import HandoffRecord, Store

from .context import handoff_context
from .privacy_view import slack_view
from .slack_card import ACTIVE, CardRenderer, card_hash, escape
from .slack_commands import relay_notes
from .slack_poster import CARD, REFRESH, URGENT, SlackPoster

if TYPE_CHECKING:
    from bot.cluster import Cluster

log = logging.getLogger(__name__)

DESK = "slack"
RELAY_BATCH = 100


class _SingleFlight:
    """One task per key; a request while it runs makes it run once more when it ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    def kick(self, key: str, job: Callable[[str], Awaitable[None]]) -> None:
        if key in self._running:
            self._again.add(key)
            return
        self._running[key] = asyncio.create_task(self._loop(key, job), name=f"{self.name}-{key}")

    async def _loop(self, key: str, job: Callable[[str], Awaitable[None]]) -> None:
        try:
            while True:
                self._again.discard(key)
                await job(key)
                if key not in self._again:
                    return
        finally:
            self._running.pop(key, None)

    def busy(self) -> int:
        return len(self._running)

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()


class DeskSync:
    """The card and thread jobs of the Slack desk.

    Args:
        config: the whole configuration.
        store: storage.
        poster: paced chat.postMessage / chat.update.
        client: the Web API client for what is not paced (file uploads).
        renderer: the card.
        flows: the loaded flows: the card shows the fields of the handoff's flow (as the web desk
            does), and slots marked ``personal: true`` are not copied to Slack.
        cluster: with several instances on one database, a handoff's card job (and its thread
            job) runs on one instance at a time: each holds a lease while it runs, and another
            instance's job for the same handoff waits for it, then finds nothing left to do.
    """

    #: seconds a job's lease lasts unless renewed (while the job runs it is renewed every third of it)
    job_lease_ttl = 30.0
    #: longest wait for another instance's job of the same handoff; then the next sync retries
    job_lease_wait = 60.0

    def __init__(self, *, config: Config, store: Store, poster: SlackPoster, client: AsyncWebClient,
                 renderer: CardRenderer, cluster: Cluster | None = None, flows: Any = None) -> None:
        self.config = config
        self.flows = flows            # flows.FlowSet: the card shows the handoff's flow's labelled fields
        self.personal = privacy.personal_slots(flows) if flows is not None else frozenset()
        self.cluster = cluster
        self.cfg = config.slack
        self.store = store
        self.poster = poster
        self.client = client
        self.render = renderer
        self._shown: dict[str, tuple[Any, ...]] = {}   # handoff -> what its card showed when last checked
        self._cards = _SingleFlight("slack-card")
        self._threads = _SingleFlight("slack-thread")

    def use_flows(self, flows: Any) -> None:
        """Another flow version serves (a reload): its fields, personal slots and default language."""
        self.flows = self.render.flows = flows
        self.personal = privacy.personal_slots(flows) if flows is not None else frozenset()

    # -- starting jobs -------------------------------------------------------------

    def kick(self, handoff_id: str, *, card: bool = True, thread: bool = True, redraw: bool = False) -> None:
        """Bring the handoff's card and/or thread up to date, soon, in the background.

        ``redraw``: render the card even if its handoff and messages did not change (a delivery
        failed: the card says the customer is unreachable; still no update if it looks the same).
        """
        if redraw:
            self._shown.pop(handoff_id, None)
        if card:
            self._cards.kick(handoff_id, self._guard(self.sync_card))
        if thread:
            self._threads.kick(handoff_id, self._guard(self.sync_thread))

    async def sweep(self) -> None:
        """Start both jobs for every open handoff (they find what is missing with small queries)."""
        for h in await self.store.list_handoffs(states=ACTIVE):
            self.kick(h.id)

    def busy(self) -> int:
        return self._cards.busy() + self._threads.busy()

    async def stop(self) -> None:
        await self._cards.stop()
        await self._threads.stop()

    def _guard(self, job: Callable[[str], Awaitable[None]]) -> Callable[[str], Awaitable[None]]:
        async def run(handoff_id: str) -> None:
            try:
                async with self._exclusive(f"slack-{job.__name__}:{handoff_id}") as held:
                    if held:
                        await job(handoff_id)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.warning("Slack unreachable while syncing handoff %s (%s); the next sync retries",
                            handoff_id, type(exc).__name__)
            except SlackApiError as exc:
                log.warning("Slack refused a write for handoff %s (%s); the next sync retries",
                            handoff_id, exc.response.get("error"))
            except StorageUnavailable as exc:
                # bot.storage reports the outage once a minute; one line per sync would flood the log
                log.info("sync of handoff %s waits for storage (%s); the next sync retries", handoff_id, exc)
            except Exception:
                log.exception("slack sync of handoff %s failed; the next sync retries", handoff_id)
        return run

    @asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[bool]:
        """Hold the lease ``name`` while the block runs (True), waiting while another instance
        holds it; False if it stayed held for ``job_lease_wait``. Without clustering: True, free."""
        if self.cluster is None:
            yield True
            return
        cluster, ttl = self.cluster, self.job_lease_ttl
        deadline = time.monotonic() + self.job_lease_wait
        delay = 0.01
        while not await self.store.take_lease(name, cluster.id, now=cluster.clock(), ttl=ttl):
            if time.monotonic() > deadline:
                log.info("%s stayed busy on another instance; the next sync retries", name)
                yield False
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

        async def renew() -> None:
            while True:
                await asyncio.sleep(ttl / 3)
                try:
                    await self.store.take_lease(name, cluster.id, now=cluster.clock(), ttl=ttl)
                except StorageUnavailable:
                    pass

        renewing = asyncio.create_task(renew(), name=f"lease-{name}")
        try:
            yield True
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            try:
                await asyncio.shield(self.store.release_lease(name, cluster.id))
            except (StorageUnavailable, OSError) as exc:
                log.debug("lease %s not released (%s); it lapses in %.0f s", name, exc, ttl)

    # -- the card --------------------------------------------------------------------

    async def sync_card(self, handoff_id: str) -> None:
        """Post, move or update the card."""
        h = await self.store.get_handoff(handoff_id)
        if h is None:
            return
        link = await self.store.desk_thread(DESK, handoff_id)
        channel = self.cfg.channel_for(h.team)
        if link is None:
            if h.state in ACTIVE and channel:
                await self._post_card(h, channel)
            return
        if link["team"] != h.team and h.state in ACTIVE and channel:
            # transferred: the old card says where it went; a new card goes to the new team
            ctx = await self._context(h)
            await self.poster.update(link["channel"], link["ts"], self.render.summary(h),
                                     blocks=self.render.card(h, ctx, moved_to=channel))
            await self._post_card(h, channel, ctx)
            return
        # What the card shows depends on these; unchanged, there is nothing to render.
        newer = await self.store.history(h.conversation_id, after_id=link["relayed_upto"], limit=RELAY_BATCH)
        shown = (h.state, h.agent, h.team, h.priority, newer[-1].id if newer else link["relayed_upto"])
        if self._shown.get(h.id) == shown:
            return
        ctx = await self._context(h)
        text, blocks = self.render.summary(h), self.render.card(h, ctx)
        digest = card_hash(text, blocks)
        if digest != link.get("card_hash"):
            await self.poster.update(link["channel"], link["ts"], text, blocks=blocks, priority=REFRESH)
            await self.store.update_desk_thread(DESK, h.id, card_hash=digest)
        self._shown[h.id] = shown
        if h.state not in ACTIVE:
            self._shown.pop(h.id, None)

    async def _context(self, h: HandoffRecord) -> dict[str, Any]:
        """The handoff's context as Slack may show it: the flow's fields, personal data masked
        (``privacy.policy`` place ``slack``; personal slots as ``[personal data]``)."""
        ctx = await handoff_context(self.store, self.config, h, flows=self.flows)
        return slack_view(self.personal).tree(ctx)

    async def _post_card(self, h: HandoffRecord, channel: str, ctx: dict[str, Any] | None = None) -> None:
        ctx = ctx if ctx is not None else await self._context(h)
        last_id = max((m["id"] for m in ctx.get("transcript", [])), default=0)
        text, blocks = self.render.summary(h), self.render.card(h, ctx)
        posted = await self.poster.post(channel, text, blocks=blocks, priority=CARD)
        await self.store.save_desk_thread(DESK, h.id, channel=posted["channel"], ts=posted["ts"],
                                          team=h.team, relayed_upto=last_id)
        await self.store.update_desk_thread(DESK, h.id, card_hash=card_hash(text, blocks))
        self._shown.pop(h.id, None)
        await self._attach_transcript(posted["channel"], posted["ts"], ctx)
        self.kick(h.id, card=False)      # messages that came while the card was on its way

    async def _attach_transcript(self, channel: str, ts: str, ctx: dict[str, Any]) -> None:
        transcript = ctx.get("transcript", [])
        if len(transcript) <= self.cfg.transcript_lines:
            return
        full = "\n".join(f"[{m['at'][:19].replace('T', ' ')}] {self.render.who(m)}: {m['text']}" for m in transcript)
        try:
            await self.client.files_upload_v2(channel=channel, thread_ts=ts, content=full,
                                              filename="transcript.txt", title="Full transcript")
        except SlackApiError as exc:
            log.warning("transcript upload failed: %s", exc.response.get("error"))

    # -- the thread ------------------------------------------------------------------

    async def sync_thread(self, handoff_id: str) -> None:
        """Relay new messages in order, report failed deliveries, ping if unclaimed too long."""
        link = await self.store.desk_thread(DESK, handoff_id)
        if link is None:
            return                        # the card job posts the card first, then kicks this
        h = await self.store.get_handoff(handoff_id)
        if h is None:
            return
        upto = link["relayed_upto"]
        while True:
            batch = await self.store.history(h.conversation_id, after_id=upto, limit=RELAY_BATCH)
            for m in batch:
                # an agent's reply written in Slack is in the thread already (whichever instance took it)
                line = "" if outbound_meta(m.payload).get("via") == "slack" else self._thread_line(m.to_dict())
                if line:
                    await self.poster.post(link["channel"], line, thread_ts=link["ts"], priority=URGENT)
                await self.store.update_desk_thread(DESK, handoff_id, relayed_upto=m.id)
                upto = m.id
            if len(batch) < RELAY_BATCH:
                break
        await relay_notes(self.store, self.poster, h, link)     # web-desk notes, marked as notes
        await self._report_failures(h, link)
        await self._alert_if_waiting(h, link)

    def _thread_line(self, m: dict[str, Any]) -> str:
        m = slack_view(self.personal).tree(m)       # e-mail, phone, ... masked (privacy.policy: slack)
        if m["direction"] == "in":
            return self.render.customer_line(m)
        if m["role"] == "agent":
            return f"*{escape(m.get('sender') or 'Agent')} (web desk):* {escape(m['text'])}"
        return ""

    async def _report_failures(self, h: HandoffRecord, link: dict[str, Any]) -> None:
        """Once per message: what the customer was sent during the handoff and did not get."""
        warned = set(json.loads(link.get("warned") or "[]"))
        for message_id, reason in await self.store.failed_outbound(h.conversation_id, since=h.created_at):
            if message_id in warned:
                continue
            text = f":warning: Not delivered to the customer: {escape(reason or 'unknown reason')}"
            await self.poster.post(link["channel"], text, thread_ts=link["ts"], priority=URGENT)
            await self.store.update_desk_thread(DESK, h.id, warned=message_id)

    async def _alert_if_waiting(self, h: HandoffRecord, link: dict[str, Any]) -> None:
        # A cheap look first; the decision itself is made by the store on the current state,
        # in the same statement that records it (a claim committed before it wins).
        if h.state != "queued" or link.get("alerted_at"):
            return
        now = utcnow()
        after = timedelta(seconds=self.cfg.unclaimed_alert_after)
        if now - h.created_at < after:
            return
        if not await self.store.claim_desk_alert(DESK, h.id, at=now, older_than=now - after):
            return
        who = f"<!subteam^{self.cfg.agent_usergroup}>" if self.cfg.agent_usergroup else "<!here>"
        minutes = int((now - h.created_at).total_seconds() // 60)
        try:
            await self.poster.post(link["channel"], f"{who} this customer has waited {minutes} min and nobody "
                                   "has claimed them yet.", thread_ts=link["ts"], reply_broadcast=True,
                                   priority=URGENT)
        except (SlackApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            # Recorded as fired before the post, so it is never posted twice; this one is lost.
            log.warning("unclaimed-handoff ping for %s not posted (%s)", h.id, type(exc).__name__)
