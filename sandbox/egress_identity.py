"""A run's signed identity, carried to the cluster's egress proxy in the proxy URL's userinfo.

Why: on one host the proxy knows each connection's run from its per-run Unix socket; on a cluster
sandbox pods reach one TCP listener, and a TCP peer's address names no tenant or run. So the Kata
backend, which knows both, hands each pod with network a proxy URL ``http://agentic:<token>@proxy``;
curl, requests, urllib, httpx and Deno send that userinfo as ``Proxy-Authorization: Basic`` on
CONNECT and on plain HTTP, and the proxy (:mod:`sandbox.egress_proxy`) checks it with the same
secret before it decides anything.

The token is ``v1.<payload>.<signature>``: the payload is base64url JSON naming the tenant, the run
and an expiry (unix seconds), the signature HMAC-SHA256 over a fixed prefix and the payload (both
base64url, unpadded: no character needs escaping in a URL). It is a bearer credential inside the
sandbox's environment, which is acceptable because it only names that run's own identity and ends
with the pod: changing the tenant or the run breaks the signature, and the secret never leaves
the server and the proxy.

Errors: :class:`IdentityError` (a ``ValueError``) says why a token was refused; the proxy turns it
into a 407 and never lets it out of the proxy, so it is not part of :mod:`sandbox.errors`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, SecretStr

__all__ = [
    "IDENTITY_USER",
    "MIN_SECRET_CHARS",
    "IdentityError",
    "IdentitySecret",
    "RunIdentity",
    "check_identity_secret",
    "proxy_url_with_identity",
    "sign_identity",
    "token_from_proxy_authorization",
    "verify_identity",
]

IDENTITY_USER = "agentic"  # the userinfo's user name; the token is the password
MIN_SECRET_CHARS = 32
_VERSION = "v1"
_CONTEXT = b"agentic-egress-identity.v1."  # what the MAC covers besides the payload (no reuse elsewhere)
_MAX_TOKEN_CHARS = 4096  # refused before any decoding above this
_B64URL = re.compile(r"[A-Za-z0-9_-]+")  # unpadded base64url, nothing else


class IdentityError(ValueError):
    """A token the proxy refuses; the message is the reason (logged, and sent in the 407)."""


@dataclass(frozen=True)
class RunIdentity:
    """Who a connection belongs to, as the server signed it."""

    tenant: str
    run: str
    expires_at: int  # unix seconds


def check_identity_secret(secret: str) -> str:
    """``secret`` when it is long enough to sign with (settings validators call this).

    Raises:
        ValueError: fewer than :data:`MIN_SECRET_CHARS` characters.
    """
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"the egress identity secret has {len(secret)} characters; use at least {MIN_SECRET_CHARS} "
            "(e.g. `openssl rand -hex 32`), or leave it empty to run without run identities"
        )
    return secret


def _secret_or_none(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return None
    check_identity_secret(value.get_secret_value())
    return value


IdentitySecret = Annotated[SecretStr | None, AfterValidator(_secret_or_none)]
"""A settings field for the signing secret: empty means None (no identities), else long enough."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Strict: the decoder alone would skip characters outside the alphabet."""
    if not _B64URL.fullmatch(text):
        raise IdentityError(f"malformed identity: the {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise IdentityError(f"malformed identity: the {what} is not base64url") from None


def _mac(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()


def sign_identity(secret: str, *, tenant: str, run: str, expires_at: int) -> str:
    """The token naming ``tenant`` and ``run`` until ``expires_at`` (unix seconds).

    Raises:
        ValueError: an empty or over-long tenant or run, or a secret :func:`check_identity_secret`
            refuses.
    """
    check_identity_secret(secret)
    if not tenant or not run:
        raise ValueError("a run identity needs a tenant and a run id")
    body = json.dumps({"tenant": tenant, "run": run, "exp": int(expires_at)}, separators=(",", ":"))
    payload = _b64(body.encode())
    token = f"{_VERSION}.{payload}.{_b64(_mac(secret, payload))}"
    if len(token) > _MAX_TOKEN_CHARS:
        raise ValueError(
            f"tenant and run ids too long for a run identity ({len(token)} > {_MAX_TOKEN_CHARS})"
        )
    return token


def verify_identity(secret: str, token: str, *, now: float | None = None) -> RunIdentity:
    """The identity ``token`` names, when the signature holds and it has not expired.

    The signature is checked (constant-time) before the payload is parsed.

    Raises:
        IdentityError: malformed, badly signed or expired (the message says which).
    """
    if len(token) > _MAX_TOKEN_CHARS:
        raise IdentityError("malformed identity: token too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise IdentityError(f"malformed identity: expected {_VERSION}.<payload>.<signature>")
    _, payload, signature = parts
    body = _unb64(payload, "payload")
    if not hmac.compare_digest(_unb64(signature, "signature"), _mac(secret, payload)):
        raise IdentityError("bad signature (not issued by this platform, or altered)")
    try:
        claims = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IdentityError("malformed identity: the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise IdentityError("malformed identity: the payload is not a JSON object")
    tenant, run, exp = claims.get("tenant"), claims.get("run"), claims.get("exp")
    if not (isinstance(tenant, str) and tenant and isinstance(run, str) and run):
        raise IdentityError("malformed identity: no tenant or run")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise IdentityError("malformed identity: no expiry")
    if (time.time() if now is None else now) >= exp:
        raise IdentityError(f"expired identity (tenant={tenant} run={run})")
    return RunIdentity(tenant=tenant, run=run, expires_at=exp)


def token_from_proxy_authorization(value: str | None) -> str:
    """The token in a ``Proxy-Authorization: Basic`` header's password (the user name is ignored).

    Raises:
        IdentityError: no header, another scheme, or not ``user:password`` in base64.
    """
    if not value:
        raise IdentityError("no run identity (Proxy-Authorization missing)")
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise IdentityError(f"malformed identity: Proxy-Authorization scheme {scheme[:20]!r}, not Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise IdentityError("malformed identity: Proxy-Authorization is not base64") from None
    _, colon, token = decoded.partition(":")
    if not colon or not token:
        raise IdentityError("malformed identity: no password in Proxy-Authorization")
    return token


def proxy_url_with_identity(url: str, token: str) -> str:
    """``url`` with ``agentic:<token>`` as its userinfo (any userinfo it had is replaced)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{IDENTITY_USER}:{token}@{host}"))
