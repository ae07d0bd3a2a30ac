"""The ``kata`` backend in the registry: :class:`sandbox.kata.KataSandbox` in the seam's shape.

The Kata plumbing (:mod:`sandbox.kata`: manifests, the in-pod runner, the watch, the reaper) was
written beside the seam; this module is what the registry builds from the
:class:`~sandbox.config.SandboxSettings` alone: no I/O until :meth:`open`, a preflight that works
unopened (``agentic doctor``, ``/healthz``), library sets as images. Its own settings are read from
``AGENTIC_SANDBOX_KATA_*`` (:class:`sandbox.kata.KataSettings`); the limit maximums are the shared
``AGENTIC_SANDBOX_MAX_LIMITS``. Never run against a live cluster here (see the README).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Self

from sandbox.base import Check, OutputChunk, RunRequest, RunResult
from sandbox.config import SandboxSettings
from sandbox.egress_identity import IdentityError, RunIdentity, verify_identity
from sandbox.errors import SandboxError, SandboxStartError
from sandbox.kata import KataSandbox, KataServiceHandle, KataSettings
from sandbox.kata.browser import KataBrowserHandle
from sandbox.kata.kube import KubeApi
from sandbox.kata.preflight import run_preflight
from sandbox.libsets import LIBRARY_SETS

__all__ = ["KataBackend"]


class KataBackend:
    """Kata pods on Kubernetes, behind the :class:`~sandbox.base.Sandbox` protocol."""

    name = "kata"
    browser_over_cdp = True  # browser sessions are pods reached over CDP (sandbox.kata.browser)

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.kata = KataSettings()  # reads AGENTIC_SANDBOX_KATA_* (no I/O beyond the environment)
        self._box: KataSandbox | None = None

    def verify_egress_identity(self, token: str) -> RunIdentity:
        """The run identity ``token`` names, if this backend signed it (and it has not expired).

        Why here: the server's app proxy accepts a sandbox's identity (forwarded by the cluster's egress
        proxy for ``<app_id>.apps.internal``) exactly when its issuer, this backend, would have signed it.

        Raises:
            IdentityError: no ``AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET``, or a token
                :func:`~sandbox.egress_identity.verify_identity` refuses.
        """
        secret = self.kata.egress_identity_secret
        if secret is None:
            raise IdentityError(
                "run identities are off (AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET is empty)"
            )
        return verify_identity(secret.get_secret_value(), token)

    async def open(self) -> Self:
        """Connect to the cluster and start the reaper (idempotent)."""
        if self._box is None:
            self._box = await KataSandbox.open(self.kata, maximums=self.settings.max_limits)
        return self

    def _opened(self) -> KataSandbox:
        if self._box is None:
            raise SandboxStartError("the kata backend is not open (use `async with` or `await open()`)")
        return self._box

    async def preflight(self) -> list[Check]:
        """API reachable, namespace, RuntimeClass, permissions, images; with a client of its own."""
        try:
            api = self._box.api if self._box is not None else await KubeApi.connect(self.kata)
        except SandboxError as exc:
            detail, _, fix = str(exc).partition("; fix: ")  # the client's message says its own fix
            fix = fix or "set KUBECONFIG / AGENTIC_SANDBOX_KATA_KUBECONFIG, or run inside the cluster"
            return [Check(name="kata.api", ok=False, detail=detail, fix=fix)]
        try:
            found = await run_preflight(api, self.kata)
        finally:
            if self._box is None:
                await api.close()
        return [Check(name=c.name, ok=c.ok, detail=c.detail, fix=c.fix) for c in found]

    async def library_sets(self) -> Mapping[str, str | None]:
        """Every known set -> None when settings give it an image, else the fix."""
        fix = "add its image to AGENTIC_SANDBOX_KATA_IMAGES"
        names = set(LIBRARY_SETS) | set(self.kata.images)
        return {n: None if n in self.kata.images else f"no image for it; fix: {fix}" for n in sorted(names)}

    async def run(self, request: RunRequest) -> RunResult:
        return await self._opened().run(request)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        async for chunk in self._opened().stream(request):
            yield chunk

    async def start_service(self, request: RunRequest, *, port: int) -> KataServiceHandle:
        return await self._opened().start_service(request, port=port)

    async def start_browser(self, request: RunRequest) -> KataBrowserHandle:
        return await self._opened().start_browser(request)

    async def close(self) -> None:
        """Stop the reaper and close the API client; idempotent."""
        box, self._box = self._box, None
        if box is not None:
            await box.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
