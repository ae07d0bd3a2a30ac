"""Every object the Kata backend generates passes its published schema, and carries the hardening."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest

from sandbox.base import Limits, RunRequest
from sandbox.egress_identity import IdentityError, verify_identity
from sandbox.kata import manifests as m
from sandbox.kata.browser import browser_argv
from sandbox.kata.egress import pod_proxy_url, resolve_egress_proxy
from sandbox.kata.job import build_job
from sandbox.kata.naming import (
    MANAGED_BY,
    NETWORK_LABEL,
    TENANT_LABEL,
    TTL_LABEL,
    dns_label,
    label_value,
    namespace_for,
    object_labels,
)
from sandbox.kata.settings import DEFAULT_EGRESS_PROXY_URL, KataSettings
from tests.sandbox.kata.schemas import K8S_VERSIONS, validate_object

LIMITS = Limits(cpus=1.5, memory_mb=300, disk_mb=40, wall_seconds=12.5)
LABELS = object_labels({"tenant": "acme", "run": "r1"}, role="run", ttl_s=600, network=False, run="r1")


def all_objects(settings: KataSettings) -> dict[str, dict[str, Any]]:
    """One of each kind the backend sends (both Ingress flavours)."""
    by_host = settings.model_copy(update={"apps_domain": "apps.example.org", "ingress_class": "nginx"})
    with_proxy_ip = settings.model_copy(update={"egress_proxy_ip": "10.96.0.10"})  # text, never dialled
    return {
        "Pod": m.run_pod("r1", "ns", LABELS, settings, image="img@sha256:1", limits=LIMITS, network=False),
        "Pod (network)": m.run_pod("r1", "ns", LABELS, settings, image="img", limits=LIMITS, network=True),
        "Pod (network, proxy in hostAliases)": m.run_pod(
            "r1", "ns", LABELS, with_proxy_ip, image="img", limits=LIMITS, network=True
        ),
        "Pod (files over exec)": m.run_pod(
            "r1", "ns", LABELS, settings, image="img", limits=LIMITS, network=False, upload=True
        ),
        "Pod (browser)": m.browser_pod("b1", "ns", LABELS, settings, image="img", limits=LIMITS),
        "ConfigMap": m.run_configmap("r1", "ns", LABELS, {"job.json": "e30=", "runner.py": "cHJpbnQ="}),
        "Deployment": m.app_deployment("a1", "ns", LABELS, settings, image="img", limits=LIMITS),
        "Service": m.app_service("a1", "ns", LABELS),
        "Ingress (path)": m.app_ingress("a1", "ns", LABELS, settings, "app-1"),
        "Ingress (host)": m.app_ingress("a1", "ns", LABELS, by_host, "app-1"),
        "SandboxTemplate": m.sandbox_template("p1", "ns", {MANAGED_BY[0]: MANAGED_BY[1]}, settings, "img"),
        "SandboxWarmPool": m.sandbox_warm_pool("p1", "ns", {MANAGED_BY[0]: MANAGED_BY[1]}, settings, "p1"),
        "SandboxClaim": m.sandbox_claim("r1", "ns", LABELS, pool="p1", shutdown_time="2030-01-01T00:00:00Z"),
    }


@pytest.mark.parametrize("kind", list(all_objects(KataSettings())))
def test_every_generated_object_passes_its_schema(kind: str) -> None:
    """kubernetes-validate strict (1.33 and 1.37) for built-in kinds, the CRD schema for the rest."""
    validate_object(all_objects(KataSettings())[kind])


def test_schemas_do_reject_bad_objects() -> None:
    """The checks above can fail: an unknown field, a wrong type, each is refused."""
    objects = all_objects(KataSettings())
    pod = copy.deepcopy(objects["Pod"])
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalaton"] = False  # typo
    for version in K8S_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(pod, version, strict=True)
    claim = copy.deepcopy(objects["SandboxClaim"])
    claim["spec"]["warmPool"] = {"name": "p1"}
    with pytest.raises(jsonschema.ValidationError):
        validate_object(claim)
    template = copy.deepcopy(objects["SandboxTemplate"])
    template["spec"]["podTemplate"]["spec"]["containers"][0]["resources"]["limits"] = "a lot"
    with pytest.raises(jsonschema.ValidationError):
        validate_object(template)


@pytest.mark.parametrize("runtime", ["kata-qemu", "kata-clh", "kata-fc"])
def test_run_pod_is_hardened(runtime: str) -> None:
    settings = KataSettings(runtime_class=runtime, run_as_uid=1234, run_as_gid=2345, deadline_grace_s=20)  # type: ignore[arg-type]
    pod = m.run_pod("r1", "tenant-ns", LABELS, settings, image="img", limits=LIMITS, network=False)
    spec = pod["spec"]
    container = spec["containers"][0]
    security = container["securityContext"]
    assert spec["runtimeClassName"] == runtime
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 13 + 20  # ceil(wall) + grace
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1234
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True and security["runAsUser"] == 1234
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert container["resources"]["limits"]["cpu"] == "1500m"
    assert container["resources"]["limits"]["memory"] == "300Mi"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "40Mi"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "40Mi"}
    assert volumes["input"]["configMap"]["name"] == "r1"
    mounts = {v["mountPath"]: v["name"] for v in container["volumeMounts"]}
    assert mounts == {"/sandbox": "scratch", "/tmp": "tmp", m.INPUT_DIR: "input"}
    assert spec["dnsPolicy"] == "None" and spec["dnsConfig"] == {"nameservers": ["127.0.0.1"]}
    assert not spec["hostNetwork"] and not spec["hostPID"] and not spec["hostIPC"]


def test_network_pod_keeps_cluster_dns_and_is_labelled() -> None:
    labels = object_labels({"tenant": "t"}, role="run", ttl_s=60, network=True, run="r")
    pod = m.run_pod("r", "ns", labels, KataSettings(), image="img", limits=Limits(), network=True)
    assert "dnsPolicy" not in pod["spec"]
    assert pod["metadata"]["labels"][NETWORK_LABEL] == "egress"
    assert LABELS[NETWORK_LABEL] == "none"


def test_network_pods_find_the_proxy_without_dns() -> None:
    """The tenant policies deny DNS, so a proxy named by host name is written into /etc/hosts."""
    settings = KataSettings(egress_proxy_ip="10.96.0.10")
    host = "agentic-egress-proxy.agentic-system.svc.cluster.local"
    for pod in (
        m.run_pod("r", "ns", LABELS, settings, image="img", limits=Limits(), network=True),
        m.browser_pod("b", "ns", LABELS, settings, image="img", limits=Limits()),
    ):
        assert pod["spec"]["hostAliases"] == [{"ip": "10.96.0.10", "hostnames": [host]}]
    deployment = m.app_deployment("a", "ns", LABELS, settings, image="img", limits=Limits())
    assert deployment["spec"]["template"]["spec"]["hostAliases"][0]["hostnames"] == [host]
    no_network = m.run_pod("r", "ns", LABELS, settings, image="img", limits=Limits(), network=False)
    assert "hostAliases" not in no_network["spec"]
    by_ip = KataSettings(egress_proxy_url="http://10.96.0.10:3128", egress_proxy_ip="10.96.0.10")
    pod = m.run_pod("r", "ns", LABELS, by_ip, image="img", limits=Limits(), network=True)
    assert "hostAliases" not in pod["spec"]


async def test_the_backend_resolves_the_proxy_name_once(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = await resolve_egress_proxy(KataSettings(egress_proxy_url="http://localhost:3128"))
    assert resolved.egress_proxy_ip in ("127.0.0.1", "::1")  # /etc/hosts: no packet leaves
    given = KataSettings(egress_proxy_url="http://localhost:3128", egress_proxy_ip="10.96.0.10")
    assert (await resolve_egress_proxy(given)).egress_proxy_ip == "10.96.0.10"  # the operator's wins

    async def no_answer(*args: object, **kwargs: object) -> object:  # a resolver stub: no DNS query
        raise OSError("Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_answer)
    unknown = KataSettings(egress_proxy_url="http://agentic-egress-proxy.example:3128")
    assert (await resolve_egress_proxy(unknown)).egress_proxy_ip is None  # logged, left to the pod


def test_app_objects_fit_together() -> None:
    settings = KataSettings(apps_host="platform.example.org")
    deployment = m.app_deployment("a1", "ns", LABELS, settings, image="img", limits=LIMITS)
    service = m.app_service("a1", "ns", LABELS)
    ingress = m.app_ingress("a1", "ns", LABELS, settings, "app-1")
    template = deployment["spec"]["template"]
    assert set(service["spec"]["selector"].items()) <= set(template["metadata"]["labels"].items())
    assert deployment["spec"]["replicas"] == 1 and template["spec"]["restartPolicy"] == "Always"
    assert "activeDeadlineSeconds" not in template["spec"]
    port = template["spec"]["containers"][0]["ports"][0]
    assert port["containerPort"] == m.RELAY_PORT and service["spec"]["ports"][0]["targetPort"] == port["name"]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "platform.example.org"
    assert rule["http"]["paths"][0]["path"] == "/apps/app-1/"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service["metadata"]["name"]


def test_warm_pool_template_denies_all_traffic() -> None:
    template = m.sandbox_template("p1", "ns", {}, KataSettings(warm_pool_memory_mb=768), "img")
    assert template["spec"]["networkPolicyManagement"] == "Managed"
    assert template["spec"]["networkPolicy"] == {"ingress": [], "egress": []}
    pod_spec = template["spec"]["podTemplate"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["containers"][0]["resources"]["limits"]["memory"] == "768Mi"


@pytest.mark.parametrize(
    "tenant",
    ["acme", "Acme Corp!", "x" * 100, "ünïcode", "-leading-dash", "a.b_c"],
)
def test_tenant_names_become_valid_labels_and_namespaces(tenant: str) -> None:
    value = label_value(tenant)
    namespace = namespace_for("agentic-u-{tenant}", tenant)
    assert len(value) <= 63 and len(namespace) <= 63
    pod = m.run_pod(
        "r",
        namespace,
        object_labels({"tenant": tenant}, role="run", ttl_s=1, network=False, run="r"),
        KataSettings(),
        image="img",
        limits=Limits(),
        network=False,
    )
    validate_object(pod)
    assert pod["metadata"]["labels"][TENANT_LABEL] == value
    assert namespace.startswith("agentic-u-")
    assert dns_label(namespace) == namespace  # already a DNS label: unchanged


def test_distinct_tenants_never_share_a_namespace() -> None:
    assert namespace_for("u-{tenant}", "Acme") != namespace_for("u-{tenant}", "acme")
    assert label_value("a b") != label_value("a-b")


def test_labels_carry_tenant_run_and_expiry() -> None:
    import time

    labels = object_labels({"tenant": "t1", "run": "run-9"}, role="run", ttl_s=300, network=False, run="x")
    assert labels[TENANT_LABEL] == "t1" and labels["agentic.dev/run"] == "run-9"
    assert abs(int(labels[TTL_LABEL]) - (time.time() + 300)) < 5
    assert labels[MANAGED_BY[0]] == MANAGED_BY[1]


def test_settings_refuse_bad_namespaces() -> None:
    with pytest.raises(ValueError, match="DNS label"):
        KataSettings(namespace="Bad_Namespace")
    assert KataSettings(namespace="u-{tenant}").namespace == "u-{tenant}"


def test_proxy_variables_are_the_local_backends() -> None:
    """A run with network sees the same proxy variables on every backend (only the URL differs)."""
    from sandbox.commands import proxy_env as local_proxy_env
    from sandbox.kata.job import proxy_env

    local = local_proxy_env()
    kata = proxy_env("http://egress.example:3128")
    assert set(kata) == set(local)
    assert {k for k, v in local.items() if v} == {k for k, v in kata.items() if v}


@pytest.mark.parametrize("secret", ["", "z" * 40])
async def test_the_proxy_credential_is_carried_only_with_the_secret(secret: str) -> None:
    """Each pod kind with network: its job (in the ConfigMap, schema-checked) carries a signed proxy
    URL only when the identity secret is set; the secret itself is in no object; the pods are the
    same either way; a browser's Chromium goes through the runner's relay only with a credential."""
    settings = KataSettings(egress_identity_secret=secret)  # type: ignore[arg-type]
    labels = {"tenant": "acme", "run": "r1"}
    request = RunRequest(files={"a.py": "pass"}, language="python", entry="a.py", network=True, labels=labels)
    url = pod_proxy_url(settings, labels, run="r1", life_s=LIMITS.wall_seconds)
    assert url is not None
    argv = browser_argv(settings, ("chromium",), url)
    job = await build_job(
        request, python="/usr/bin/python3", max_bytes=1 << 20, egress_proxy_url=url, relay_egress=True
    )
    objects = [
        m.run_configmap("r1", "ns", LABELS, job.configmap_data(b"print()")),
        m.run_pod("r1", "ns", LABELS, settings, image="img", limits=LIMITS, network=True),
        m.browser_pod("b1", "ns", LABELS, settings, image="img", limits=LIMITS),
        m.app_deployment("a1", "ns", LABELS, settings, image="img", limits=LIMITS),
    ]
    for obj in objects:
        validate_object(obj)
    text = json.dumps(objects) + job.spec.decode()
    assert "z" * 40 not in text and base64.b64encode(b"z" * 40).decode() not in text
    assert "agentic:" not in json.dumps(objects[1:])  # the pods themselves never carry it
    env = json.loads(job.spec)["env"]
    spec = json.loads(job.spec)
    if not secret:
        assert url == env["HTTP_PROXY"] == env["https_proxy"] == DEFAULT_EGRESS_PROXY_URL
        assert "egress_relay" not in spec and f"--proxy-server={DEFAULT_EGRESS_PROXY_URL}" in argv
        return
    parts = urlsplit(env["HTTP_PROXY"])
    assert (parts.username, parts.hostname, parts.port) == (
        "agentic",
        urlsplit(DEFAULT_EGRESS_PROXY_URL).hostname,
        3128,
    )
    assert parts.password is not None
    identity = verify_identity(secret, parts.password)
    assert (identity.tenant, identity.run) == ("acme", "r1")
    assert identity.expires_at <= time.time() + LIMITS.wall_seconds + 120 + 30 + 1  # start + grace
    assert spec["egress_relay"]["proxy"] == [parts.hostname, 3128]
    assert "--proxy-server=http://127.0.0.1:13128" in argv
    with pytest.raises(IdentityError, match="bad signature"):  # the token does not outlive a new secret
        verify_identity("y" * 40, parts.password)
