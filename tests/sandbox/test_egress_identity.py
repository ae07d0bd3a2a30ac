"""Signed run identities: what the proxy accepts, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import time

import pytest

from sandbox.egress_identity import (
    IDENTITY_USER,
    IdentityError,
    RunIdentity,
    check_identity_secret,
    proxy_url_with_identity,
    sign_identity,
    token_from_proxy_authorization,
    verify_identity,
)

SECRET = "s" * 40
OTHER = "o" * 40
LATER = int(time.time()) + 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_signed_identity_verifies_with_its_tenant_run_and_expiry() -> None:
    token = sign_identity(SECRET, tenant="acme", run="run-42", expires_at=LATER)
    assert verify_identity(SECRET, token) == RunIdentity(tenant="acme", run="run-42", expires_at=LATER)
    assert all(c.isalnum() or c in "-_." for c in token)  # nothing to escape in a URL's userinfo
    odd = sign_identity(SECRET, tenant="ténant:with spaces/@", run="r\n1", expires_at=LATER)
    assert verify_identity(SECRET, odd).tenant == "ténant:with spaces/@"


def test_a_tampered_payload_is_refused() -> None:
    """Claiming another tenant means changing the payload, which breaks the signature."""
    version, payload, signature = sign_identity(SECRET, tenant="acme", run="r1", expires_at=LATER).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = _b64(json.dumps({**claims, "tenant": "globex"}, separators=(",", ":")).encode())
    with pytest.raises(IdentityError, match="bad signature"):
        verify_identity(SECRET, f"{version}.{forged}.{signature}")
    # Another run's signature does not fit this payload either.
    other_signature = sign_identity(SECRET, tenant="globex", run="r1", expires_at=LATER).split(".")[2]
    with pytest.raises(IdentityError, match="bad signature"):
        verify_identity(SECRET, f"{version}.{payload}.{other_signature}")


def test_a_tampered_signature_is_refused() -> None:
    token = sign_identity(SECRET, tenant="acme", run="r1", expires_at=LATER)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(IdentityError, match="bad signature"):
        verify_identity(SECRET, flipped)


def test_an_expired_identity_is_refused() -> None:
    token = sign_identity(SECRET, tenant="acme", run="r1", expires_at=1_000)
    with pytest.raises(IdentityError, match=r"expired identity \(tenant=acme run=r1\)"):
        verify_identity(SECRET, token)
    fresh = sign_identity(SECRET, tenant="acme", run="r1", expires_at=2_000)
    assert verify_identity(SECRET, fresh, now=1_999.0).run == "r1"
    with pytest.raises(IdentityError, match="expired"):
        verify_identity(SECRET, fresh, now=2_000.0)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = sign_identity(OTHER, tenant="acme", run="r1", expires_at=LATER)
    with pytest.raises(IdentityError, match="bad signature"):
        verify_identity(SECRET, token)


def _signed(payload: str) -> str:
    """A correctly signed token around ``payload`` (so the parser, not the MAC, must refuse it)."""
    import hashlib
    import hmac

    mac = hmac.new(SECRET.encode(), b"agentic-egress-identity.v1." + payload.encode(), hashlib.sha256)
    return f"v1.{payload}.{_b64(mac.digest())}"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed identity: expected v1"),
        ("garbage", "malformed identity: expected v1"),
        ("v2.abc.def", "malformed identity: expected v1"),
        ("v1.abc", "malformed identity: expected v1"),
        ("v1.a.b.c", "malformed identity: expected v1"),
        ("v1.abc.%%%", "signature is not base64url"),
        ("v1.ünï.abc", "payload is not base64url"),
        ("v1." + "a" * 5000 + ".b", "too long"),
        (_signed(_b64(b"not json")), "not JSON"),
        (_signed(_b64(b"[1, 2]")), "not a JSON object"),
        (_signed(_b64(b'{"tenant": "acme", "exp": 9999999999}')), "no tenant or run"),
        (_signed(_b64(b'{"tenant": "", "run": "r", "exp": 9999999999}')), "no tenant or run"),
        (_signed(_b64(b'{"tenant": "acme", "run": "r"}')), "no expiry"),
        (_signed(_b64(b'{"tenant": "acme", "run": "r", "exp": "soon"}')), "no expiry"),
        (_signed(_b64(b'{"tenant": "acme", "run": "r", "exp": true}')), "no expiry"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason):
        verify_identity(SECRET, token)


def test_the_proxy_authorization_header_yields_the_password() -> None:
    token = sign_identity(SECRET, tenant="acme", run="r1", expires_at=LATER)
    header = "Basic " + base64.b64encode(f"{IDENTITY_USER}:{token}".encode()).decode()
    assert token_from_proxy_authorization(header) == token
    for bad, reason in [
        (None, "Proxy-Authorization missing"),
        ("", "Proxy-Authorization missing"),
        ("Bearer abc", "scheme 'Bearer'"),
        ("Basic !!!", "not base64"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "no password"),
        ("Basic " + base64.b64encode(b"agentic:").decode(), "no password"),
    ]:
        with pytest.raises(IdentityError, match=reason):
            token_from_proxy_authorization(bad)


def test_the_proxy_url_gets_the_identity_as_userinfo() -> None:
    url = proxy_url_with_identity("http://proxy.svc:3128", "v1.p.s")
    assert url == "http://agentic:v1.p.s@proxy.svc:3128"
    assert (
        proxy_url_with_identity("http://old:pw@10.0.0.1:3128/", "v1.p.s")
        == "http://agentic:v1.p.s@10.0.0.1:3128/"
    )


def test_short_secrets_and_empty_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        check_identity_secret("short")
    with pytest.raises(ValueError, match="at least 32"):
        sign_identity("short", tenant="acme", run="r1", expires_at=LATER)
    with pytest.raises(ValueError, match="needs a tenant and a run"):
        sign_identity(SECRET, tenant="", run="r1", expires_at=LATER)
    with pytest.raises(ValueError, match="too long"):  # what verify_identity would refuse anyway
        sign_identity(SECRET, tenant="t" * 4000, run="r1", expires_at=LATER)
