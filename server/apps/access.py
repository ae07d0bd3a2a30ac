"""Who may open a hosted app: its access token, an expiring signed link (then a cookie), or ``public``.

Design: the token is random (``apt_`` + 32 bytes), shown once, stored as SHA-256 (like API keys).
A signed link carries ``exp.signature`` = HMAC-SHA256(server secret, ``app_id:exp``); opening it
sets the same value as an HttpOnly cookie, host-only on the app's own origin (scoped to
``/apps/{id}/`` when apps share the API's origin), so the browser can follow the app's own links.
The secret comes from settings or is generated once into the data dir, so links survive a restart.
Nothing here grants one tenant's credentials power over another tenant's app.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path

__all__ = ["COOKIE", "LINK_PARAM", "LinkSigner", "hash_token", "load_secret", "new_token"]

logger = logging.getLogger(__name__)

COOKIE = "agentic_app"
LINK_PARAM = "agentic_link"


def new_token() -> str:
    """A fresh random app token."""
    return "apt_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_secret(path: Path) -> bytes:
    """The link-signing secret kept at ``path`` (created 0600 on first use)."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    logger.info("created the app link secret %s", path)
    return secret


class LinkSigner:
    """Signs and checks ``exp.signature`` values bound to one app id."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, app_id: str, exp: int) -> str:
        return hmac.new(self._secret, f"{app_id}:{exp}".encode(), hashlib.sha256).hexdigest()

    def sign(self, app_id: str, ttl_s: float) -> tuple[str, int]:
        """A value valid for ``ttl_s`` seconds, and its expiry (epoch seconds)."""
        exp = int(time.time() + ttl_s)
        return f"{exp}.{self._sign(app_id, exp)}", exp

    def check(self, app_id: str, value: str | None) -> int | None:
        """Seconds left when ``value`` is a valid, unexpired signature for ``app_id``; else None."""
        if not value or "." not in value:
            return None
        raw_exp, signature = value.split(".", 1)
        try:
            exp = int(raw_exp)
        except ValueError:
            return None
        left = exp - int(time.time())
        if left <= 0 or not hmac.compare_digest(signature, self._sign(app_id, exp)):
            return None
        return left
