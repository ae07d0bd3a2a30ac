"""Unikraft Cloud through its official SDK: the plumbing of the ``unikraft`` backend.

The backend is :mod:`sandbox.backends.unikraft`; this package is to it what :mod:`sandbox.host` is
to the local backends: the request checked and planned (``request``), instances made, started, read
and deleted (``instances``), a command run through the sandbox plugin (``execution``), a pool of
stopped instances (``pool``), the reaper of expired ones (``reaper``), the preflight checks
(``preflight``) and the hosted-app handle (``service``). Import cost: the SDK (httpx, pydantic
models) loads with these modules; only the registry's ``unikraft`` entry imports them. The settings
are ``sandbox.config.UnikraftSettings``.
"""

from __future__ import annotations

from sandbox.unikraft.reaper import reap_expired
from sandbox.unikraft.service import UnikraftServiceHandle

__all__ = ["UnikraftServiceHandle", "reap_expired"]
