"""infra/: each overlay rendered by the real kustomize, every object checked by ``kubernetes-validate``
(strict: an unknown field fails) and by the policies in tests/infra/policies.py, and the server's
Deployment checked against the server's own code (health route, settings names, hand-back time).
"""

from __future__ import annotations

import inspect
from typing import Any

import kubernetes_validate
import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from agents.settings import GraphSettings, ModelSettings
from sandbox.config import SandboxSettings
from sandbox.egress_listener import EgressListenerSettings
from sandbox.kata.settings import DEFAULT_EGRESS_PROXY_URL, KataSettings
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.runs.manager import RunManager
from server.app import create_app
from server.apps.config import AppSettings
from server.config import Settings
from tests.infra import policies
from tests.infra.render import INFRA, OVERLAYS, ROOT, Obj, find, kustomize_command, render
from workspace.config import WorkspaceSettings
from workspace.git_remotes import GitExportSettings

pytestmark = pytest.mark.skipif(kustomize_command() is None, reason="kubectl / kustomize not installed")

# The Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas).
K8S_VERSION = "1.32.0"
SERVER = "Deployment agentic-system/agentic-server"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "RuntimeClass"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    """(overlay name, its rendered objects)."""
    name: str = request.param
    return name, render(INFRA / "overlays" / name)


def test_every_object_passes_kubernetes_validate_strict(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    assert len(objs) > 20
    for o in objs:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field(overlay: tuple[str, list[Obj]]) -> None:
    """Strict mode is on: a misspelt field would not pass silently."""
    deployment = find(overlay[1], "Deployment", "agentic-server")[0]
    broken: dict[str, Any] = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_pod_security(overlay: tuple[str, list[Obj]]) -> None:
    assert policies.check_pod_security(overlay[1], {SERVER}) == []


def test_images_are_pinned(overlay: tuple[str, list[Obj]]) -> None:
    assert policies.check_images(overlay[1]) == []


def test_rbac_least_privilege(overlay: tuple[str, list[Obj]]) -> None:
    assert policies.check_rbac(overlay[1]) == []


def test_network_policies_default_deny(overlay: tuple[str, list[Obj]]) -> None:
    assert policies.check_network_policies(overlay[1]) == []


def test_user_namespaces(overlay: tuple[str, list[Obj]]) -> None:
    assert policies.check_user_namespaces(overlay[1]) == []


def _secret_refs(objs: list[Obj]) -> set[str]:
    names: set[str] = set()
    for o in objs:
        spec = policies.pod_spec(o)
        for c in policies.containers(spec) if spec else []:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        for v in spec.get("volumes", []) if spec else []:
            if "secret" in v:
                names.add(v["secret"]["secretName"])
    for o in find(objs, "Ingress"):
        names |= {tls["secretName"] for tls in o["spec"].get("tls", [])}
    return names


def test_no_secret_is_committed_and_every_referenced_one_is_documented(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objs = overlay
    assert find(objs, "Secret") == []
    readme = (ROOT / "README.md").read_text()
    deployment_section = readme.split("## Deploying on Kubernetes", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in _secret_refs(objs) if f"`{name}`" not in deployment_section)
    assert missing == [], f"secrets the README's deployment section does not explain: {missing}"


def _pod_templates(objs: list[Obj]) -> list[tuple[Obj, dict[str, Any], dict[str, str]]]:
    out = []
    for o in objs:
        spec = policies.pod_spec(o)
        if spec is None:
            continue
        if o["kind"] == "CronJob":
            labels = o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        else:
            labels = o["spec"]["template"]["metadata"]["labels"]
        out.append((o, spec, labels))
    return out


def test_references_resolve(overlay: tuple[str, list[Obj]]) -> None:
    """Namespaces, selectors, ports, claims, accounts and config maps named anywhere exist."""
    _, objs = overlay
    namespaces = {o["metadata"]["name"] for o in find(objs, "Namespace")}
    for o in objs:
        ns = o["metadata"].get("namespace")
        assert (ns is None) == (o["kind"] in CLUSTER_SCOPED), o["metadata"]
        assert ns is None or ns in namespaces, (
            f"{o['kind']} {o['metadata']['name']} in missing namespace {ns}"
        )
    templates = _pod_templates(objs)
    services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in find(objs, "Service")}
    for (ns, name), svc in services.items():
        if name == "agentic-blocked":  # no selector on purpose: see test_hosted_apps_ingress
            assert "selector" not in svc["spec"]
            continue
        selector = svc["spec"]["selector"]
        matches = [
            spec
            for o, spec, labels in templates
            if o["metadata"]["namespace"] == ns and selector.items() <= labels.items()
        ]
        assert matches, f"Service {name} selects no pod template"
        port_names = {
            p.get("name") for spec in matches for c in spec["containers"] for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"Service {name}: no container port {port['targetPort']}"
    for ing in find(objs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = services.get((ing["metadata"]["namespace"], backend["name"]))
                assert svc is not None, f"Ingress {ing['metadata']['name']}: no Service {backend['name']}"
                assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    claims = {
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in find(objs, "PersistentVolumeClaim")
    }
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in find(objs, "ServiceAccount")}
    maps = {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in find(objs, "ConfigMap")}
    for o, spec, _ in templates:
        ns = o["metadata"]["namespace"]
        for v in spec.get("volumes", []):
            if "persistentVolumeClaim" in v:
                assert (ns, v["persistentVolumeClaim"]["claimName"]) in claims, v
        assert (ns, spec.get("serviceAccountName", "default")) in accounts, o["metadata"]["name"]
        for c in spec["containers"]:
            for ref in c.get("envFrom", []):
                assert (ns, ref["configMapRef"]["name"]) in maps, ref


def _env_names(model: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads (prefix + field, and alias choices)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        names.add((prefix + field_name).upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


def test_server_config_names_real_settings(overlay: tuple[str, list[Obj]]) -> None:
    """A misspelt variable would be ignored by the server: every name must be one it reads."""
    _, objs = overlay
    known = set().union(
        *(
            _env_names(m)
            for m in (
                Settings,
                SandboxSettings,
                WorkspaceSettings,
                AgentProtocolSettings,
                AppSettings,
                GitExportSettings,
                GraphSettings,
                ModelSettings,
                KataSettings,  # AGENTIC_SANDBOX_BACKEND=kata: the backend reads its own settings
            )
        )
    )
    config = find(objs, "ConfigMap", "agentic-server")[0]["data"]
    server = find(objs, "Deployment", "agentic-server")[0]["spec"]["template"]["spec"]["containers"][0]
    names = set(config) | {e["name"] for e in server["env"]}
    assert names - known == set()


def test_server_deployment_probes_and_graceful_stop(overlay: tuple[str, list[Obj]]) -> None:
    name, objs = overlay
    deployment = find(objs, "Deployment", "agentic-server")[0]
    spec = deployment["spec"]["template"]["spec"]
    server = spec["containers"][0]
    openapi = create_app(Settings()).openapi()
    get_paths = {path for path, ops in openapi["paths"].items() if "get" in ops}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] in get_paths, f"{probe} names no GET route of the server"
        assert server[probe]["httpGet"]["port"] == "http"
    # The stop: preStop sleep, then AGENTIC_SHUTDOWN_GRACE_S for open requests, then the runs are
    # handed back (RunManager.close's timeout); the kubelet must not kill the pod before that.
    pre_stop = server["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "/bin/sleep"
    config = find(objs, "ConfigMap", "agentic-server")[0]["data"]
    grace = int(config["AGENTIC_SHUTDOWN_GRACE_S"])
    assert Settings(shutdown_grace_s=grace).shutdown_grace_s == grace
    hand_back = inspect.signature(RunManager.close).parameters["timeout"].default
    needed = int(pre_stop[1]) + grace + hand_back
    assert spec["terminationGracePeriodSeconds"] >= needed + 5, (
        spec["terminationGracePeriodSeconds"],
        needed,
    )
    assert spec["serviceAccountName"] == "agentic-server"
    replicas = deployment["spec"]["replicas"]
    if name == "prod":
        assert replicas >= 2
        hpa = find(objs, "HorizontalPodAutoscaler", "agentic-server")[0]
        assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["scaleTargetRef"]["name"] == "agentic-server"
        pdb = find(objs, "PodDisruptionBudget", "agentic-server")[0]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_hosted_apps_ingress(overlay: tuple[str, list[Obj]]) -> None:
    """Apps on hosts of their own (one of them a wildcard), only under /apps, to the server's proxy."""
    from server.apps.manager import APP_PREFIX

    ingress = find(overlay[1], "Ingress", "agentic-apps")[0]
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert any(h.startswith("*.") for h in hosts)
    main = find(overlay[1], "Ingress", "agentic-server")[0]["spec"]["rules"]
    assert not {rule["host"] for rule in main} & set(hosts), "apps must not share the UI's origin"
    # The server's proxy answers /apps on any host: on the UI's host it goes to a Service without
    # endpoints, so an app's scripts never run on the UI's origin (where the UI keeps the API key).
    for rule in main:
        blocked = [p for p in rule["http"]["paths"] if p["path"] == APP_PREFIX]
        assert [p["backend"]["service"]["name"] for p in blocked] == ["agentic-blocked"]
        assert blocked[0]["pathType"] == "Prefix"
    for rule in ingress["spec"]["rules"]:
        assert [p["path"] for p in rule["http"]["paths"]] == [APP_PREFIX]
        assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "agentic-server"
    tls_hosts = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert set(hosts) <= tls_hosts


def test_kata_runtime_class_and_gitea_on_it(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    runtime = find(objs, "RuntimeClass", "kata-qemu")[0]
    assert runtime["handler"] == "kata-qemu"
    assert {"cpu", "memory"} <= set(runtime["overhead"]["podFixed"])
    assert runtime["scheduling"]["nodeSelector"]
    gitea = find(objs, "Deployment", "agentic-gitea")[0]
    assert gitea["spec"]["template"]["spec"]["runtimeClassName"] == "kata-qemu"
    env = {e["name"]: e.get("value") for e in gitea["spec"]["template"]["spec"]["containers"][0]["env"]}
    host = find(objs, "Ingress", "agentic-gitea")[0]["spec"]["rules"][0]["host"]
    assert env["GITEA__server__ROOT_URL"] == f"https://{host}/" and env["GITEA__server__DOMAIN"] == host


def test_postgres_and_backups(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    postgres = find(objs, "StatefulSet", "agentic-postgres")[0]
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert find(objs, "Service", "agentic-postgres")[0]["spec"]["clusterIP"] == "None"
    for name, claim, command in (
        ("agentic-postgres-backup", "agentic-postgres-backups", "pg_dump"),
        ("agentic-gitea-backup", "agentic-gitea-backups", "gitea dump"),
    ):
        job = find(objs, "CronJob", name)[0]
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        ]
        assert claim in claims
        assert command in spec["containers"][0]["args"][0]


def test_egress_proxy(overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster's egress proxy: hardened (test_pod_security), reachable only by sandbox pods with
    network, out only to non-private addresses, at the address the kata backend gives its pods, and
    configured only with settings ``agentic egress-proxy`` reads."""
    name, objs = overlay
    assert policies.check_egress_proxy(objs) == []
    (deployment,) = find(objs, "Deployment", "agentic-egress-proxy")
    assert deployment["spec"]["replicas"] == (1 if name == "dev" else 2)
    assert len(find(objs, "PodDisruptionBudget", "agentic-egress-proxy")) == (0 if name == "dev" else 1)
    (service,) = find(objs, "Service", "agentic-egress-proxy")
    meta, port = service["metadata"], service["spec"]["ports"][0]["port"]
    url = f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local:{port}"
    assert url == DEFAULT_EGRESS_PROXY_URL
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    known = _env_names(EgressListenerSettings) | {"AGENTIC_LOG_FORMAT", "PYTHONDONTWRITEBYTECODE"}
    assert {e["name"] for e in container["env"]} - known == set()
    for variable in container["env"]:  # read as the pod's environment (a secret as `openssl rand -hex 32`)
        monkeypatch.setenv(variable["name"], variable["value"] if "value" in variable else "0f" * 32)
    settings = EgressListenerSettings()
    assert (settings.port, settings.allow_internet, settings.allow) == (port, True, [])
    assert settings.identity_secret is not None
    apps = settings.apps()  # a sandbox's <app_id>.apps.internal goes to the server's Service
    (server,) = find(objs, "Service", "agentic-server")
    assert (
        apps is not None
        and apps.address == f"agentic-server.{server['metadata']['namespace']}.svc.cluster.local:80"
    )
    assert server["spec"]["ports"][0]["port"] == apps.port
    assert policies.check_apps_route(objs) == []


def _secret_env(objs: list[Obj], deployment: str, variable: str) -> dict[str, Any]:
    (obj,) = find(objs, "Deployment", deployment)
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    (entry,) = [e for e in env if e["name"] == variable]
    return dict(entry["valueFrom"]["secretKeyRef"])


def test_the_server_and_the_egress_proxy_share_the_identity_secret(overlay: tuple[str, list[Obj]]) -> None:
    """Run identities signed by the server must verify at the proxy: one Secret key feeds both, and it
    is required (a missing key stops both pods rather than leaving the proxy without identities)."""
    _, objs = overlay
    server = _secret_env(objs, "agentic-server", "AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET")
    proxy = _secret_env(objs, "agentic-egress-proxy", "AGENTIC_EGRESS_PROXY_IDENTITY_SECRET")
    assert server == proxy == {"name": "agentic-server", "key": "egress-identity-secret"}
    assert "AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET" in _env_names(KataSettings)
    assert "AGENTIC_EGRESS_PROXY_IDENTITY_SECRET" in _env_names(EgressListenerSettings)
