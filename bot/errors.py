"""One error tree for the whole project.

Only the CLI turns these into exit codes; library code raises and never exits.
"""

from __future__ import annotations


class OmnibotError(Exception):
    """Root of every error omnibot raises on purpose."""


class ConfigError(OmnibotError):
    """config.yaml is missing, unreadable or invalid.

    Args:
        reason: what is wrong, in words a user can act on.
        path: the file.
        key: dotted key that is wrong (``server.port``), when known.
        line: 1-based line of that key, when known.
    """

    def __init__(self, reason: str, *, path: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.key = key
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "config"
        if self.line:
            where += f":{self.line}"
        what = f"{self.key}: " if self.key else ""
        return f"{where}: {what}{self.reason}"


class FlowError(OmnibotError):
    """One problem in a flow file, located by file and line."""

    def __init__(self, reason: str, *, path: str, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}:{self.line or 1}: {self.reason}"


class FlowValidationError(OmnibotError):
    """A flow directory has one or more errors; ``errors`` lists every one."""

    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class StoreError(OmnibotError):
    """Storage failed or was asked for something impossible."""


class ClaimLost(StoreError):
    """Another instance owns the conversation now (this one was taken for dead): write nothing."""


class AlreadyDone(StoreError):
    """The change was made already (by another instance, or before a restart): nothing to do."""


class TurnStale(StoreError):
    """A turn computed from what its message's storing read (``TurnBasis``) found the conversation
    changed since: nothing was written; the turn runs again from a fresh read."""


class InvalidTransition(OmnibotError):
    """A handoff transition that the state table does not allow."""


class SendError(OmnibotError):
    """A connector could not deliver a message."""


class TransientSendError(SendError):
    """Try again later; ``retry_after`` seconds if the platform said so."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(reason)


class PermanentSendError(SendError):
    """Retrying will not help (blocked by the user, bad request, unknown chat)."""


class StoreConflict(StoreError):
    """The write collides with what another writer stored at the same moment (a unique key already
    taken, a row it refers to gone): nothing was written; the caller may look again and retry."""

    status = 409


class StorageUnavailable(StoreError):
    """Storage cannot write right now (disk full, database locked past its timeout, I/O error).

    Ingress must not acknowledge what it did not store: webhooks answer 503 (the platform
    retries later), the web chat sends an ``unavailable`` error frame. Raised by
    ``Runtime.accept`` when recording an inbound message fails this way.
    """

    status = 503    # what an HTTP handler that maps OmnibotError.status answers
