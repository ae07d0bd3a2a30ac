"""Warm sandboxes: pre-started, single-use sandboxes whose interpreter waits for its one program.

:class:`~sandbox.warm.pool.WarmPool` stands in front of any backend that can start a sandbox ahead of
its run (:class:`~sandbox.warm.base.Prestartable`: ``local`` and ``gvisor``) and serves each run from
an idle sandbox of the run's key when there is one, else from the backend as usual.
:func:`sandbox.registry.open_sandbox` puts it there when ``SandboxSettings.warm.enabled``.

Modules: ``base`` (what a backend offers the pool), ``keys`` (which sandbox can serve which run),
``demand`` (how many a key wants), ``pool`` (the pool), ``keeper`` (its background refill and
expiry), ``stats`` (what it reports), ``protocol`` (host <-> interpreter),
``stubs`` (the programs a warm sandbox starts: ``python_stub.py``, ``deno_preload.js``; they run
inside the sandbox and import nothing of ours). Importing this package imports no backend.
"""

from __future__ import annotations

from sandbox.warm.base import Prestartable, WarmSandbox, WarmUnusableError
from sandbox.warm.keys import WarmKey
from sandbox.warm.pool import WarmPool
from sandbox.warm.stats import KeyStats, PoolStats

__all__ = [
    "KeyStats",
    "PoolStats",
    "Prestartable",
    "WarmKey",
    "WarmPool",
    "WarmSandbox",
    "WarmUnusableError",
]
