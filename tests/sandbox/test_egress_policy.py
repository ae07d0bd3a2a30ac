"""The egress decision, tested where it is made: no packet leaves loopback (addresses are only decided)."""

from __future__ import annotations

import ipaddress

import pytest

from sandbox.egress_policy import EgressPolicy, host_addresses

PUBLIC = "93.184.215.14"  # decided, never contacted


def stub(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"NXDOMAIN {host}")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "address"),  # reserved (Python calls it private)
    ],
)
def test_internal_addresses_are_refused_even_with_internet_allowed(address: str, reason: str) -> None:
    decision = EgressPolicy(allow_internet=True).decide_address(address, 80)
    assert not decision.allowed and reason in decision.reason, decision


def test_public_internet_only_when_the_server_allows_network() -> None:
    assert not EgressPolicy(allow_internet=False).decide_address(PUBLIC, 443).allowed
    allowed = EgressPolicy(allow_internet=True).decide_address(PUBLIC, 443)
    assert allowed.allowed and allowed.address == PUBLIC


def test_the_hosts_own_addresses_are_refused() -> None:
    own = host_addresses()
    assert ipaddress.ip_address("127.0.0.1") in own
    candidates = [a for a in own if a.is_global]
    policy = EgressPolicy(allow_internet=True, own_addresses=frozenset({ipaddress.ip_address(PUBLIC)}))
    decision = policy.decide_address(PUBLIC, 80)
    assert not decision.allowed and "own address" in decision.reason
    for address in candidates:  # whatever public address this host has is not "the internet"
        assert not EgressPolicy(allow_internet=True).decide_address(str(address), 80).allowed


def test_allow_list_opens_networks_but_never_platform_ports() -> None:
    policy = EgressPolicy.from_entries(
        ["10.20.0.0/16", "127.0.0.0/8"], allow_internet=False, platform_ports=[8000]
    )
    assert policy.decide_address("10.20.3.4", 5000).allowed
    assert not policy.decide_address("10.21.0.1", 5000).allowed
    assert policy.decide_address("127.0.0.2", 8080).allowed
    refused = policy.decide_address("127.0.0.1", 8000)
    assert not refused.allowed and "platform port" in refused.reason
    assert not policy.decide_address("0.0.0.0", 8000).allowed


async def test_names_are_decided_on_their_dns_answers() -> None:
    resolve = stub(
        {
            "internal.example": ["10.0.0.5"],
            "meta.example": ["169.254.169.254"],
            "rebind.example": [PUBLIC, "192.168.0.10"],
            "public.example": [PUBLIC],
            "db.corp": ["10.9.9.9"],
        }
    )
    policy = EgressPolicy.from_entries(["db.corp"], allow_internet=True, platform_ports=[5432])
    for name in ("internal.example", "meta.example", "rebind.example"):
        decision = await policy.decide(name, 80, resolve)
        assert not decision.allowed and "resolves to a refused address" in decision.reason, name
    ok = await policy.decide("public.example", 443, resolve)
    assert ok.allowed and ok.address == PUBLIC
    # An allow-listed name opens its internal address, but not a platform port on it... nor unknown names.
    assert (await policy.decide("db.corp", 8080, resolve)).allowed
    assert not (await policy.decide("nxdomain.example", 80, resolve)).allowed


async def test_ip_literals_are_not_resolved() -> None:
    async def never(host: str, port: int) -> list[str]:
        raise AssertionError("an IP literal must not go to DNS")

    policy = EgressPolicy(allow_internet=True)
    assert not (await policy.decide("[::1]", 80, never)).allowed
    assert not (await policy.decide("169.254.169.254", 80, never)).allowed
    assert (await policy.decide(PUBLIC, 80, never)).allowed
