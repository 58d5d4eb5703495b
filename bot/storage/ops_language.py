"""Store operations on the language a conversation is held in (schema 14, README "Languages").

``conversations.language`` is an ISO 639-1 code (``en``, ``es``, ``id``): what the bot answers
in and what agents see. NULL until the bot knows (the first messages, the platform's hint).
"""

from __future__ import annotations

from .sql import One, Op


def set_conversation_language(conversation_id: str, language: str) -> Op[bool]:
    """Keep ``language`` on the conversation; True if it changed (False: it was that already,
    or there is no such conversation)."""
    row = yield One("UPDATE conversations SET language=? WHERE id=? AND (language IS NULL OR language <> ?) "
                    "RETURNING id", (language, conversation_id, language))
    return row is not None
