"""Names and labels of the objects the Kata backend creates.

Every object carries :data:`MANAGED_BY` plus the run's tenant, run id, role and an expiry time
(:data:`TTL_LABEL`, unix seconds) so the reaper can find leftovers by label alone, and so
NetworkPolicies (``infra/``) can select sandbox pods (:data:`ROLE_LABEL`, :data:`NETWORK_LABEL`).
Tenants and run ids come from the platform, but they are still made valid label values and DNS
labels here: a name Kubernetes refuses must not turn into a failed run.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping

__all__ = [
    "APP_LABEL",
    "MANAGED_BY",
    "MANAGED_SELECTOR",
    "NETWORK_LABEL",
    "ROLE_LABEL",
    "RUN_LABEL",
    "TENANT_LABEL",
    "TTL_LABEL",
    "dns_label",
    "label_value",
    "namespace_for",
    "object_labels",
    "run_name",
]

MANAGED_BY = ("app.kubernetes.io/managed-by", "agentic-platform")
MANAGED_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
TENANT_LABEL = "agentic.dev/tenant"
RUN_LABEL = "agentic.dev/run"
APP_LABEL = "agentic.dev/app"
TTL_LABEL = "agentic.dev/expires-at"  # unix seconds; the reaper deletes objects past it
ROLE_LABEL = "agentic.dev/role"  # "run" or "app"
NETWORK_LABEL = "agentic.dev/network"  # "egress" (may reach the egress proxy) or "none"

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def label_value(text: str) -> str:
    """``text`` as a valid label value (63 chars, alphanumerics with ``-_.`` inside).

    A value that had to change gets a hash suffix so two tenants never share one.
    """
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:54].strip("-_.")
    return f"{cleaned}-{_digest(text)}" if cleaned else _digest(text)


def dns_label(text: str, *, max_len: int = 63) -> str:
    """``text`` as a DNS-1123 label (lowercase alphanumerics and ``-``), hash-suffixed when changed."""
    lowered = text.lower()
    if (
        len(lowered) <= max_len
        and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", lowered)
        and lowered == text
    ):
        return text
    cleaned = re.sub(r"[^a-z0-9-]+", "-", lowered).strip("-")[: max_len - 9].strip("-")
    return f"{cleaned}-{_digest(text)}" if cleaned else f"t-{_digest(text)}"


def namespace_for(template: str, tenant: str) -> str:
    """The namespace of ``tenant``'s objects (``template`` may hold ``{tenant}``)."""
    if "{tenant}" not in template:
        return template
    room = 63 - len(template.replace("{tenant}", ""))
    return template.replace("{tenant}", dns_label(tenant, max_len=max(room, 10)))


def run_name(prefix: str = "agentic-run") -> str:
    """A fresh object name (pods, ConfigMaps, claims of one run share it)."""
    return f"{prefix}-{secrets.token_hex(6)}"


def object_labels(
    request_labels: Mapping[str, str], *, role: str, ttl_s: float, network: bool, run: str
) -> dict[str, str]:
    """The labels of every object of one run or app."""
    labels = {
        MANAGED_BY[0]: MANAGED_BY[1],
        TENANT_LABEL: label_value(request_labels.get("tenant", "default")),
        RUN_LABEL: label_value(request_labels.get("run", run)),
        ROLE_LABEL: role,
        NETWORK_LABEL: "egress" if network else "none",
        TTL_LABEL: str(int(time.time() + ttl_s)),
    }
    if "app" in request_labels:
        labels[APP_LABEL] = label_value(request_labels["app"])
    return labels
