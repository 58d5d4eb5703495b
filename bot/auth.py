"""Signed tokens (HMAC-SHA256) for web-chat sessions and agent cookies."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Signer:
    """Signs ``value`` for one purpose; a token for one purpose never verifies for another."""

    def __init__(self, secret: str, purpose: str) -> None:
        self._key = hashlib.sha256(f"{purpose}\0{secret}".encode()).digest()

    def sign(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return f"{_b64(value.encode())}.{_b64(mac)}"

    def verify(self, token: str | None) -> str | None:
        """The signed value, or None if the token is missing, malformed or forged."""
        if (not token or not isinstance(token, str) or not token.isascii() or token.count(".") != 1
                or len(token) > 1024):
            return None
        v64, mac64 = token.split(".")
        try:
            value = base64.urlsafe_b64decode(v64 + "=" * (-len(v64) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self.sign(value).split(".")[1]
        return value if hmac.compare_digest(expected, mac64) else None
