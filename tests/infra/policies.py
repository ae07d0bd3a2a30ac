"""Policies every rendered overlay must meet; each check returns its violations (empty: it holds).

They are functions over plain objects so the tests can also feed them broken copies and see them
fail (tests/infra/test_policies.py), which is how we know a green run means something.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, cast

from tests.infra.render import Obj

__all__ = [
    "ALLOWED_SANDBOX_MANAGER",
    "PLATFORM_NAMESPACE",
    "check_apps_route",
    "check_egress_proxy",
    "check_images",
    "check_network_policies",
    "check_pod_security",
    "check_rbac",
    "check_user_namespaces",
    "containers",
    "pod_spec",
    "user_namespaces",
]

PLATFORM_NAMESPACE = "agentic-system"
SERVER = {"app.kubernetes.io/name": "agentic-server"}
EGRESS_PROXY = {"app.kubernetes.io/component": "egress-proxy"}
READ_VERBS = frozenset({"get", "list", "watch"})
# What the server may touch in a user namespace (the brief: pods, their logs and exec, services,
# ingresses, configmaps, agent-sandbox kinds), by API group.
ALLOWED_SANDBOX_MANAGER = {
    "": {"pods", "pods/log", "pods/exec", "services", "configmaps"},
    "networking.k8s.io": {"ingresses"},
    "agents.x-k8s.io": {"sandboxes"},
    "extensions.agents.x-k8s.io": {"sandboxclaims", "sandboxtemplates", "sandboxwarmpools"},
}
_FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate"}
_POD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


def _name(o: Obj) -> str:
    ns = o["metadata"].get("namespace")
    return f"{o['kind']} {ns + '/' if ns else ''}{o['metadata']['name']}"


def pod_spec(o: Obj) -> dict[str, Any] | None:
    """The pod spec inside a workload, itself (not a copy); None for other kinds."""
    if o["kind"] not in _POD_KINDS:
        return None
    if o["kind"] == "Pod":
        return cast(dict[str, Any], o["spec"])
    if o["kind"] == "CronJob":
        return cast(dict[str, Any], o["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return cast(dict[str, Any], o["spec"]["template"]["spec"])


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init, regular and ephemeral containers of a pod spec."""
    return [
        *spec.get("initContainers", []),
        *spec.get("containers", []),
        *spec.get("ephemeralContainers", []),
    ]


def check_pod_security(objs: list[Obj], token_allowed: set[str]) -> list[str]:
    """Non-root, no privilege escalation, ALL capabilities dropped, seccomp RuntimeDefault, read-only
    root filesystem, requests and limits, no host namespaces or paths, and an API token only for
    the workloads named in ``token_allowed`` (``Kind namespace/name``)."""
    bad: list[str] = []
    for o in objs:
        spec = pod_spec(o)
        if spec is None:
            continue
        who = _name(o)
        wants_token = who in token_allowed
        if spec.get("automountServiceAccountToken") is not wants_token:
            bad.append(f"{who}: automountServiceAccountToken must be {str(wants_token).lower()}")
        pod_sc = spec.get("securityContext", {})
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                bad.append(f"{who}: {key}")
        bad += [f"{who}: hostPath volume {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
        for c in containers(spec):
            where = f"{who} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                bad.append(f"{where}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                bad.append(f"{where}: runs as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                bad.append(f"{where}: privileged")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or caps.get("add"):
                bad.append(f"{where}: must drop ALL capabilities and add none")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            if seccomp.get("type") != "RuntimeDefault":
                bad.append(f"{where}: seccompProfile is not RuntimeDefault")
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{where}: readOnlyRootFilesystem is not true")
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(part, {}))
                if missing:
                    bad.append(f"{where}: no {part} for {', '.join(sorted(missing))}")
    return bad


_PINNED = re.compile(r"^[^\s@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")


def check_images(objs: list[Obj]) -> list[str]:
    """Every image has a tag or digest, and no tag is ``latest``."""
    bad: list[str] = []
    for o in objs:
        spec = pod_spec(o)
        for c in containers(spec) if spec else []:
            image = str(c.get("image", ""))
            last = image.rsplit("/", 1)[-1]
            tagged = ":" in last or "@sha256:" in image
            tag = last.split("@")[0].partition(":")[2]
            if not _PINNED.match(image) or not tagged or tag == "latest":
                bad.append(f"{_name(o)} container {c['name']}: image {image!r} is not pinned")
    return bad


def _rules_bad(role: Obj) -> list[str]:
    bad: list[str] = []
    for rule in role.get("rules", []):
        groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
        if "*" in groups or "*" in resources or set(verbs) & _FORBIDDEN_VERBS:
            bad.append(f"{_name(role)}: wildcard or escalating rule {rule}")
        if "secrets" in resources or rule.get("nonResourceURLs"):
            bad.append(f"{_name(role)}: grants {resources or rule.get('nonResourceURLs')}")
    return bad


def user_namespaces(objs: list[Obj]) -> list[str]:
    """Names of the namespaces labelled as user namespaces."""
    return [
        o["metadata"]["name"]
        for o in objs
        if o["kind"] == "Namespace"
        and o["metadata"].get("labels", {}).get("agentic.platform/role") == "user-namespace"
    ]


def check_rbac(objs: list[Obj]) -> list[str]:
    """Nothing cluster-wide beyond reading; the sandbox manager only per user namespace, only its kinds."""
    bad: list[str] = []
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    for role in [o for o in objs if o["kind"] in ("ClusterRole", "Role")]:
        bad += _rules_bad(role)
    for binding in [o for o in objs if o["kind"] == "ClusterRoleBinding"]:
        role = roles.get(binding["roleRef"]["name"])
        if role is None:
            bad.append(f"{_name(binding)}: binds a ClusterRole not in the manifests")
            continue
        for rule in role.get("rules", []):
            if not set(rule.get("verbs", [])) <= READ_VERBS:
                bad.append(f"{_name(binding)}: cluster-wide {rule.get('verbs')} on {rule.get('resources')}")
    manager = roles.get("agentic-sandbox-manager")
    if manager is None:
        return [*bad, "no ClusterRole agentic-sandbox-manager"]
    for rule in manager["rules"]:
        for group in rule.get("apiGroups", []):
            extra = set(rule.get("resources", [])) - ALLOWED_SANDBOX_MANAGER.get(group, set())
            if extra:
                bad.append(f"agentic-sandbox-manager: {sorted(extra)} in group {group!r} is beyond its job")
    users = set(user_namespaces(objs))
    for binding in [o for o in objs if o["kind"] == "RoleBinding"]:
        ns = binding["metadata"].get("namespace")
        if ns not in users:
            bad.append(f"{_name(binding)}: a RoleBinding outside the user namespaces")
    return bad


def _is_default_deny(policy: Obj) -> bool:
    spec = policy["spec"]
    return (
        spec.get("podSelector") == {}
        and set(spec.get("policyTypes", [])) == {"Ingress", "Egress"}
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def _peer_is(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    platform = namespace == {"kubernetes.io/metadata.name": PLATFORM_NAMESPACE}
    return "ipBlock" not in peer and platform and all(pods.get(k) == v for k, v in labels.items())


def check_network_policies(objs: list[Obj]) -> list[str]:
    """Each user namespace and the platform's default-deny; in user namespaces, traffic only from
    the server and only to the egress proxy (so never to the API server, DNS or another namespace)."""
    bad: list[str] = []
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    users = user_namespaces(objs)
    for ns in [*users, PLATFORM_NAMESPACE]:
        if not any(_is_default_deny(p) for p in policies if p["metadata"].get("namespace") == ns):
            bad.append(
                f"namespace {ns}: no default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress)"
            )
    for p in [p for p in policies if p["metadata"].get("namespace") in users]:
        for rule in p["spec"].get("ingress", []):
            peers = rule.get("from", [])
            if not peers or not all(_peer_is(peer, SERVER) for peer in peers):
                bad.append(f"{_name(p)}: ingress from something other than the server pods")
        selected = p["spec"].get("podSelector", {}).get("matchLabels", {})
        if p["spec"].get("egress") and selected.get("agentic.dev/network") != "egress":
            bad.append(f"{_name(p)}: egress allowed to pods whose run was not allowed network")
        for rule in p["spec"].get("egress", []):
            peers = rule.get("to", [])
            if not peers or not all(_peer_is(peer, EGRESS_PROXY) for peer in peers) or not rule.get("ports"):
                bad.append(f"{_name(p)}: egress to something other than the egress proxy's port")
    return bad


def check_user_namespaces(objs: list[Obj]) -> list[str]:
    """Each user namespace: quota, limit range, restricted pod security, a tokenless default
    account, and exactly one binding of the sandbox manager to the server's account."""
    bad: list[str] = []
    users = user_namespaces(objs)
    if not users:
        return ["no user namespace rendered"]
    for ns in users:
        in_ns = [o for o in objs if o["metadata"].get("namespace") == ns]
        namespace = next(o for o in objs if o["kind"] == "Namespace" and o["metadata"]["name"] == ns)
        if namespace["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") != "restricted":
            bad.append(f"namespace {ns}: Pod Security 'restricted' is not enforced")
        quotas = [o for o in in_ns if o["kind"] == "ResourceQuota"]
        needed = {"pods", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
        if not any(needed <= set(q["spec"]["hard"]) for q in quotas):
            bad.append(f"namespace {ns}: no ResourceQuota holding {sorted(needed)}")
        ranges = [
            item
            for o in in_ns
            if o["kind"] == "LimitRange"
            for item in o["spec"]["limits"]
            if item["type"] == "Container"
        ]
        if not any({"cpu", "memory"} <= set(r.get("max", {})) and r.get("default") for r in ranges):
            bad.append(f"namespace {ns}: no LimitRange with container defaults and maximums")
        accounts = [o for o in in_ns if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "default"]
        if not accounts or accounts[0].get("automountServiceAccountToken") is not False:
            bad.append(f"namespace {ns}: the default ServiceAccount may mount a token")
        bindings = [
            o
            for o in in_ns
            if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "agentic-sandbox-manager"
        ]
        expected = [{"kind": "ServiceAccount", "name": "agentic-server", "namespace": PLATFORM_NAMESPACE}]
        if len(bindings) != 1 or bindings[0]["subjects"] != expected:
            bad.append(f"namespace {ns}: needs one RoleBinding of agentic-sandbox-manager to the server")
    return bad


_EGRESS_PROXY_PORT = 3128
# What the egress proxy's own NetworkPolicy must keep it from reaching (the cluster's pods, Services,
# nodes, metadata and, usually, the API server): private, CGNAT, link-local and loopback ranges.
_PRIVATE_V4 = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
)
_PRIVATE_V6 = ("fc00::/7", "fe80::/10", "::1/128")


def _ip_block_bad(block: dict[str, Any]) -> str | None:
    """Why an egress ipBlock lets the proxy reach a private range (None: it does not)."""
    cidr = ipaddress.ip_network(block["cidr"])
    excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
    for private in _PRIVATE_V4 if cidr.version == 4 else _PRIVATE_V6:
        net = ipaddress.ip_network(private)
        if net.overlaps(cidr) and not any(
            net.version == e.version and net.subnet_of(e)
            for e in excepted  # type: ignore[arg-type]
        ):
            return f"{cidr} does not except {net}"
    return None


def _server_port(objs: list[Obj]) -> int | None:
    """The server container's ``http`` port (what Services and NetworkPolicies lead to)."""
    for o in objs:
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "agentic-server":
            for port in o["spec"]["template"]["spec"]["containers"][0].get("ports", []):
                if port.get("name") == "http":
                    return int(port["containerPort"])
    return None


def _to_server_only(rule: dict[str, Any], server_port: int | None) -> bool:
    """A rule to the server's pods (this namespace), on its port only."""
    peers = rule.get("to") or []
    ports = [port.get("port") for port in rule.get("ports", [])]
    return (
        bool(peers)
        and ports == [server_port]
        and all(peer == {"podSelector": {"matchLabels": SERVER}} for peer in peers)
    )


def check_egress_proxy(objs: list[Obj]) -> list[str]:
    """The egress proxy: a Deployment running ``agentic egress-proxy`` on 3128 with probes, a Service in
    front of it, and a NetworkPolicy letting in only user namespaces' network-labelled pods and letting
    out only to non-private addresses, and to the server's pods on the server's port (hosted apps)."""
    pods = [
        o
        for o in objs
        if o["kind"] == "Deployment"
        and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "egress-proxy"
    ]
    if len(pods) != 1:
        return [f"expected one egress-proxy Deployment, found {len(pods)}"]
    deployment = pods[0]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    bad: list[str] = []
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    if container.get("args") != ["egress-proxy"]:
        bad.append(f"{_name(deployment)}: does not run `agentic egress-proxy`")
    if {p["containerPort"] for p in container.get("ports", [])} != {_EGRESS_PROXY_PORT}:
        bad.append(f"{_name(deployment)}: does not listen on {_EGRESS_PROXY_PORT}")
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in container:
            bad.append(f"{_name(deployment)}: no {probe}")
    services = [
        s
        for s in objs
        if s["kind"] == "Service"
        and s["spec"].get("selector")
        and s["spec"]["selector"].items() <= labels.items()
    ]
    if not any(p["port"] == _EGRESS_PROXY_PORT for s in services for p in s["spec"]["ports"]):
        bad.append(f"no Service exposes the egress proxy on {_EGRESS_PROXY_PORT}")
    policies = [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and p["metadata"].get("namespace") == PLATFORM_NAMESPACE
        and p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
        and p["spec"]["podSelector"].get("matchLabels")
    ]
    if not policies:
        return [*bad, "no NetworkPolicy selects the egress proxy's pods"]
    sandbox_peer = {
        "namespaceSelector": {"matchLabels": {"agentic.platform/role": "user-namespace"}},
        "podSelector": {"matchLabels": {"agentic.dev/network": "egress"}},
    }
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            if not rule.get("from") or any(peer != sandbox_peer for peer in rule["from"]):
                bad.append(f"{_name(p)}: ingress from something other than sandbox pods with network")
            if [port.get("port") for port in rule.get("ports", [])] != [_EGRESS_PROXY_PORT]:
                bad.append(f"{_name(p)}: ingress on other ports than {_EGRESS_PROXY_PORT}")
        for rule in p["spec"].get("egress", []):
            if _to_server_only(rule, _server_port(objs)):
                continue
            for peer in rule.get("to") or [{}]:
                if "ipBlock" not in peer:
                    bad.append(
                        f"{_name(p)}: egress to pods or namespaces (only ipBlocks, and the server's port)"
                    )
                elif (why := _ip_block_bad(peer["ipBlock"])) is not None:
                    bad.append(f"{_name(p)}: egress reaches a private range: {why}")
    return bad


def _policies_selecting(objs: list[Obj], labels: dict[str, str]) -> list[Obj]:
    return [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and p["metadata"].get("namespace") == PLATFORM_NAMESPACE
        and p["spec"]["podSelector"].get("matchLabels")
        and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]


def check_apps_route(objs: list[Obj]) -> list[str]:
    """A sandbox's way to its tenant's apps (``<app_id>.apps.internal``): the egress proxy's apps
    upstream is the server's Service, and both NetworkPolicies let the proxy reach the server's port."""
    bad: list[str] = []
    port = _server_port(objs)
    proxies = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "agentic-egress-proxy"
    ]
    servers = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "agentic-server"]
    if len(proxies) != 1 or len(servers) != 1 or port is None:
        return [
            "expected the agentic-egress-proxy and agentic-server Deployments, the server with an http port"
        ]
    env = {e["name"]: e.get("value") for e in proxies[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    upstream = env.get("AGENTIC_EGRESS_PROXY_APPS_UPSTREAM") or ""
    match = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", upstream)
    services = [
        o
        for o in objs
        if match
        and o["kind"] == "Service"
        and (o["metadata"]["name"], o["metadata"].get("namespace")) == match.group(1, 2)
        and o["spec"].get("selector", {}).items() <= SERVER.items()
        and o["spec"].get("selector")
    ]
    leads = [
        p
        for svc in services
        for p in svc["spec"]["ports"]
        if match and p["port"] == int(match.group(3)) and p.get("targetPort") in ("http", port)
    ]
    if not leads:
        bad.append(
            f"the egress proxy's apps upstream {upstream!r} is not the server's Service on its http port"
        )
    server_labels = servers[0]["spec"]["template"]["metadata"]["labels"]
    proxy_labels = proxies[0]["spec"]["template"]["metadata"]["labels"]
    out = [
        r
        for p in _policies_selecting(objs, proxy_labels)
        for r in p["spec"].get("egress", [])
        if _to_server_only(r, port)
    ]
    if not out:
        bad.append(f"no NetworkPolicy lets the egress proxy reach the server's pods on {port}")
    proxy_peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "agentic-egress-proxy"}}}
    into = [
        r
        for p in _policies_selecting(objs, server_labels)
        for r in p["spec"].get("ingress", [])
        if proxy_peer in (r.get("from") or []) and port in [x.get("port") for x in r.get("ports", [])]
    ]
    if not into:
        bad.append(f"no NetworkPolicy lets the egress proxy into the server's pods on {port}")
    return bad
