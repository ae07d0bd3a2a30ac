"""The Kubernetes objects of a run or a hosted app, as plain JSON dicts (what the API server takes).

Pure functions, no I/O: the tests pass every object built here through ``kubernetes-validate``
(strict) and the agent-sandbox objects through the CRDs' own schemas.

Every sandbox pod gets the same hardening (:func:`sandbox_pod_spec`): the Kata runtime class, no
service-account token, no service links, a non-root uid, no privilege escalation, every capability
dropped, seccomp ``RuntimeDefault``, a read-only root filesystem, and two size-limited ``emptyDir``
volumes (scratch at ``/sandbox``, ``/tmp``); requests equal limits (Guaranteed QoS). A pod without
network gets no DNS either (``dnsPolicy: None``, nameserver 127.0.0.1); the egress itself is held
by the NetworkPolicies in ``infra/``, which select pods by :data:`~sandbox.kata.naming.NETWORK_LABEL`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox.base import Limits
from sandbox.kata.settings import KataSettings

__all__ = [
    "AGENT_SANDBOX_GROUP",
    "AGENT_SANDBOX_VERSION",
    "APP_SERVICE_PORT",
    "CONTAINER",
    "IDLE_COMMAND",
    "INPUT_DIR",
    "RELAY_PORT",
    "SCRATCH",
    "UPLOAD_DIR",
    "app_deployment",
    "app_ingress",
    "app_service",
    "browser_pod",
    "exec_command",
    "run_configmap",
    "run_pod",
    "sandbox_claim",
    "sandbox_pod_spec",
    "sandbox_template",
    "sandbox_warm_pool",
    "tmp_mb",
    "upload_command",
]

Json = dict[str, Any]

SCRATCH = "/sandbox"  # the run's scratch emptyDir: work/ (cwd, $HOME) and tmp/ ($TMPDIR)
INPUT_DIR = "/agentic/in"  # the run's ConfigMap: runner.py, job.json, files.tar.gz, stdin
RELAY_PORT = 18080  # a hosted app's pod port: the runner relays it to the app on 127.0.0.1:$PORT
APP_SERVICE_PORT = 80  # a hosted app's Service port (-> the pod's RELAY_PORT, named "http")
AGENT_SANDBOX_GROUP = "extensions.agents.x-k8s.io"
AGENT_SANDBOX_VERSION = "v1beta1"
CONTAINER = "sandbox"  # the one container of every sandbox pod (exec names it)
UPLOAD_DIR = f"{SCRATCH}/.agentic-in"  # where an upload lands (exec + tar path), in the scratch emptyDir
# A warm-pool pod idles until a run is exec'd into it (pid 1 exits on SIGTERM, so deletion is quick).
IDLE_COMMAND = (
    "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "while True:\n    time.sleep(3600)\n"
)
# An exec'd run first receives the runner's source on stdin, then the job (see runner.write_blobs).
_BOOTSTRAP = (
    "import sys\nn = int(sys.stdin.buffer.readline())\nsrc = b''\nwhile len(src) < n:\n"
    "    more = sys.stdin.buffer.read(n - len(src))\n    if not more:\n        sys.exit(125)\n"
    "    src += more\nsys.argv = ['runner.py'] + sys.argv[1:]\n"
    "exec(compile(src, 'runner.py', 'exec'), {'__name__': '__main__'})\n"
)
# A bare pod whose files come over exec waits for them (the upload renames its file into place when
# complete), makes the file its stdin, then runs the bootstrap above: same payload as a warm pod.
_WAIT_FOR_UPLOAD = (
    "import os, sys, time\n_path, _end = {path!r}, time.monotonic() + {wait_s}\n"
    "while not os.path.exists(_path):\n    if time.monotonic() > _end:\n"
    "        sys.stdout.write('@! no files arrived within {wait_s} s\\n')\n        sys.exit(125)\n"
    "    time.sleep(0.05)\n"
    "_fd = os.open(_path, os.O_RDONLY)\nos.dup2(_fd, 0)\nos.close(_fd)\nos.unlink(_path)\n"
)
# What the upload exec runs: a length line, then that many bytes, into UPLOAD_DIR/job (atomically).
_RECEIVER = (
    "import os, sys\nd = sys.argv[1]\nos.makedirs(d, mode=0o700, exist_ok=True)\n"
    "n = int(sys.stdin.buffer.readline())\npart, left = os.path.join(d, 'job.part'), n\n"
    "with open(part, 'wb') as f:\n    while left:\n"
    "        data = sys.stdin.buffer.read(min(left, 1 << 20))\n        if not data:\n"
    "            sys.exit('the upload ended after %d of %d bytes' % (n - left, n))\n"
    "        f.write(data)\n        left -= len(data)\n"
    "os.rename(part, os.path.join(d, 'job'))\n"
)


def tmp_mb(limits: Limits) -> int:
    """Size of ``/tmp`` (``$TMPDIR`` is in scratch; /tmp is for programs that hard-code it)."""
    return min(limits.disk_mb, 64)


def _resources(limits: Limits) -> Json:
    amounts = {
        "cpu": f"{max(1, math.ceil(limits.cpus * 1000))}m",
        "memory": f"{limits.memory_mb}Mi",
        # scratch + /tmp + room for the container log (the runner caps what it writes)
        "ephemeral-storage": f"{limits.disk_mb + tmp_mb(limits) + 64}Mi",
    }
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _container_security(settings: KataSettings) -> Json:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_uid,
        "runAsGroup": settings.run_as_gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def sandbox_pod_spec(
    settings: KataSettings,
    *,
    image: str,
    command: list[str],
    limits: Limits,
    network: bool,
    configmap: str | None = None,
    restart_policy: str = "Never",
    ports: list[Json] | None = None,
    readiness_port: int | None = None,
) -> Json:
    """The hardened pod spec every sandbox pod shares (bare run pods, apps, warm pools)."""
    mounts: list[Json] = [
        {"name": "scratch", "mountPath": SCRATCH},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[Json] = [
        {"name": "scratch", "emptyDir": {"sizeLimit": f"{limits.disk_mb}Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": f"{tmp_mb(limits)}Mi"}},
    ]
    if configmap is not None:
        mounts.append({"name": "input", "mountPath": INPUT_DIR, "readOnly": True})
        volumes.append({"name": "input", "configMap": {"name": configmap, "defaultMode": 0o444}})
    container: Json = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "workingDir": SCRATCH,
        "resources": _resources(limits),
        "securityContext": _container_security(settings),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if ports:
        container["ports"] = ports
    if readiness_port is not None:
        container["readinessProbe"] = {
            "tcpSocket": {"port": readiness_port},
            "periodSeconds": 2,
            "failureThreshold": 1,
        }
    spec: Json = {
        "runtimeClassName": settings.runtime_class,
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_uid,
            "runAsGroup": settings.run_as_gid,
            "fsGroup": settings.run_as_gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if not network:
        spec["dnsPolicy"] = "None"
        spec["dnsConfig"] = {"nameservers": ["127.0.0.1"]}
    elif aliases := egress_host_aliases(settings):
        spec["hostAliases"] = aliases  # no DNS by policy: the proxy's name comes from /etc/hosts
    return spec


def egress_host_aliases(settings: KataSettings) -> list[Json]:
    """``hostAliases`` naming the egress proxy's host for a pod with network (none when it is an IP)."""
    if not settings.egress_proxy_url or not settings.egress_proxy_ip:
        return []
    host = urlsplit(settings.egress_proxy_url).hostname
    if not host or _is_ip(host):
        return []
    return [{"ip": settings.egress_proxy_ip, "hostnames": [host]}]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _runner_command(settings: KataSettings) -> list[str]:
    runner = f"{INPUT_DIR}/runner.py"
    return [settings.python_path, "-I", "-S", runner, "--in", INPUT_DIR, "--scratch", SCRATCH]


def exec_command(settings: KataSettings) -> list[str]:
    """What an exec into a warm-pool pod runs: a bootstrap that reads the runner from stdin."""
    return [settings.python_path, "-I", "-S", "-c", _BOOTSTRAP, "--stdin", "--scratch", SCRATCH]


def _waiting_command(settings: KataSettings) -> list[str]:
    """A bare pod's command when its files come over exec: wait for the upload, then run it."""
    wait = _WAIT_FOR_UPLOAD.format(path=f"{UPLOAD_DIR}/job", wait_s=math.ceil(settings.start_timeout_s))
    return [settings.python_path, "-I", "-S", "-c", wait + _BOOTSTRAP, "--stdin", "--scratch", SCRATCH]


def upload_command(settings: KataSettings) -> list[str]:
    """What the upload exec runs: the receiver that writes the payload into :data:`UPLOAD_DIR`."""
    return [settings.python_path, "-I", "-S", "-c", _RECEIVER, UPLOAD_DIR]


def _meta(name: str, namespace: str, labels: Mapping[str, str]) -> Json:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def run_configmap(name: str, namespace: str, labels: Mapping[str, str], data: Mapping[str, str]) -> Json:
    """The run's input (``data``: key -> base64 text): runner, job, files, stdin. Immutable."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, labels),
        "immutable": True,
        "binaryData": dict(data),
    }


def run_pod(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    settings: KataSettings,
    *,
    image: str,
    limits: Limits,
    network: bool,
    service: bool = False,
    upload: bool = False,
) -> Json:
    """One run's pod: the runner reads the ConfigMap of the same name; the deadline is the backstop.

    ``upload``: no ConfigMap; the runner and the job come over exec (:func:`upload_command`) and
    the pod waits for them (at most ``start_timeout_s``).
    """
    spec = sandbox_pod_spec(
        settings,
        image=image,
        command=_waiting_command(settings) if upload else _runner_command(settings),
        limits=limits,
        network=network,
        configmap=None if upload else name,
    )
    if not service:
        spec["activeDeadlineSeconds"] = _deadline_s(limits, settings)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, namespace, labels), "spec": spec}


def _deadline_s(limits: Limits, settings: KataSettings) -> int:
    """The pod's backstop: the run's (or session's) wall time plus the grace for pull and start."""
    return math.ceil(limits.wall_seconds) + settings.deadline_grace_s


def browser_pod(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    settings: KataSettings,
    *,
    image: str,
    limits: Limits,
) -> Json:
    """A browser session: the runner (service mode) starts Chromium and relays the pod's port
    :data:`RELAY_PORT` to its DevTools port; the deadline (session life + grace) is the backstop."""
    spec = sandbox_pod_spec(
        settings,
        image=image,
        command=_runner_command(settings),
        limits=limits,
        network=True,
        configmap=name,
        ports=[{"name": "cdp", "containerPort": RELAY_PORT, "protocol": "TCP"}],
        readiness_port=RELAY_PORT,
    )
    spec["activeDeadlineSeconds"] = _deadline_s(limits, settings)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, namespace, labels), "spec": spec}


def app_deployment(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    settings: KataSettings,
    *,
    image: str,
    limits: Limits,
) -> Json:
    """A hosted app: one replica of the hardened pod, ready once the relay's port answers."""
    selector = {"agentic.dev/app-object": name}
    spec = sandbox_pod_spec(
        settings,
        image=image,
        command=_runner_command(settings),
        limits=limits,
        network=True,
        configmap=name,
        restart_policy="Always",
        ports=[{"name": "http", "containerPort": RELAY_PORT, "protocol": "TCP"}],
        readiness_port=RELAY_PORT,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": {**labels, **selector}}, "spec": spec},
        },
    }


def app_service(name: str, namespace: str, labels: Mapping[str, str]) -> Json:
    """ClusterIP Service in front of the app's pod (:data:`APP_SERVICE_PORT` -> the relay)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {"agentic.dev/app-object": name},
            "ports": [{"name": "http", "port": APP_SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def app_ingress(
    name: str, namespace: str, labels: Mapping[str, str], settings: KataSettings, app_id: str
) -> Json:
    """Ingress by path ``/apps/{id}/`` (on ``apps_host``) or by host ``{id}.{apps_domain}``."""
    backend = {"service": {"name": name, "port": {"name": "http"}}}
    if settings.apps_domain:
        rule: Json = {
            "host": f"{app_id}.{settings.apps_domain}",
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
        }
    else:
        rule = {"http": {"paths": [{"path": f"/apps/{app_id}/", "pathType": "Prefix", "backend": backend}]}}
        if settings.apps_host:
            rule["host"] = settings.apps_host
    spec: Json = {"rules": [rule]}
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(name, namespace, labels),
        "spec": spec,
    }


def _warm_limits(settings: KataSettings) -> Limits:
    return Limits(
        cpus=settings.warm_pool_cpus,
        memory_mb=settings.warm_pool_memory_mb,
        disk_mb=settings.warm_pool_disk_mb,
    )


def sandbox_template(
    name: str, namespace: str, labels: Mapping[str, str], settings: KataSettings, image: str
) -> Json:
    """agent-sandbox ``SandboxTemplate``: the idle hardened pod; its NetworkPolicy denies all traffic."""
    spec = sandbox_pod_spec(
        settings,
        image=image,
        command=[settings.python_path, "-I", "-S", "-c", IDLE_COMMAND],
        limits=_warm_limits(settings),
        network=False,
        restart_policy="Never",
    )
    return {
        "apiVersion": f"{AGENT_SANDBOX_GROUP}/{AGENT_SANDBOX_VERSION}",
        "kind": "SandboxTemplate",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "podTemplate": {"metadata": {"labels": dict(labels)}, "spec": spec},
            # Managed with empty rule lists = deny all ingress and egress (runs reach nothing).
            "networkPolicyManagement": "Managed",
            "networkPolicy": {"ingress": [], "egress": []},
            "envVarsInjectionPolicy": "Disallowed",
            "volumeClaimTemplatesPolicy": "Disallowed",
        },
    }


def sandbox_warm_pool(
    name: str, namespace: str, labels: Mapping[str, str], settings: KataSettings, template: str
) -> Json:
    """agent-sandbox ``SandboxWarmPool`` of ``warm_pool_size`` idle pods from ``template``."""
    return {
        "apiVersion": f"{AGENT_SANDBOX_GROUP}/{AGENT_SANDBOX_VERSION}",
        "kind": "SandboxWarmPool",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": settings.warm_pool_size,
            "sandboxTemplateRef": {"name": template},
            "updateStrategy": {"type": "Recreate"},
        },
    }


def sandbox_claim(
    name: str, namespace: str, labels: Mapping[str, str], *, pool: str, shutdown_time: str
) -> Json:
    """agent-sandbox ``SandboxClaim`` on ``pool``; its controller deletes it at ``shutdown_time``."""
    return {
        "apiVersion": f"{AGENT_SANDBOX_GROUP}/{AGENT_SANDBOX_VERSION}",
        "kind": "SandboxClaim",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "warmPoolRef": {"name": pool},
            "lifecycle": {"shutdownTime": shutdown_time, "shutdownPolicy": "Delete"},
            "additionalPodMetadata": {"labels": dict(labels)},
        },
    }
