"""The ``kata`` backend: runs as Kubernetes pods in Kata Containers VMs (see :mod:`sandbox.kata.sandbox`).

Importing this package loads the ``kubernetes`` client; ``sandbox`` itself never imports it, so
hosts that only use the local backends do not pay for it.
"""

from __future__ import annotations

from sandbox.kata.apps import KataServiceHandle
from sandbox.kata.browser import KataBrowserHandle
from sandbox.kata.preflight import PreflightCheck
from sandbox.kata.sandbox import KataSandbox
from sandbox.kata.settings import KataSettings

__all__ = ["KataBrowserHandle", "KataSandbox", "KataServiceHandle", "KataSettings", "PreflightCheck"]
