"""Which host names are an app's own origin (the decision, without a server)."""

from __future__ import annotations

import pytest

from server.apps.origin import app_id_of_host, app_origin


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0123abcd.apps.localhost", "0123abcd"),
        ("0123abcd.apps.localhost:8000", "0123abcd"),
        ("0123ABCD.Apps.Localhost:8000", "0123abcd"),  # host names are case-insensitive
        ("apps.localhost:8000", None),  # the domain itself is no app
        ("a.b.apps.localhost", None),  # one label only: never a nested name
        ("x.apps.localhost.evil.test", None),
        ("0123abcd.apps.example.com", None),  # another domain
        ("localhost:8000", None),
        ("127.0.0.1:8000", None),
        ("[::1]:8000", None),
        ("-x.apps.localhost", None),
        ("", None),
    ],
)
def test_app_id_of_host(host: str, expected: str | None) -> None:
    assert app_id_of_host(host, "apps.localhost") == expected


def test_no_domain_means_no_app_hosts() -> None:
    assert app_id_of_host("0123abcd.apps.localhost", "") is None


def test_the_origin_keeps_the_requests_scheme_and_port() -> None:
    scope = {"type": "http", "scheme": "https", "headers": [(b"host", b"example.com:8443")]}
    assert app_origin(scope, "abc", "apps.example.com") == "https://abc.apps.example.com:8443"
    ws = {"type": "websocket", "scheme": "ws", "headers": [(b"host", b"localhost")]}
    assert app_origin(ws, "abc", "apps.localhost") == "http://abc.apps.localhost"
