"""Delete our instances whose time is up: leftovers of crashed servers, expired apps, stale pools.

Why by expiry tag and not by "not mine": several server processes share one account, and each
instance says itself when it may go (``<prefix>-expires=<unix time>``, set at creation: a run's
boot + wall time + grace, an app's TTL, a pool entry's TTL). So any process may reap any of ours,
and never one still in use. Instances of the account without our prefix tag are never touched;
ours without an expiry tag (made by hand) are left alone and logged.
"""

from __future__ import annotations

import asyncio
import logging

from sandbox.errors import SandboxError
from sandbox.unikraft.instances import InstanceControl, expiry_of

__all__ = ["reap_expired", "reap_forever"]

logger = logging.getLogger(__name__)


async def reap_expired(control: InstanceControl) -> list[str]:
    """Delete every instance of ours whose expiry passed; return their names.

    Raises:
        SandboxStartError, SandboxBusyError: listing failed (deletions retry and log on their own).
    """
    prefix = control.settings.name_prefix
    now = control.now()
    reaped: list[str] = []
    for instance in await control.list_ours():
        expires = expiry_of(instance, prefix)
        if expires is None:
            logger.info("unikraft: %s carries our tag but no expiry; left alone", instance.name)
            continue
        if expires <= now and await control.delete(instance.uuid):
            reaped.append(instance.name or instance.uuid or "?")
    if reaped:
        logger.info("unikraft: reaped %d expired instance(s): %s", len(reaped), ", ".join(reaped))
    return reaped


async def reap_forever(control: InstanceControl, interval_s: float) -> None:
    """Reap now and then every ``interval_s`` seconds (0: once) until cancelled; failures are logged."""
    while True:
        try:
            await reap_expired(control)
        except SandboxError as exc:
            logger.warning("unikraft: reaping failed: %s", exc)
        if interval_s <= 0:
            return
        await asyncio.sleep(interval_s)
