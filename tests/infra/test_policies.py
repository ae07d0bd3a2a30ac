"""The policy checks catch what they are there for: each is fed a rendered overlay with one thing
broken and must name it. (tests/infra/test_manifests.py runs them on the overlays as shipped.)"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra import policies
from tests.infra.render import INFRA, Obj, find, kustomize_command, render

pytestmark = pytest.mark.skipif(kustomize_command() is None, reason="kubectl / kustomize not installed")

SERVER = "Deployment agentic-system/agentic-server"


@pytest.fixture(scope="module")
def prod() -> list[Obj]:
    return render(INFRA / "overlays" / "prod")


def _container(objs: list[Obj], kind: str, name: str) -> dict[str, Any]:
    spec = policies.pod_spec(find(objs, kind, name)[0])
    assert spec is not None
    container: dict[str, Any] = spec["containers"][0]
    return container


def _spec(objs: list[Obj], kind: str, name: str) -> dict[str, Any]:
    spec = policies.pod_spec(find(objs, kind, name)[0])
    assert spec is not None
    return spec


def _token_on_postgres(o: list[Obj]) -> None:
    _spec(o, "StatefulSet", "agentic-postgres")["automountServiceAccountToken"] = True


def _no_token_on_server(o: list[Obj]) -> None:
    _spec(o, "Deployment", "agentic-server")["automountServiceAccountToken"] = False


def _root_gitea(o: list[Obj]) -> None:
    _container(o, "Deployment", "agentic-gitea")["securityContext"]["runAsUser"] = 0


def _caps(o: list[Obj]) -> None:
    _container(o, "CronJob", "agentic-postgres-backup")["securityContext"]["capabilities"] = {
        "add": ["NET_RAW"]
    }


def _no_seccomp(o: list[Obj]) -> None:
    _spec(o, "Deployment", "agentic-server")["securityContext"].pop("seccompProfile")


def _writable_root(o: list[Obj]) -> None:
    _container(o, "Deployment", "agentic-server")["securityContext"]["readOnlyRootFilesystem"] = False


def _no_limits(o: list[Obj]) -> None:
    _container(o, "StatefulSet", "agentic-postgres")["resources"].pop("limits")


def _host_path(o: list[Obj]) -> None:
    _spec(o, "Deployment", "agentic-gitea")["volumes"].append({"name": "h", "hostPath": {"path": "/"}})


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (_token_on_postgres, "automountServiceAccountToken must be false"),
        (_no_token_on_server, "automountServiceAccountToken must be true"),
        (_root_gitea, "runs as uid 0"),
        (_caps, "must drop ALL capabilities"),
        (_no_seccomp, "seccompProfile is not RuntimeDefault"),
        (_writable_root, "readOnlyRootFilesystem is not true"),
        (_no_limits, "no limits for cpu, memory"),
        (_host_path, "hostPath volume h"),
    ],
)
def test_pod_security_catches(prod: list[Obj], breaks: Callable[[list[Obj]], None], expected: str) -> None:
    objs = copy.deepcopy(prod)
    breaks(objs)
    violations = policies.check_pod_security(objs, {SERVER})
    assert any(expected in v for v in violations), violations


@pytest.mark.parametrize("image", ["postgres", "postgres:latest", "registry.example.com:5000/agentic/server"])
def test_unpinned_images_are_caught(prod: list[Obj], image: str) -> None:
    objs = copy.deepcopy(prod)
    _container(objs, "StatefulSet", "agentic-postgres")["image"] = image
    assert any("is not pinned" in v for v in policies.check_images(objs))


def _cluster_wide_write(o: list[Obj]) -> None:
    find(o, "ClusterRole", "agentic-server-cluster-read")[0]["rules"][0]["verbs"].append("delete")


def _manager_cluster_wide(o: list[Obj]) -> None:
    binding = copy.deepcopy(find(o, "ClusterRoleBinding")[0])
    binding["metadata"]["name"] = "oops"
    binding["roleRef"]["name"] = "agentic-sandbox-manager"
    o.append(binding)


def _secrets(o: list[Obj]) -> None:
    find(o, "ClusterRole", "agentic-sandbox-manager")[0]["rules"][0]["resources"].append("secrets")


def _wildcard(o: list[Obj]) -> None:
    find(o, "ClusterRole", "agentic-sandbox-manager")[0]["rules"].append(
        {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]}
    )


def _nodes(o: list[Obj]) -> None:
    find(o, "ClusterRole", "agentic-sandbox-manager")[0]["rules"].append(
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
    )


def _binding_in_platform(o: list[Obj]) -> None:
    binding = copy.deepcopy(find(o, "RoleBinding")[0])
    binding["metadata"]["namespace"] = "agentic-system"
    o.append(binding)


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (_cluster_wide_write, "cluster-wide"),
        (_manager_cluster_wide, "cluster-wide"),
        (_secrets, "grants"),
        (_wildcard, "wildcard"),
        (_nodes, "beyond its job"),
        (_binding_in_platform, "outside the user namespaces"),
    ],
)
def test_rbac_catches(prod: list[Obj], breaks: Callable[[list[Obj]], None], expected: str) -> None:
    objs = copy.deepcopy(prod)
    breaks(objs)
    violations = policies.check_rbac(objs)
    assert any(expected in v for v in violations), violations


def _user_policy(o: list[Obj], name: str) -> Obj:
    return next(p for p in find(o, "NetworkPolicy", name) if p["metadata"]["namespace"] != "agentic-system")


def _drop_default_deny(o: list[Obj]) -> None:
    o.remove(_user_policy(o, "default-deny"))


def _egress_anywhere(o: list[Obj]) -> None:
    _user_policy(o, "allow-to-egress-proxy")["spec"]["egress"].append(
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}
    )


def _egress_any_peer(o: list[Obj]) -> None:
    _user_policy(o, "allow-to-egress-proxy")["spec"]["egress"].append({"ports": [{"port": 443}]})


def _egress_for_every_pod(o: list[Obj]) -> None:
    _user_policy(o, "allow-to-egress-proxy")["spec"]["podSelector"] = {}


def _ingress_from_all(o: list[Obj]) -> None:
    _user_policy(o, "allow-from-server")["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}]})


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (_drop_default_deny, "no default-deny"),
        (_egress_anywhere, "egress to something other"),
        (_egress_any_peer, "egress to something other"),
        (_egress_for_every_pod, "not allowed network"),
        (_ingress_from_all, "ingress from something other"),
    ],
)
def test_network_policy_checks_catch(
    prod: list[Obj], breaks: Callable[[list[Obj]], None], expected: str
) -> None:
    objs = copy.deepcopy(prod)
    breaks(objs)
    violations = policies.check_network_policies(objs)
    assert any(expected in v for v in violations), violations


def test_user_namespace_checks_catch(prod: list[Obj]) -> None:
    objs = copy.deepcopy(prod)
    for kind in ("ResourceQuota", "LimitRange", "RoleBinding"):
        objs.remove(find(objs, kind)[0])
    namespace = next(o for o in objs if o["metadata"]["name"] == "agentic-user-default")
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    violations = " | ".join(policies.check_user_namespaces(objs))
    for expected in ("ResourceQuota", "LimitRange", "RoleBinding", "restricted"):
        assert expected in violations, violations


def _proxy_policy(o: list[Obj]) -> Obj:
    return find(o, "NetworkPolicy", "agentic-egress-proxy")[0]


def _proxy_open_to_any_namespace(o: list[Obj]) -> None:
    _proxy_policy(o)["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})


def _proxy_to_private_range(o: list[Obj]) -> None:
    _proxy_policy(o)["spec"]["egress"][1]["to"][0]["ipBlock"]["except"].remove("10.0.0.0/8")


def _proxy_to_cluster_pods(o: list[Obj]) -> None:
    _proxy_policy(o)["spec"]["egress"].append({"to": [{"namespaceSelector": {}}]})


def _proxy_without_service(o: list[Obj]) -> None:
    o.remove(find(o, "Service", "agentic-egress-proxy")[0])


def _proxy_without_probe(o: list[Obj]) -> None:
    del _container(o, "Deployment", "agentic-egress-proxy")["readinessProbe"]


def _proxy_to_every_platform_pod(o: list[Obj]) -> None:
    _proxy_policy(o)["spec"]["egress"][0]["to"][0]["podSelector"] = {}


def _proxy_to_another_server_port(o: list[Obj]) -> None:
    _proxy_policy(o)["spec"]["egress"][0]["ports"][0]["port"] = 5432


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (_proxy_open_to_any_namespace, "ingress from something other than sandbox pods"),
        (_proxy_to_private_range, "does not except 10.0.0.0/8"),
        (_proxy_to_cluster_pods, "only ipBlocks"),
        (_proxy_without_service, "no Service exposes the egress proxy"),
        (_proxy_without_probe, "no readinessProbe"),
        (_proxy_to_every_platform_pod, "only ipBlocks"),
        (_proxy_to_another_server_port, "only ipBlocks"),
    ],
)
def test_egress_proxy_checks_catch(
    prod: list[Obj], breaks: Callable[[list[Obj]], None], expected: str
) -> None:
    objs = copy.deepcopy(prod)
    breaks(objs)
    violations = policies.check_egress_proxy(objs)
    assert any(expected in v for v in violations), violations


def _server_policy(o: list[Obj]) -> Obj:
    return find(o, "NetworkPolicy", "agentic-server")[0]


def _server_closed_to_the_proxy(o: list[Obj]) -> None:
    peers = _server_policy(o)["spec"]["ingress"][0]["from"]
    peers[:] = [p for p in peers if "podSelector" not in p]


def _proxy_not_to_the_server(o: list[Obj]) -> None:
    del _proxy_policy(o)["spec"]["egress"][0]


def _upstream_elsewhere(o: list[Obj]) -> None:
    env = _container(o, "Deployment", "agentic-egress-proxy")["env"]
    entry = next(e for e in env if e["name"] == "AGENTIC_EGRESS_PROXY_APPS_UPSTREAM")
    entry["value"] = "http://agentic-gitea.agentic-system.svc.cluster.local:3000"


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (_server_closed_to_the_proxy, "lets the egress proxy into the server's pods"),
        (_proxy_not_to_the_server, "lets the egress proxy reach the server's pods"),
        (_upstream_elsewhere, "is not the server's Service"),
    ],
)
def test_apps_route_checks_catch(prod: list[Obj], breaks: Callable[[list[Obj]], None], expected: str) -> None:
    """A sandbox's <app_id>.apps.internal needs the proxy -> server path open on both sides."""
    objs = copy.deepcopy(prod)
    breaks(objs)
    violations = policies.check_apps_route(objs)
    assert any(expected in v for v in violations), violations
