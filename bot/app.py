"""The one place where everything is built from config.

``build_app(config)`` opens storage, loads and validates the flows (so a bad
flow stops start-up with file:line errors), and wires the runtime, delivery,
handoff queue, connectors and desks onto one aiohttp application. Tests call
the same factory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any, AsyncIterator

from aiohttp import web

from bot.aio import stop_tasks
from bot.config import Config
from bot.delivery import Delivery
from bot.errors import StorageUnavailable, StoreConflict
from bot.cluster import Cluster, ClusterLocks
from bot.events import EventBus
from bot.flow_versions import FlowVersions, read_flows
from bot.integrations import Integrations
from bot.locks import KeyedLock
from bot.logs import add_secrets
from bot.linking import Linker, linking_actions
from bot.media import MediaStore
from bot.metrics import Live, MetricsWeb
from bot import privacy
from bot.public import ComplaintDetector, PublicTexts
from bot.runtime import Runtime
from bot.storage import Store, open_store
from connectors.base import Connector
from connectors.webchat import WebchatConnector
from connectors.widget_texts import WidgetTexts
from flows import FlowEngine, IntentMatcher, LexicalMatcher
from flows.turn import ActionContext
from handoff.tickets import Tickets, ticket_actions
from handoff.desk_web import AgentDeskWeb
from handoff.followups import FollowUps
from handoff.resolution import Resolutions
from handoff.review import Reviews
from handoff.sla import SlaWatch
from handoff.queue import HandoffQueue

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the app is made of, for handlers, tests and the CLI."""

    config: Config
    store: Store
    engine: FlowEngine
    events: EventBus
    locks: KeyedLock
    cluster: Cluster
    runtime: Runtime
    delivery: Delivery
    queue: HandoffQueue
    connectors: dict[str, Connector]
    desk: AgentDeskWeb | None
    webchat: WebchatConnector | None
    slack: Any = None            # handoff.desk_slack.SlackDesk when slack.enabled
    followups: FollowUps | None = None
    tickets: Tickets | None = None   # its clock is the one tickets and follow-ups read
    live: Live | None = None         # in-process metrics (bot.metrics)
    sla: SlaWatch | None = None
    reviews: Reviews | None = None   # handoff.review: outcome, review and authority
    flows: FlowVersions | None = None  # the flow versions: reload, rollback (bot.flow_versions)
    integrations: Integrations | None = None   # call: steps (README "Calling your systems")


SERVICES = web.AppKey("services", Services)


def make_actions(tickets: Tickets, linker: Linker, store: Store) -> dict:
    """Actions flows may call by name: ``create_reference`` (opens a complaint ticket and gives
    its reference), ``ticket_status`` (what a customer's complaints are waiting for),
    ``record_csat`` (the satisfaction survey's score), ``reopen_ticket``, and ``link_code`` /
    ``link_with_code`` (one customer across channels). Each runs once per turn step: a replayed
    turn gets the result of the first run (see :func:`once`)."""
    return {name: once(store, fn) for name, fn in (ticket_actions(tickets) | linking_actions(linker)).items()}


def once(store: Store, action: Any) -> Any:
    """``action``, remembered by its :attr:`ActionContext.key`.

    A turn that is replayed (the process died, or storage failed before the turn was committed)
    runs its steps again; an action that already ran for that step returns what it returned
    then (and sets the same slots) instead of writing again: no second ticket, reference, code
    or reopening. Writes that must not repeat even if the process dies between the write and
    this record (the ticket) are keyed to the same key in their own transaction.
    """
    async def run(ctx: ActionContext) -> Any:
        if not ctx.key:
            return await action(ctx)
        done = await store.get_effect(ctx.key)
        if done is not None:
            ctx.updates.update(done["updates"])
            return done["result"]
        result = await action(ctx)
        await store.save_effect(ctx.key, {"result": result, "updates": ctx.updates})
        return result

    run.__name__ = run.__qualname__ = getattr(action, "__name__", "action")
    run.__doc__ = action.__doc__
    return run


def make_matcher(config: Config) -> IntentMatcher:
    """The intent matcher config asks for (the learned one loads the sentence model)."""
    if config.nlu.matcher == "lexical":
        return LexicalMatcher()
    from flows.nlu.encoder import shared_encoder   # numpy/onnxruntime/scikit-learn only when used
    from flows.nlu.service import LearnedNLU

    return LearnedNLU(encoder=shared_encoder(config.nlu.threads, config.nlu.model),
                      cache_dir=config.resolve(config.nlu.cache_dir), max_batch=config.nlu.max_batch)


async def build_services(config: Config) -> Services:
    """Open storage, load flows and wire the pieces (no network listeners yet)."""
    flows_path = config.resolve(config.flows.path)
    endpoints = list(config.integrations.endpoints.keys())
    flowset, flow_texts = read_flows(flows_path, teams=config.handoff.teams.keys(), endpoints=endpoints)
    store = await open_store(config.storage_url(), synchronous=config.storage.synchronous)
    integrations = Integrations(config.integrations, effects=store,
                                self_url=f"http://127.0.0.1:{config.server.port}" if config.server.port else None)
    try:
        fresh = secrets.token_urlsafe(32)
        add_secrets(fresh)        # never logged, from the moment it exists
        app_secret = await store.set_meta_if_absent("app_secret", fresh)
        add_secrets(app_secret)
        cluster = Cluster(store)
        if cluster.enabled:
            from bot.events_pg import PgEventBus   # live events reach every instance (LISTEN/NOTIFY)
            events: EventBus = PgEventBus()
            locks: KeyedLock = ClusterLocks(cluster)
        else:
            events, locks = EventBus(), KeyedLock()
        tickets = Tickets(store, config.complaints, events=events)
        actions = make_actions(tickets, Linker(store), store)

        def build(fs: Any) -> FlowEngine:      # in a worker thread: trains the intent model
            return FlowEngine(fs, matcher=make_matcher(config), actions=actions, calls=integrations)

        versions = FlowVersions(store=store, path=flows_path, build=build, teams=config.handoff.teams.keys(),
                                endpoints=endpoints, events=events, shared=cluster.enabled)
        await versions.start(flowset, flow_texts, await asyncio.to_thread(build, flowset))
        engine: Any = versions.engine      # the current version's engine, swapped on reload
        connectors: dict[str, Connector] = {}
        delivery = Delivery(store, connectors, config.delivery, events=events, cluster=cluster)
        live = Live()
        runtime = Runtime(store=store, engine=engine, config=config, locks=locks, events=events,
                          wake_delivery=delivery.wake, metrics=live, cluster=cluster)
        resolutions = Resolutions(store=store, engine=engine, tickets=tickets, locks=locks,
                                  wake_delivery=delivery.wake)
        queue = HandoffQueue(store=store, locks=locks, events=events, config=config,
                             wake_delivery=delivery.wake, reset_flow=engine.reset_after_handoff,
                             on_resolved=resolutions.on_handoff_resolved, texts=engine.system_text,
                             flows=lambda: engine.flows)      # the flows now (notes for agents, README "Languages")
        media = MediaStore(store)
        # files kept in a folder by versions before schema 11: into the database, once
        await media.import_files(config.resolve(config.storage.media_dir))
        desk = None
        if config.agent_desk.enabled:
            desk = AgentDeskWeb(queue=queue, store=store, config=config, events=events, secret=app_secret,
                                resolutions=resolutions, tickets=tickets, connectors=connectors, media=media,
                                flows=flowset)
            versions.on_swap.append(lambda e, d=desk: setattr(d, "flows", e.flows))
            await desk.check_accounts()     # warns while the shared token is how agents log in
        webchat = None
        if config.webchat.enabled:
            secret = config.webchat.secret.get_secret_value() if config.webchat.secret else app_secret
            webchat = WebchatConnector(config=config.webchat, secret=secret, accept=runtime.accept, store=store,
                                       events=events, media=media,
                                       is_agent=desk.is_agent if desk else _nobody,
                                       # the customer's language, then the flows' fallback (README "Languages")
                                       team_name=lambda team, lang=None: config.handoff.team_name(
                                           team, lang, engine.settings.languages), cluster=cluster,
                                       widget_texts=WidgetTexts(engine))
            connectors[webchat.name] = webchat
        if config.telegram.enabled:
            from connectors.telegram import TelegramConnector   # imported only when used
            telegram = TelegramConnector(config=config.telegram, accept=runtime.accept, store=store,
                                         media=media, cluster=cluster, is_complaint=ComplaintDetector(engine),
                                         texts=PublicTexts(engine, config.telegram.public.message))
            connectors[telegram.name] = telegram
        if config.whatsapp.enabled:
            from connectors.whatsapp import WhatsAppConnector
            whatsapp = WhatsAppConnector(config=config.whatsapp, accept=runtime.accept, store=store, media=media,
                                         on_failed=delivery.announce_failure, texts=engine.system_text)
            connectors[whatsapp.name] = whatsapp
        if config.email.enabled:
            from connectors.email import EmailConnector   # imported only when used
            mail = EmailConnector(config=config.email, accept=runtime.accept, store=store, media=media,
                                  texts=engine.system_text)
            connectors[mail.name] = mail
        slack = None
        if config.slack.enabled:
            from handoff.desk_slack import SlackDesk   # slack-bolt is imported only when used
            slack = SlackDesk(config=config, queue=queue, store=store, events=events, cluster=cluster,
                              flows=flowset)
            versions.on_swap.append(lambda e, s=slack: s.use_flows(e.flows))
    except BaseException:
        await store.close()
        raise
    followups = FollowUps(store=store, engine=engine, locks=locks, clock=lambda: tickets.clock(),
                          wake_delivery=delivery.wake)
    sla = SlaWatch(store=store, events=events, cfg=config.complaints, clock=lambda: tickets.clock(),
                   notify=[slack.sla_alert] if slack else [])
    # resolve with an outcome, review by a supervisor, compensation within authority (both desks)
    reviews = Reviews(store=store, queue=queue, resolutions=resolutions, config=config, events=events,
                      clock=lambda: tickets.clock())
    if desk is not None:
        desk.reviews = reviews
    if slack is not None:
        slack.attach_reviews(reviews)
    return Services(config, store, engine, events, locks, cluster, runtime, delivery, queue, connectors, desk, webchat,
                    slack, followups, tickets, live, sla, reviews, versions, integrations)


async def _nobody(request: web.Request) -> bool:
    return False


async def build_app(config: Config) -> web.Application:
    """The aiohttp application for ``omnibot run`` and the tests."""
    services = await build_services(config)
    privacy.configure(config.privacy)    # what privacy.slack_text / desk_text mask (the desks' one-line calls)
    app = web.Application(client_max_size=config.webchat.max_upload_bytes + 64 * 1024,
                          middlewares=[_storage_unavailable, _own_address])
    app[SERVICES] = services
    if services.webchat:
        services.webchat.add_routes(app)
    if services.desk:
        services.desk.add_routes(app)
    if services.slack:
        services.slack.add_routes(app)
    for connector in services.connectors.values():
        if connector is not services.webchat and hasattr(connector, "add_routes"):
            connector.add_routes(app)
    if services.live is not None:
        MetricsWeb(config=config, live=services.live, store=services.store,
                   is_agent=services.desk.may_see_metrics if services.desk else None).add_routes(app)
    if services.flows is not None:
        from bot.flows_web import FlowsWeb     # /admin/flows: reload, history, rollback
        FlowsWeb(services.flows, desk=services.desk, config=config).add_routes(app)
    if config.integrations.demo_api.enabled:
        from bot.demo_shop import DemoShop
        DemoShop(config.integrations.demo_api).add_routes(app)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/readyz", _ready)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_close_sockets)
    return app


def listening(app: web.Application, url: str) -> None:
    """The server is bound at ``url``: endpoints whose base_url is a path (the demo API) call it."""
    integrations = app[SERVICES].integrations
    if integrations is not None:
        integrations.listening(url)


@web.middleware
async def _own_address(request: web.Request, handler: Any) -> web.StreamResponse:
    """Learn this server's own address from the first request (a server on port 0, as in tests)."""
    integrations = request.app[SERVICES].integrations
    if integrations is not None and not integrations.self_url:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        if isinstance(sock, tuple) and len(sock) >= 2:
            host = f"[{sock[0]}]" if ":" in str(sock[0]) else str(sock[0])
            integrations.listening(f"http://{host}:{sock[1]}")
    return await handler(request)


@web.middleware
async def _storage_unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    """Any HTTP call that needed a write storage could not take gets 503 (try again), and one whose
    write collided with another writer's gets 409, never 500."""
    try:
        return await handler(request)
    except StorageUnavailable:
        return web.json_response({"error": "storage is unavailable right now; try again shortly"},
                                 status=503, headers={"Retry-After": "5"})
    except StoreConflict:
        # another writer stored something at the same moment (e.g. a customer wrote while an agent
        # reopened their conversation): nothing was written; looking again shows why
        return web.json_response({"error": "this changed at the same moment elsewhere; reload and try again"},
                                 status=409)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    s = app[SERVICES]
    if s.cluster.enabled:
        await s.events.start(s.store.url)  # type: ignore[attr-defined]
        await s.cluster.start()
    for c in s.connectors.values():
        await c.start()
    await s.delivery.start()
    if s.slack:
        await s.slack.start()
    await s.runtime.start()
    follow = asyncio.create_task(_every(s.config.complaints.check_every,
                                        *[f for f in (s.followups and s.followups.run_due,
                                                      s.sla and s.sla.check) if f]), name="complaint clocks")
    from bot.retention import Retention    # privacy.retention: once per cluster (a lease)
    retention = asyncio.create_task(Retention(s.store, s.config.privacy.retention, holder=s.cluster.id,
                                              monotonic=s.cluster.clock).loop(), name="privacy retention")
    following = asyncio.create_task(s.flows.run(), name="flow versions") if s.flows else None
    log.info("omnibot started: %d flows, %d intents, channels: %s", len(s.engine.flows.flows),
             len(s.engine.flows.intents), ", ".join(s.connectors) or "none")
    yield
    await stop_tasks([follow, retention, following], "background jobs")   # bounded, logged (bot/aio.py)
    await s.runtime.stop()
    if s.slack:
        await s.slack.stop()
    await s.delivery.stop()
    for c in s.connectors.values():
        await c.stop()
    if s.integrations is not None:
        await s.integrations.close()
    if s.cluster.enabled:
        await s.cluster.drain()
        await s.cluster.stop()
        await s.events.close()  # type: ignore[attr-defined]
    await s.store.close()
    log.info("omnibot stopped")


async def _every(seconds: float, *jobs: Any) -> None:
    """Run each job every ``seconds`` (follow-ups due, SLA clocks) until cancelled."""
    while True:
        for job in jobs:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad round must not stop the next one
                log.exception("periodic %s failed", getattr(job, "__qualname__", job))
        await asyncio.sleep(seconds)


async def _close_sockets(app: web.Application) -> None:
    s = app[SERVICES]
    if s.webchat:
        await s.webchat.stop()
    if s.desk:
        await s.desk.stop()


async def _health(request: web.Request) -> web.Response:
    """Alive: the process answers HTTP (a load balancer restarts it when this stops answering)."""
    s = request.app[SERVICES]
    return web.json_response({"ok": True, "sent": s.delivery.sent, "failed": s.delivery.failed,
                              "processed": s.runtime.processed})


def readiness(s: Services) -> dict[str, Any]:
    """Whether this instance should take traffic: storage writes, and each enabled connector's state."""
    storage = s.store.health.status()
    parts: dict[str, str] = {}
    for name, part in [*s.connectors.items(), *([("slack", s.slack)] if s.slack else [])]:
        state = getattr(part, "readiness", None)
        parts[name] = state() if callable(state) else "ok"
    # An unreachable platform ("degraded") leaves the instance serving the others; only storage
    # and a part that cannot work at all ("failing": a refused token) take it out of rotation.
    ready = storage["state"] == "ok" and not any(v.startswith("failing") for v in parts.values())
    return {"ready": ready, "storage": storage["state"], "storage_detail": storage, "connectors": parts}


async def _ready(request: web.Request) -> web.Response:
    """Ready to take traffic: 200 when storage writes and every enabled connector is up, else 503."""
    body = readiness(request.app[SERVICES])
    return web.json_response(body, status=200 if body["ready"] else 503)
