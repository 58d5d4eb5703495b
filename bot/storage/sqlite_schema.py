"""The SQLite schema: versioned migrations, applied in order by :meth:`SqliteStore.migrate`."""

from __future__ import annotations

# Each entry moves the schema from version i to i+1. Never edit a released
# entry: append a new one.
MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE TABLE identities (
        channel TEXT NOT NULL,
        external_id TEXT NOT NULL,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        created_at TEXT NOT NULL,
        PRIMARY KEY (channel, external_id)
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        channel TEXT NOT NULL,
        external_id TEXT NOT NULL,
        state TEXT NOT NULL,
        flow_state TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX conversations_open ON conversations(channel, external_id)
        WHERE state != 'closed';
    CREATE INDEX conversations_customer ON conversations(customer_id);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        role TEXT NOT NULL,
        sender_name TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL,
        attachments TEXT NOT NULL DEFAULT '[]',
        buttons TEXT NOT NULL DEFAULT '[]',
        channel TEXT NOT NULL,
        platform_message_id TEXT,
        payload TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE UNIQUE INDEX messages_inbound_dedupe ON messages(channel, platform_message_id)
        WHERE direction = 'in';
    CREATE INDEX messages_conversation ON messages(conversation_id, id);
    CREATE INDEX messages_outbox ON messages(next_attempt_at)
        WHERE direction = 'out' AND status = 'pending';
    CREATE INDEX messages_unprocessed ON messages(conversation_id)
        WHERE direction = 'in' AND status = 'received';
    CREATE TABLE handoffs (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        state TEXT NOT NULL,
        team TEXT NOT NULL,
        reason TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        agent TEXT,
        context TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        claimed_at TEXT,
        closed_at TEXT
    );
    CREATE UNIQUE INDEX handoffs_active ON handoffs(conversation_id)
        WHERE state IN ('queued', 'claimed');
    CREATE INDEX handoffs_state ON handoffs(state, priority, created_at);
    """,
    # 2: agent desks outside the bot (Slack): where each handoff's card and thread are,
    # and platform event ids already handled (retries are answered, not processed again)
    """
    CREATE TABLE desk_threads (
        desk TEXT NOT NULL,
        handoff_id TEXT NOT NULL REFERENCES handoffs(id),
        channel TEXT NOT NULL,
        ts TEXT NOT NULL,
        team TEXT NOT NULL,
        relayed_upto INTEGER NOT NULL DEFAULT 0,
        alerted_at TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (desk, handoff_id)
    );
    CREATE UNIQUE INDEX desk_threads_ts ON desk_threads(desk, channel, ts);
    CREATE TABLE seen_events (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (source, event_id)
    );
    """,
    # 3: what channels tell about a customer (a Telegram /start deep-link payload, ...)
    """
    ALTER TABLE customers ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'
    """,
    # 4: the outbox's heads (oldest pending message per conversation) from a small index,
    # instead of a scan of every message ever sent
    """
    CREATE INDEX messages_pending ON messages(conversation_id, id)
        WHERE direction = 'out' AND status = 'pending'
    """,
    # 5: complaint tickets (reference C-1042 given at once; classification and routing)
    """
    CREATE TABLE tickets (
        reference TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        status TEXT NOT NULL,
        category TEXT,
        severity TEXT NOT NULL,
        department TEXT NOT NULL,
        team TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        fields TEXT NOT NULL DEFAULT '{}',
        reasons TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_at TEXT,
        resolved_by TEXT,
        result TEXT,
        csat INTEGER,
        csat_comment TEXT,
        csat_at TEXT,
        followup_due_at TEXT,
        followed_up_at TEXT,
        reopened INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tickets_customer ON tickets(customer_id, created_at);
    CREATE INDEX tickets_conversation ON tickets(conversation_id, created_at);
    CREATE INDEX tickets_followup ON tickets(followup_due_at) WHERE followed_up_at IS NULL
    """,
    # 6: one-time codes that link a customer's accounts on different channels
    """
    CREATE TABLE link_codes (
        code TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    )
    """,
    # 7: which SLA alerts a ticket has raised (each once, across restarts)
    """
    ALTER TABLE tickets ADD COLUMN sla_alerts TEXT NOT NULL DEFAULT '[]'
    """,
    # 8: side effects keyed to the turn that caused them, so a replayed turn (after a crash or a
    # storage error) never repeats one: the ticket a turn opened, and each flow action's result
    """
    ALTER TABLE tickets ADD COLUMN origin TEXT;
    CREATE UNIQUE INDEX tickets_origin ON tickets(origin) WHERE origin IS NOT NULL;
    CREATE TABLE effects (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    # 9: no query on the per-message path reads a table whole (tests/bot/test_query_plans.py):
    # a web-chat hello looks up the newest conversation at its address, closed ones included
    # (conversations_open covers only the open one); the SLA clocks read the open tickets
    """
    CREATE INDEX conversations_address ON conversations(channel, external_id, updated_at);
    CREATE INDEX tickets_open ON tickets(priority, created_at) WHERE resolved_at IS NULL
    """,
    # 10: the Slack desk syncs incrementally: a hash of the card as last rendered (no chat.update
    # when it is unchanged), and the failed deliveries its thread was already told about
    """
    ALTER TABLE desk_threads ADD COLUMN card_hash TEXT;
    ALTER TABLE desk_threads ADD COLUMN warned TEXT NOT NULL DEFAULT '[]'
    """,
    # 11: several instances on one database (PostgreSQL; SQLite carries the same schema):
    # the live instances, which instance works on a conversation, named leases (the Telegram
    # poller, ...), counters for rate limits that hold across instances, and uploaded files
    """
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        seen_at REAL NOT NULL
    );
    ALTER TABLE conversations ADD COLUMN owner TEXT;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until REAL NOT NULL
    );
    CREATE TABLE rate_limits (
        key TEXT PRIMARY KEY,
        window_start REAL NOT NULL,
        hits INTEGER NOT NULL
    );
    CREATE TABLE media (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    # 12: agent accounts (README "Agent desk"): each agent logs in with their e-mail and password
    # or a personal API token; only hashes are kept. session_gen is in every session cookie:
    # disabling an account or changing its password bumps it, which ends its sessions.
    """
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        teams TEXT NOT NULL DEFAULT '[]',
        role TEXT NOT NULL DEFAULT 'agent',
        password_hash TEXT,
        token_hash TEXT,
        session_gen INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX agents_token ON agents(token_hash) WHERE token_hash IS NOT NULL
    """,
    # 13: the agent desk's working records (README "Agent desk") and the audit log (README "Privacy").
    # notes: internal notes on a conversation, never sent to the customer. desk_reads: up to when each
    # agent has read each conversation (unread counts). compensations: refunds, replacements and
    # discount codes asked for on a complaint, granted within the asker's authority or decided by a
    # supervisor. tickets.review_*: the department head's review of a proposed resolution, and when
    # the approved result reached the customer. handoffs.cause: why the bot handed over (figures).
    # audit: append-only, who did what.
    """
    CREATE TABLE notes (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        handoff_id TEXT,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        via TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE INDEX notes_conversation ON notes(conversation_id, created_at);
    CREATE TABLE desk_reads (
        agent TEXT NOT NULL,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        read_at TEXT NOT NULL,
        PRIMARY KEY (agent, conversation_id)
    );
    CREATE TABLE compensations (
        id TEXT PRIMARY KEY,
        ticket_reference TEXT NOT NULL REFERENCES tickets(reference),
        kind TEXT NOT NULL,
        amount REAL NOT NULL DEFAULT 0,
        currency TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        note TEXT
    );
    CREATE INDEX compensations_ticket ON compensations(ticket_reference, requested_at);
    ALTER TABLE tickets ADD COLUMN review_state TEXT;
    ALTER TABLE tickets ADD COLUMN proposed_result TEXT;
    ALTER TABLE tickets ADD COLUMN proposed_by TEXT;
    ALTER TABLE tickets ADD COLUMN proposed_at TEXT;
    ALTER TABLE tickets ADD COLUMN reviewed_by TEXT;
    ALTER TABLE tickets ADD COLUMN reviewed_at TEXT;
    ALTER TABLE tickets ADD COLUMN review_note TEXT;
    ALTER TABLE tickets ADD COLUMN communicated_at TEXT;
    ALTER TABLE handoffs ADD COLUMN cause TEXT;
    CREATE TABLE audit (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        customer_id TEXT,
        target TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_at ON audit(at, id);
    CREATE INDEX audit_customer ON audit(customer_id, at) WHERE customer_id IS NOT NULL
    """,
    # 14: the conversation's language (README "Languages"): an ISO 639-1 code the bot answers in,
    # detected from the customer's messages or taken from the platform; NULL until known.
    """
    ALTER TABLE conversations ADD COLUMN language TEXT
    """,
    # 15: the flow versions the bot served (README "Changing flows on a running bot"): each with its
    # number, its files' hash, when and by whom it was loaded, and the texts of its files (JSON
    # {relative path: text}), so a conversation mid-flow and a rollback use exactly those texts.
    """
    CREATE TABLE flow_versions (
        number INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        loaded_at TEXT NOT NULL,
        loaded_by TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        files TEXT NOT NULL
    )
    """,
    # 16: the inbound dedupe index covers only messages that have a platform id (issue 20). Same
    # uniqueness (NULLs never collided), but a query can use the index only if it names
    # platform_message_id: before, any query with direction = 'in' (a turn's processed mark of
    # its message by id, its "no older message waits" check) could scan this small partial index
    # whole, and PostgreSQL's generic plan of the turn did so on young tables (a cost tie with
    # the primary key), reading every inbound message per turn until the next ANALYZE.
    """
    DROP INDEX messages_inbound_dedupe;
    CREATE UNIQUE INDEX messages_inbound_dedupe ON messages(channel, platform_message_id)
        WHERE direction = 'in' AND platform_message_id IS NOT NULL
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
