"""Every store operation, once, as an async method of :class:`Operations`.

A backend subclasses it and implements :meth:`Operations._call` (run one
operation whole: on SQLite's connection thread, or on a pooled PostgreSQL
connection). The methods are plain class attributes typed from the operation
functions, so type checkers see each one with its real signature.
"""

from __future__ import annotations

from typing import Any, Callable, Concatenate, Coroutine, ParamSpec, TypeVar

from . import ops_chat as chat
from . import ops_cluster as cluster
from . import ops_desk as desk
from . import ops_report as report
from . import ops_media as media
from . import ops_whatsapp as whatsapp
from . import ops_public as public
from . import ops_search as search_ops
from . import ops_agents as agents
from . import ops_work as work
from . import ops_customers as customers_ops
from . import ops_figures as figures
from . import ops_privacy as privacy
from . import ops_actions as actions
from . import ops_review as review
from . import ops_language as language
from . import ops_flows as flows_ops
from . import ops_hotpath as hotpath
from . import ops_whatsapp_send as whatsapp_send
from .health import StorageHealth
from .sql import Op

P = ParamSpec("P")
R = TypeVar("R")

# Operations that write: one of them going through means storage works again.
WRITES = frozenset({
    "probe", "set_meta", "set_meta_if_absent", "next_sequence", "record_inbound", "commit_turn", "mark_sent",
    "mark_retry", "mark_failed", "save_desk_thread", "update_desk_thread", "claim_desk_alert", "first_seen",
    "set_conversation_state", "create_handoff", "transition_handoff", "create_ticket", "resolve_ticket",
    "record_csat", "reopen_ticket", "mark_followed_up", "move_ticket", "create_link_code", "redeem_link_code",
    "add_sla_alert", "save_effect", "register_instance", "heartbeat", "forget_instance", "forget_dead_instances",
    "claim_conversation", "release_conversation", "take_lease", "release_lease", "rate_hit",
    "save_media", "whatsapp_saw_inbound", "whatsapp_apply_status", "whatsapp_note_status",
    "hold_public_message", "redeem_public_token",
    "create_agent", "set_agent_disabled", "set_agent_password", "set_agent_token",
    "add_note", "mark_read", "add_compensation", "decide_compensation", "audit",
    "set_customer_profile", "update_agent",
    "privacy_notice", "erase_customer", "expire_message_texts", "expire_attachments", "expire_conversations",
    "expire_audit",
    "propose_review", "decide_review", "mark_communicated", "set_conversation_language",
    "add_flow_version", "mark_sent_next", "whatsapp_mark_sent_next"})


def operation(op: Callable[P, Op[R]]) -> Callable[Concatenate[Operations, P], Coroutine[Any, Any, R]]:
    """The store's async method for the operation ``op``."""
    async def call(self: Operations, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._call(op, args, kwargs)  # type: ignore[no-any-return]

    call.__name__ = call.__qualname__ = op.__name__
    call.__doc__ = op.__doc__
    return call


class Operations:
    """The operations every backend offers (see :mod:`bot.storage.ops_chat` and :mod:`bot.storage.ops_desk`).

    This class is also the store's type (``bot.storage.Store``): what the runtime, the
    delivery, the desks and the CLI use. A backend adds its life cycle (``open``, ``close``,
    ``probe``, ``schema_version``) and ``health``.
    """

    #: Whether several instances may share this store (PostgreSQL), so they must coordinate.
    shared: bool = False
    #: Whether writes go through now (see bot.storage.health).
    health: StorageHealth

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def probe(self) -> bool:
        """One small write; True if storage can write."""
        raise NotImplementedError

    async def schema_version(self) -> int:
        raise NotImplementedError

    async def _call(self, op: Callable[..., Op[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    get_meta = operation(chat.get_meta)
    set_meta = operation(chat.set_meta)
    set_meta_if_absent = operation(chat.set_meta_if_absent)
    next_sequence = operation(chat.next_sequence)
    first_seen = operation(chat.first_seen)
    record_inbound = operation(chat.record_inbound)
    get_conversation = operation(chat.get_conversation)
    get_customer = operation(chat.get_customer)
    latest_conversation = operation(chat.latest_conversation)
    identities = operation(chat.identities)
    load_turn = operation(chat.load_turn)
    open_conversation = operation(chat.open_conversation)
    customer_conversations = operation(chat.customer_conversations)
    latest_customer_conversation = operation(chat.latest_customer_conversation)
    set_conversation_state = operation(chat.set_conversation_state)
    history = operation(chat.history)
    unprocessed_inbound = operation(chat.unprocessed_inbound)
    conversations_with_unprocessed = operation(chat.conversations_with_unprocessed)
    load_flow_state = operation(chat.load_flow_state)
    commit_turn = operation(chat.commit_turn)
    failed_outbound = operation(chat.failed_outbound)
    due_outbox = operation(chat.due_outbox)
    next_outbox_due = operation(chat.next_outbox_due)
    outbox_turn = operation(chat.outbox_turn)
    mark_sent = operation(chat.mark_sent)
    mark_retry = operation(chat.mark_retry)
    mark_failed = operation(chat.mark_failed)

    desk_thread = operation(desk.desk_thread)
    desk_thread_by_ts = operation(desk.desk_thread_by_ts)
    save_desk_thread = operation(desk.save_desk_thread)
    update_desk_thread = operation(desk.update_desk_thread)
    claim_desk_alert = operation(desk.claim_desk_alert)
    create_handoff = operation(desk.create_handoff)
    get_handoff = operation(desk.get_handoff)
    active_handoff = operation(desk.active_handoff)
    latest_handoff = operation(desk.latest_handoff)
    list_handoffs = operation(desk.list_handoffs)
    transition_handoff = operation(desk.transition_handoff)
    queue_position = operation(desk.queue_position)
    create_ticket = operation(desk.create_ticket)
    ticket_by_origin = operation(desk.ticket_by_origin)
    get_ticket = operation(desk.get_ticket)
    customer_tickets = operation(desk.customer_tickets)
    conversation_ticket = operation(desk.conversation_ticket)
    open_tickets = operation(desk.open_tickets)
    resolve_ticket = operation(desk.resolve_ticket)
    reopen_ticket = operation(desk.reopen_ticket)
    record_csat = operation(desk.record_csat)
    add_sla_alert = operation(desk.add_sla_alert)
    move_ticket = operation(desk.move_ticket)
    due_followups = operation(desk.due_followups)
    mark_followed_up = operation(desk.mark_followed_up)
    get_effect = operation(desk.get_effect)
    save_effect = operation(desk.save_effect)
    create_link_code = operation(desk.create_link_code)
    redeem_link_code = operation(desk.redeem_link_code)

    register_instance = operation(cluster.register_instance)
    heartbeat = operation(cluster.heartbeat)
    live_instances = operation(cluster.live_instances)
    forget_instance = operation(cluster.forget_instance)
    forget_dead_instances = operation(cluster.forget_dead_instances)
    claim_conversation = operation(cluster.claim_conversation)
    release_conversation = operation(cluster.release_conversation)
    stranded_conversations = operation(cluster.stranded_conversations)
    conversation_owner = operation(cluster.conversation_owner)
    take_lease = operation(cluster.take_lease)
    release_lease = operation(cluster.release_lease)
    rate_hit = operation(cluster.rate_hit)

    # the report's reads (omnibot report, /metrics): bot.storage.ops_report
    report_conversations = operation(report.report_conversations)
    report_first_messages = operation(report.report_first_messages)
    report_handed_conversations = operation(report.report_handed_conversations)
    report_pickups = operation(report.report_pickups)
    report_tickets = operation(report.report_tickets)

    save_media = operation(media.save_media)
    media_info = operation(media.media_info)
    media_data = operation(media.media_data)

    # the WhatsApp connector's: the 24-hour window, delivery statuses (bot.storage.ops_whatsapp)
    whatsapp_saw_inbound = operation(whatsapp.whatsapp_saw_inbound)
    whatsapp_last_inbound = operation(whatsapp.whatsapp_last_inbound)
    whatsapp_inbound_seen = operation(whatsapp.whatsapp_inbound_seen)
    whatsapp_apply_status = operation(whatsapp.whatsapp_apply_status)
    whatsapp_note_status = operation(whatsapp.whatsapp_note_status)
    whatsapp_status = operation(whatsapp.whatsapp_status)

    # public complaints moved to a private chat: bot.storage.ops_public
    hold_public_message = operation(public.hold_public_message)
    redeem_public_token = operation(public.redeem_public_token)

    # the desk's history and search: bot.storage.ops_search (reads only)
    search = operation(search_ops.search)
    conversation_record = operation(search_ops.conversation_record)

    # agent accounts: bot.storage.ops_agents
    create_agent = operation(agents.create_agent)
    get_agent = operation(agents.get_agent)
    agent_by_email = operation(agents.agent_by_email)
    agent_by_token = operation(agents.agent_by_token)
    list_agents = operation(agents.list_agents)
    count_agents = operation(agents.count_agents)
    set_agent_disabled = operation(agents.set_agent_disabled)
    set_agent_password = operation(agents.set_agent_password)
    set_agent_token = operation(agents.set_agent_token)
    # the desk's working records and the audit log: bot.storage.ops_work
    add_note = operation(work.add_note)
    notes_of = operation(work.notes_of)
    mark_read = operation(work.mark_read)
    unread_counts = operation(work.unread_counts)
    add_compensation = operation(work.add_compensation)
    compensations_of = operation(work.compensations_of)
    pending_compensations = operation(work.pending_compensations)
    decide_compensation = operation(work.decide_compensation)
    audit = operation(work.audit)
    audit_log = operation(work.audit_log)
    # the desk's customer panel and queue previews: bot.storage.ops_customers
    set_customer_profile = operation(customers_ops.set_customer_profile)
    customer_teams = operation(customers_ops.customer_teams)
    last_customer_messages = operation(customers_ops.last_customer_messages)
    # per-agent figures, handoff causes, honest containment (bot.figures); account changes
    report_handoff_rows = operation(figures.report_handoff_rows)
    report_agent_replies = operation(figures.report_agent_replies)
    report_resolved_tickets = operation(figures.report_resolved_tickets)
    report_conversation_messages = operation(figures.report_conversation_messages)
    report_customer_messages = operation(figures.report_customer_messages)
    update_agent = operation(figures.update_agent)
    # privacy: the card notice, export, erasure and retention: bot.storage.ops_privacy
    privacy_notice = operation(privacy.privacy_notice)
    find_customers = operation(privacy.find_customers)
    customer_data = operation(privacy.customer_data)
    customer_desk_threads = operation(privacy.customer_desk_threads)
    erase_customer = operation(privacy.erase_customer)
    expire_message_texts = operation(privacy.expire_message_texts)
    expire_attachments = operation(privacy.expire_attachments)
    expire_conversations = operation(privacy.expire_conversations)
    expire_audit = operation(privacy.expire_audit)
    # the desks' actions between agents: bot.storage.ops_actions (reads only)
    was_seen = operation(actions.was_seen)
    # the review of a complaint's resolution (handoff.review): bot.storage.ops_review
    propose_review = operation(review.propose_review)
    decide_review = operation(review.decide_review)
    mark_communicated = operation(review.mark_communicated)
    tickets_in_review = operation(review.tickets_in_review)
    report_reviews = operation(review.report_reviews)
    report_compensations = operation(review.report_compensations)
    # the conversation's language (README "Languages"): bot.storage.ops_language
    set_conversation_language = operation(language.set_conversation_language)
    # the flow versions served (README "Changing flows on a running bot"): bot.storage.ops_flows
    add_flow_version = operation(flows_ops.add_flow_version)
    flow_version = operation(flows_ops.flow_version)
    latest_flow_version = operation(flows_ops.latest_flow_version)
    flow_versions = operation(flows_ops.flow_versions)
    # the path every message takes, two operations in one: bot.storage.ops_hotpath
    turn_start = operation(hotpath.turn_start)
    mark_sent_next = operation(hotpath.mark_sent_next)
    # a WhatsApp send recorded with its sent mark, in one transaction: bot.storage.ops_whatsapp_send
    whatsapp_mark_sent_next = operation(whatsapp_send.whatsapp_mark_sent_next)


#: The store's type, whichever backend: every operation, typed from its function.
Store = Operations
