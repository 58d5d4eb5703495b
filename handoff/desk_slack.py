"""Slack as the agent desk: a card per handoff, claim and relay in its thread.

One message (the "card") per handoff goes to its team's channel, with the
whole context and buttons (Claim, Resolve, Back to bot, Transfer). After a
claim, what the claiming agent writes in the card's thread goes to the
customer; what the customer writes appears in the thread. Thread messages
starting with ``note:`` or ``note_prefix`` are internal notes, kept and shown on the web desk;
notes, transfer, take-over and canned replies are :mod:`handoff.slack_commands`. Edits and deletions in
Slack are not relayed: the agent is told so in the thread.

Everything Slack shows is derived from storage and kept in step by
:class:`handoff.slack_sync.DeskSync` (on every event, and a sweep on a timer), so a
Slack outage or a restart delays a card, never loses it; writes are paced per channel
by :class:`handoff.slack_poster.SlackPoster`, and the card is drawn by
:mod:`handoff.slack_card`. This module wires them up and handles what Slack sends:
button clicks, thread messages and slash commands. Actions go through the same
:class:`HandoffQueue` as the local /agent page, so both desks work at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (AsyncConnectionErrorRetryHandler,
                                                         AsyncRateLimitErrorRetryHandler,
                                                         AsyncServerErrorRetryHandler)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.aio import wait_for
from bot.cluster import Cluster
from bot.config import Config
from bot.errors import StorageUnavailable
from bot.events import Event, EventBus
from bot.storage import Store
from bot.storage.base import AgentAccount
from connectors.base import RETRY_AFTER_UNAVAILABLE, read_body

from .queue import DeskError, HandoffQueue
from .roles import can
from .slack_card import CardRenderer, escape, unescape
from .slack_commands import SlackCommands
from .slack_http import SlackRequestError, check_signature, parse_body
from .slack_poster import URGENT, SlackPoster
from .slack_sync import DESK, DeskSync

log = logging.getLogger(__name__)

SWEEP_LEASE = "slack-sync"
SYNC_EVENTS = ("queued", "claimed", "message", "resolved", "returned", "transferred", "delivery_failed", "note")
TEXT_COMMANDS = {"!claim": "claim", "!resolve": "resolve", "!back": "back", "!transfer": "transfer"}
UNAVAILABLE_TEXT = ("Not sent: we could not save it just now (storage unavailable), so nothing reached "
                    "the customer. Please send it again in a minute.")


class SlackDesk:
    """The Slack agent desk.

    Args:
        config: the whole configuration (``slack:`` and teams).
        queue: the desk interface shared with /agent.
        store: storage (cards, relayed messages, seen event ids).
        events: what changed.
        cluster: with several instances on one database: each desk acts only on what happened
            on its own instance (every action is published once, where it happened), one instance
            at a time (the holder of the lease ``slack-sync``) runs the periodic sweep, and the
            card and thread jobs of a handoff run on one instance at a time.
        flows: the loaded flows (a ``flows.FlowSet``): the card shows the handoff's flow's labelled
            fields, and personal slots are not copied to Slack.
    """

    def __init__(self, *, config: Config, queue: HandoffQueue, store: Store, events: EventBus,
                 cluster: Cluster | None = None, flows: Any = None) -> None:
        self.config = config
        self.cluster = cluster if cluster is not None and cluster.enabled else None
        self.sweeper = False          # with clustering on: whether this instance holds "slack-sync"
        self.cfg = config.slack
        self.queue = queue
        self.store = store
        self.events = events
        token = self.cfg.bot_token.get_secret_value()
        self.client = AsyncWebClient(
            token=token, base_url=self.cfg.api_url, timeout=15,
            # The SDK alone retries only connection errors: honour 429 Retry-After and 5xx too.
            retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=3),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
                            AsyncServerErrorRetryHandler(max_retry_count=3)])
        # Messages and card updates: no 429 handler, the poster paces them and handles 429 per lane.
        writer = AsyncWebClient(token=token, base_url=self.cfg.api_url, timeout=15,
                                retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=3),
                                                AsyncServerErrorRetryHandler(max_retry_count=3)])
        self.poster = SlackPoster(writer, posts_per_second=self.cfg.posts_per_second,
                                  updates_per_second=self.cfg.updates_per_second)
        self.sync = DeskSync(config=config, store=store, poster=self.poster, client=self.client,
                             renderer=CardRenderer(config, flows), cluster=self.cluster, flows=flows)
        self.app = AsyncApp(client=self.client, signing_secret=self.cfg.signing_secret.get_secret_value(),
                            process_before_response=False, raise_error_for_unhandled_request=False)
        self.verifier = SignatureVerifier(self.cfg.signing_secret.get_secret_value())
        self._names: dict[str, str] = {}
        self._group: tuple[float, set[str]] = (0.0, set())
        self._tasks: list[asyncio.Task[None]] = []
        self.state = "starting"     # /readyz: starting | ok | degraded: ... | failing: ...
        self._socket_handler: Any = None
        self.commands = SlackCommands(self)   # notes, transfer, take-over, canned replies (loads canned/)
        self.reviews: Any = None      # handoff.slack_review.SlackReviews: outcome, review and approval buttons
        self._register()

    def attach_reviews(self, reviews: Any) -> None:
        """Review and authority on Slack (handoff.slack_review), over the app's handoff.review.Reviews."""
        from .slack_review import SlackReviews
        self.reviews = SlackReviews(self, reviews)

    # -- wiring ----------------------------------------------------------------

    def use_flows(self, flows: Any) -> None:
        """A reloaded flow version (bot/flow_versions.py): cards show its fields, personal slots and
        its default language's team names from now on."""
        self.sync.use_flows(flows)

    def add_routes(self, app: web.Application) -> None:
        if self.cfg.mode == "http":
            app.router.add_post("/slack/events", self.http_endpoint)

    def readiness(self) -> str:
        """For ``/readyz``: ``ok``, ``starting``, ``degraded: why`` (Slack unreachable: cards wait,
        nothing is lost) or ``failing: why`` (Slack refused the bot token)."""
        return self.state

    async def start(self) -> None:
        """Start syncing; never blocks on Slack (an unreachable Slack is logged and retried)."""
        self._tasks.append(asyncio.create_task(self._check_connection(), name="slack-auth"))
        self._tasks.append(asyncio.create_task(self._worker(), name="slack-desk"))
        if self.cfg.mode == "socket":
            self._tasks.append(asyncio.create_task(self._socket_loop(), name="slack-socket"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.cluster is not None and self.sweeper:
            self.sweeper = False
            try:
                await self.store.release_lease(SWEEP_LEASE, self.cluster.id)
            except Exception as exc:  # noqa: BLE001 - stopping: the lease lapses by itself
                log.info("slack-sync lease not released (%s)", exc)
        await self.sync.stop()
        await self.poster.stop()
        if self._socket_handler is not None:
            await self._socket_handler.close_async()
            self._socket_handler = None

    async def _check_connection(self) -> None:
        # A client without retry handlers, so an unreachable Slack is reported at once.
        probe = AsyncWebClient(token=self.cfg.bot_token.get_secret_value(), base_url=self.cfg.api_url, timeout=10)
        delay = 2.0
        while True:
            try:
                resp = await probe.auth_test()
                log.info("Slack desk connected as @%s in %s (%s mode)", resp.get("user"), resp.get("team"),
                         self.cfg.mode)
                self.state = "ok"
                return
            except asyncio.CancelledError:
                raise
            except SlackApiError as exc:
                log.error("Slack refused the bot token (%s); check slack.bot_token. Retrying in %.0f s",
                          exc.response.get("error"), delay)
                self.state = "failing: Slack refused the bot token"
            except Exception as exc:
                log.warning("cannot reach Slack at %s (%s); the bot runs on, retrying in %.0f s",
                            self.cfg.api_url, type(exc).__name__, delay)
                self.state = "degraded: cannot reach Slack"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300)

    # -- HTTP mode ---------------------------------------------------------------

    async def http_endpoint(self, request: web.Request) -> web.StreamResponse:
        """Events, interactivity and slash commands. The signature and the body's shape are
        checked here (:mod:`handoff.slack_http`), on the raw body, before Bolt parses anything:
        Bolt would answer 500 to a body it cannot parse."""
        body = await read_body(request)
        if body is None:
            return web.json_response({"error": "the body ended early"}, status=400)
        try:
            check_signature(self.verifier, body, request.headers)
            text, _ = parse_body(body, request.content_type)
        except SlackRequestError as exc:
            if exc.status == 400:
                log.warning("slack request refused (400): %s", exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        bolt_req = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(request.headers))
        try:
            bolt_resp = await self.app.async_dispatch(bolt_req)
        except Exception:
            log.exception("slack request failed")
            return web.json_response({"error": "could not handle the request"}, status=400)
        return await to_aiohttp_response(bolt_resp)

    # -- Socket Mode -------------------------------------------------------------

    async def _socket_loop(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        delay = 1.0
        while True:
            try:
                self._socket_handler = AsyncSocketModeHandler(self.app, self.cfg.app_token.get_secret_value(),
                                                              web_client=self.client)
                await self._socket_handler.connect_async()
                log.info("connected to Slack (socket mode)")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot connect to Slack in socket mode (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    # -- Bolt listeners ------------------------------------------------------------

    def _register(self) -> None:
        self.app.middleware(self._dedupe)
        self.app.action("omnibot_claim")(self._on_action)
        self.app.action("omnibot_resolve")(self._on_action)
        self.app.action("omnibot_back")(self._on_action)
        self.app.action("omnibot_transfer")(self._on_action)
        self.app.event("message")(self._on_message)
        self.app.command("/omnibot")(self._on_command)

    async def _dedupe(self, body: dict[str, Any], next: Any) -> Any:  # noqa: A002 (bolt's name)
        # Slack retries (X-Slack-Retry-Num) repeat the event_id: answer them, don't process again.
        event_id = body.get("event_id")
        try:
            first = not event_id or await self.store.first_seen("slack-event", str(event_id))
        except StorageUnavailable as exc:
            # Not recorded, so not acknowledged: Slack delivers the event again later.
            log.warning("slack event %s not recorded (%s); answered 503", event_id, exc)
            return BoltResponse(status=503, body={"error": "storage unavailable; try again later"},
                                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})
        if not first:
            log.info("slack retry of %s ignored", event_id)
            return BoltResponse(status=200, body="")
        return await next()

    async def _on_action(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = body.get("user", {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        kind = action["action_id"].removeprefix("omnibot_")
        if kind == "transfer":
            handoff_id, _, team = (action.get("selected_option") or {}).get("value", "").partition("|")
        else:
            handoff_id, team = action.get("value", ""), ""
        await self._act(kind, handoff_id, user, channel, team=team)

    async def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        """``/omnibot claim|resolve|back|transfer TEAM <reference or handoff id>``."""
        await ack()
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        if await self.commands.command(command.get("text") or "", user, channel):
            return        # note, transfer, takeover, reply, canned: handoff.slack_commands
        words = (command.get("text") or "").split()
        usage = "Usage: /omnibot claim|resolve|back <C-1001 or handoff id>, or /omnibot transfer TEAM <ref>"
        if not words or words[0] not in ("claim", "resolve", "back", "transfer", "approve", "return"):
            await self._tell(channel, user, usage)
            return
        if self.reviews is not None and await self.reviews.on_command(words, user, channel):
            return                 # resolve with an outcome, approve, return (handoff.slack_review)
        kind, args = words[0], words[1:]
        team = args.pop(0) if kind == "transfer" and args else ""
        handoff_id = await self._find(args[0]) if args else None
        if handoff_id is None:
            await self._tell(channel, user, f"No open handoff matches that. {usage}")
            return
        await self._act(kind, handoff_id, user, channel, team=team)

    async def _on_message(self, event: dict[str, Any]) -> None:
        thread_ts, channel = event.get("thread_ts"), event.get("channel", "")
        if not thread_ts or event.get("bot_id"):
            return
        link = await self.store.desk_thread_by_ts(DESK, channel, thread_ts)
        if link is None:
            return
        subtype = event.get("subtype")
        user = event.get("user") or (event.get("message") or {}).get("user", "")
        if subtype in ("message_changed", "message_deleted"):
            # Relayed text cannot be taken back from the customer's channel: say so, don't hide it.
            await self._post(channel, "Edits and deletions are not relayed: the customer keeps what they "
                                      "received. Send a new message to correct it.", thread_ts=thread_ts)
            return
        if subtype not in (None, "file_share", "thread_broadcast"):
            return
        text = unescape(event.get("text") or "").strip()
        if text and await self.commands.thread(link, text, user, channel, thread_ts):
            return   # an internal note, or !transfer, !takeover, !reply: handoff.slack_commands
        if not text:
            return
        first = text.split()[0].lower()
        if self.reviews is not None and await self.reviews.on_thread_command(text, link["handoff_id"], user, channel):
            return                 # !resolve <outcome>, !approve, !return <note> (handoff.slack_review)
        if first in TEXT_COMMANDS:
            rest = text.split()[1:]
            await self._act(TEXT_COMMANDS[first], link["handoff_id"], user, channel,
                            team=rest[0] if rest else "")
            return
        if not await self._is_agent(user):
            await self._tell(channel, user, "Only agents can answer customers here.")
            return
        agent = await self._agent_name(user)
        if not await self._allowed(user, "reply", link["handoff_id"], channel):
            return
        try:
            await self.queue.reply(link["handoff_id"], agent, text, via="slack")
        except DeskError as exc:
            await self._tell(channel, user, f"Not sent to the customer: {exc}. Press Claim first.")
        except StorageUnavailable as exc:
            # Slack has its 200 already: the agent is the one who can send it again.
            log.warning("agent reply in slack thread %s not stored (%s)", thread_ts, exc)
            await self._tell(channel, user, UNAVAILABLE_TEXT)

    async def _act(self, kind: str, handoff_id: str, user: str, channel: str, *, team: str = "") -> None:
        if not await self._is_agent(user):
            await self._tell(channel, user, "Sorry, only members of the support team can do that.")
            log.info("slack user %s is not an agent; %s refused", user, kind)
            return
        agent = await self._agent_name(user)
        rule = {"claim": "claim", "resolve": "resolve", "back": "hand_back", "transfer": "transfer"}.get(kind)
        if rule is not None and not await self._allowed(user, rule, handoff_id, channel):
            return
        try:
            if kind == "claim":
                await self.queue.claim(handoff_id, agent)
            elif kind == "resolve" and self.reviews is not None:
                await self.reviews.resolve(handoff_id, user, channel, None)   # a complaint asks for the outcome
            elif kind == "resolve":
                await self.queue.resolve(handoff_id, agent)
            elif kind == "back":
                await self.queue.hand_back(handoff_id, agent)
            elif kind == "transfer":
                await self.queue.transfer(handoff_id, agent, team)
        except DeskError as exc:
            await self._tell(channel, user, str(exc))
        except StorageUnavailable as exc:
            log.warning("slack %s of handoff %s not stored (%s)", kind, handoff_id, exc)
            await self._tell(channel, user, f"{kind.capitalize()} not done: we could not save it just now "
                                            "(storage unavailable). Please try again in a minute.")

    # -- agents --------------------------------------------------------------------

    async def _allowed(self, user: str, action: str, handoff_id: str, channel: str) -> bool:
        """For a member mapped to an account: its role allows ``action`` (handoff.roles); else tell them."""
        account = await self._account(user)
        if account is None:
            return True            # an unmapped agent (slack.agents / agent_usergroup): no account, no role
        h = await self.store.get_handoff(handoff_id)
        if h is None or can(account, action, h):
            return True
        await self._tell(channel, user, f"Not done: as {account.role} of {', '.join(account.teams) or 'no team'}, "
                                        f"you may not {action.replace('_', ' ')} this conversation "
                                        f"(team {h.team}{f', held by {h.agent}' if h.agent else ''}).")
        return False

    async def _account(self, user: str) -> AgentAccount | None:
        """The agent account a Slack member is mapped to (slack.members), if it exists and is enabled."""
        email = self.cfg.members.get(user)
        if not email:
            return None
        account = await self.store.agent_by_email(email)
        if account is None or account.disabled:
            return None
        return account

    async def _is_agent(self, user: str) -> bool:
        if not user:
            return False
        if user in self.cfg.members:       # a mapped member acts only through their (enabled) account
            return await self._account(user) is not None
        if user in self.cfg.agents:
            return True
        if self.cfg.agent_usergroup:
            fetched, members = self._group
            if time.monotonic() - fetched > 300:
                try:
                    resp = await self.client.usergroups_users_list(usergroup=self.cfg.agent_usergroup)
                    members = set(resp.get("users") or [])
                    self._group = (time.monotonic(), members)
                except SlackApiError as exc:
                    log.warning("cannot read user group %s: %s", self.cfg.agent_usergroup, exc)
            return user in members
        return False

    async def _agent_name(self, user: str) -> str:
        """A mapped member's account name; else 'Real Name (slack:U123)': readable on every desk,
        unique per Slack user."""
        account = await self._account(user)
        if account is not None:
            return account.name
        if user not in self._names:
            name = user
            try:
                resp = await self.client.users_info(user=user)
                u = resp.get("user") or {}
                prof = u.get("profile") or {}
                name = prof.get("real_name") or u.get("real_name") or prof.get("display_name") or u.get("name") or user
            except SlackApiError as exc:
                log.warning("users.info %s failed: %s", user, exc)
            self._names[user] = f"{name} (slack:{user})"
        return self._names[user]

    async def _find(self, ref: str) -> str | None:
        for h in await self.queue.list():
            if ref in (h.id, h.context.get("reference"), (h.context.get("slots") or {}).get("reference")):
                return h.id
        return None

    async def _tell(self, channel: str, user: str, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as exc:
            log.warning("cannot tell %s in %s: %s", user, channel, exc)

    async def _post(self, channel: str, text: str, **kwargs: Any) -> dict[str, Any] | None:
        """A message now (paced with the thread messages, ahead of cards); None if Slack refused it."""
        try:
            return await self.poster.post(channel, text, priority=URGENT, **kwargs)
        except SlackApiError as exc:
            log.warning("chat.postMessage to %s failed: %s", channel, exc.response.get("error"))
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.warning("chat.postMessage to %s failed: %s", channel, type(exc).__name__)
        return None

    # -- keeping Slack in step with storage ---------------------------------------

    async def _worker(self) -> None:
        """Events start the handoff's jobs at once; a sweep every ``sync_interval`` catches the rest."""
        q = self.events.subscribe()
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        try:
            while True:
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.cfg.sync_interval
                    await self._sweep()
                try:
                    ev: Event | None = await wait_for(q.get(), timeout=max(0.0, next_sweep - loop.time()))
                except TimeoutError:
                    ev = None
                if ev is None or ev.remote:
                    continue           # the instance where it happened tells Slack
                if ev.kind == "resync":
                    await self._sweep(periodic=False)    # events may have been missed: re-read
                elif ev.kind in SYNC_EVENTS:
                    await self._on_event(ev)
        finally:
            self.events.unsubscribe(q)

    async def _sweep(self, *, periodic: bool = True) -> None:
        if periodic and self.cluster is not None and not await self._hold_sweep_lease():
            return
        try:
            await self.sync.sweep()
        except StorageUnavailable as exc:
            log.info("Slack desk sweep waits for storage (%s)", exc)
        except Exception:
            log.exception("Slack desk sweep failed; the next one retries")

    async def _hold_sweep_lease(self) -> bool:
        """Take or renew ``slack-sync``: the periodic sweep runs on one instance of the cluster."""
        assert self.cluster is not None
        try:
            held = await self.store.take_lease(SWEEP_LEASE, self.cluster.id, now=self.cluster.clock(),
                                               ttl=max(10.0, 3 * self.cfg.sync_interval))
        except StorageUnavailable:
            held = False
        if held != self.sweeper:
            self.sweeper = held
            log.info("Slack desk: this instance %s the periodic sweep", "runs" if held else "leaves")
        return held

    async def _on_event(self, ev: Event) -> None:
        handoff_id = ev.handoff_id
        if handoff_id is None and ev.kind == "delivery_failed":
            try:
                h = await self.store.active_handoff(ev.conversation_id)
            except StorageUnavailable:
                return                 # the sweep finds the failure later
            handoff_id = h.id if h else None
        if handoff_id:
            # a failed delivery: the thread is told, and the card shows the customer is unreachable
            self.sync.kick(handoff_id, redraw=ev.kind == "delivery_failed")

    async def sync_all(self) -> None:
        """Bring every open handoff's card and thread up to date (in the background)."""
        await self.sync.sweep()

    async def sla_alert(self, alert: Any, now: Any) -> None:
        """A complaint near or past its time limit: tell its team's channel (in the handoff's
        thread when there is one); a breach also goes to the manager channel."""
        who = f"<!subteam^{self.cfg.agent_usergroup}>" if self.cfg.agent_usergroup else "<!here>"
        text = escape(alert.text(now))
        link = await self.store.desk_thread(DESK, alert.handoff_id) if alert.handoff_id else None
        team_channel = self.cfg.channel_for(alert.team or "")
        if link:
            await self._post(link["channel"], f"{who} {text}", thread_ts=link["ts"], reply_broadcast=True)
        elif team_channel:
            await self._post(team_channel, f"{who} {text}")
        if alert.level == "breached" and self.cfg.manager_channel:
            await self._post(self.cfg.manager_channel, f"Escalation: {text}")
