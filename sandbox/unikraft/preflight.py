"""What ``agentic doctor`` and ``/healthz`` ask of the Unikraft backend, each answer with a fix hint.

Checks, in order: a token is set; the control plane answers with it (and, for a metro given by
code, lists that metro); the metro's platform API answers with it (its quota usage in the detail);
each library set's image and the sandbox plugin's image are in the registry; the operator has
accepted that instances reach the internet directly. A failed earlier check makes the later API
checks report what they could not ask rather than pile up the same network error.
"""

from __future__ import annotations

from unikraft_cloud import UnikraftCloudError

from sandbox.base import Check
from sandbox.unikraft.instances import InstanceControl

__all__ = ["run_preflight"]


def _failed(name: str, exc: UnikraftCloudError, fix: str) -> Check:
    status = f"HTTP {exc.status}" if exc.status else exc.kind
    return Check(name=name, ok=False, detail=f"{status}: {exc}", fix=fix)


async def run_preflight(control: InstanceControl) -> list[Check]:
    """Run every check (never raises for an API failure: it becomes a failed check)."""
    settings = control.settings
    client = control.client
    checks: list[Check] = []
    token_fix = "set AGENTIC_SANDBOX_UNIKRAFT_TOKEN or UKC_TOKEN to a Unikraft Cloud API token"
    has_token = bool(settings.token_value())
    detail = "a token is set" if has_token else "no token set"
    checks.append(Check(name="token", ok=has_token, detail=detail, fix=token_fix))
    reachable = False
    if has_token:
        try:
            res = await client.api.controlplane.metros.list_metros()
            metros = (res.data.metros if res.data is not None else None) or []
            codes = sorted({(m.iata_code or m.name or "").lower() for m in metros} - {""})
            wanted = settings.metro.lower()
            ok = bool(settings.base_url) or wanted in codes
            checks.append(
                Check(
                    name="api",
                    ok=ok,
                    detail=f"control plane answers; metros: {', '.join(codes) or 'none'}",
                    fix="" if ok else f"set AGENTIC_SANDBOX_UNIKRAFT_METRO to one of: {', '.join(codes)}",
                )
            )
        except UnikraftCloudError as exc:
            checks.append(
                _failed(
                    "api",
                    exc,
                    f"check the token and that the control plane is reachable; {token_fix}",
                )
            )
        try:
            quotas = await client.users.quotas()
            used = quotas[0].used if quotas else None
            hard = quotas[0].hard if quotas else None
            detail = f"{settings.platform_url} answers"
            if used is not None and hard is not None:
                detail += (
                    f"; live memory {used.live_memory_mb or 0}/{hard.live_memory_mb or '?'} MB, "
                    f"instances {used.instances or 0}/{hard.instances or '?'}"
                )
            checks.append(Check(name="metro", ok=True, detail=detail))
            reachable = True
        except UnikraftCloudError as exc:
            checks.append(
                _failed(
                    "metro",
                    exc,
                    f"check AGENTIC_SANDBOX_UNIKRAFT_METRO / _BASE_URL ({settings.platform_url}), the token",
                )
            )
    images = {f"image {name}": ref for name, ref in sorted(settings.images.items())}
    images["plugin image"] = settings.plugin_image
    if not settings.images:
        checks.append(
            Check(
                name="images",
                ok=False,
                detail="no library set has an image",
                fix='set AGENTIC_SANDBOX_UNIKRAFT_IMAGES=\'{"base": "<org>/<image>:<tag>"}\'',
            )
        )
    for label, ref in images.items():
        name = label
        if not reachable:
            fix = "fix the API checks above first"
            checks.append(Check(name=name, ok=False, detail=f"{ref}: not checked (API unreachable)", fix=fix))
            continue
        try:
            found = await client.images.find(ref)
        except (UnikraftCloudError, ValueError) as exc:
            checks.append(Check(name=name, ok=False, detail=f"{ref}: {exc}", fix="check the reference"))
            continue
        checks.append(
            Check(
                name=name,
                ok=found is not None,
                detail=f"{ref}: {'in the registry' if found is not None else 'not in the registry'}",
                fix="" if found is not None else f"push {ref} (kraft pkg --push) or change the setting",
            )
        )
    checks.append(
        Check(
            name="egress",
            ok=settings.allow_direct_egress,
            detail=(
                "accepted: instances reach the internet directly (the egress proxy cannot filter them)"
                if settings.allow_direct_egress
                else "instances would reach the internet directly, past the egress proxy; runs are refused"
            ),
            fix=""
            if settings.allow_direct_egress
            else "set AGENTIC_SANDBOX_UNIKRAFT_ALLOW_DIRECT_EGRESS=true to accept",
        )
    )
    return checks
