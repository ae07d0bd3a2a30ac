"""Library sets: the named environments a run can ask for, the same on every backend.

A set is a name, a description, the exact pins of its packages (the whole closure, so every build of
it is the same), the environment a run gets with it, and a check that the build works. Where a set
comes from is the backend's business: the host backends bind a directory built into the data dir
(:mod:`sandbox.host.libset_dirs`), a remote backend will run an image built from the same pins.
Which sets a backend can run now, it says itself (``Sandbox.library_sets``);
:func:`require_library_set` turns its answer into the error a caller reports.

Sets: ``base`` (stdlib only, nothing to build) and ``datascience`` (numpy, pandas, matplotlib with
the Agg backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.base import Sandbox
from sandbox.errors import SandboxUnavailableError, UnknownLibrarySetError

__all__ = [
    "LIBRARY_SETS",
    "MOUNT_POINT",
    "LibrarySetSpec",
    "library_set_spec",
    "ready_library_sets",
    "require_library_set",
]

MOUNT_POINT = "/opt/libset"
"""Where a set's packages appear inside a sandbox (on ``PYTHONPATH`` through the set's env)."""


@dataclass(frozen=True, kw_only=True)
class LibrarySetSpec:
    """How to build one set: exact pins (the whole dependency closure) and its run-time env."""

    name: str
    description: str
    requirements: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    verify: str = ""  # Python code run with the sandbox interpreter after the build; must exit 0
    # Modules a warm sandbox's interpreter imports before its run (sandbox.warm): what most runs
    # of the set import, with no side effect a program could tell apart from importing it itself.
    preload: tuple[str, ...] = ()


_DATASCIENCE_VERIFY = """
import os, sys, tempfile
import numpy, pandas, matplotlib
import matplotlib.pyplot as plt
assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
frame = pandas.DataFrame({"x": numpy.arange(5), "y": numpy.arange(5) ** 2})
fig, ax = plt.subplots()
frame.plot(x="x", y="y", ax=ax)
out = os.path.join(tempfile.mkdtemp(), "check.png")
fig.savefig(out)
with open(out, "rb") as fh:
    assert fh.read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
print(sys.version.split()[0], numpy.__version__, pandas.__version__, matplotlib.__version__)
"""

LIBRARY_SETS: dict[str, LibrarySetSpec] = {
    # No preload: what a stdlib run imports varies (only 21 of HumanEval's 164 import ``typing``,
    # which costs ~8 ms of CPU), and importing what a run does not use costs every run.
    "base": LibrarySetSpec(name="base", description="Python standard library only"),
    "datascience": LibrarySetSpec(
        name="datascience",
        description="numpy, pandas, matplotlib (Agg backend)",
        # The whole closure is pinned so a rebuild on another machine gives the same set.
        requirements=(
            "numpy==2.3.5",
            "pandas==2.3.3",
            "matplotlib==3.10.8",
            "contourpy==1.3.3",
            "cycler==0.12.1",
            "fonttools==4.68.0",
            "kiwisolver==1.5.1",
            "packaging==26.4",
            "pillow==13.0.0",
            "pyparsing==3.3.3",
            "python-dateutil==4.0.0",
            "pytz==2026.6",
            "tzdata==2026.6",
        ),
        env={
            "PYTHONPATH": MOUNT_POINT,
            "MPLBACKEND": "Agg",
            # Matplotlib needs a writable config/cache dir; the set itself is read-only.
            "MPLCONFIGDIR": "/tmp/matplotlib",
        },
        verify=_DATASCIENCE_VERIFY,
        preload=("numpy", "pandas"),
    ),
}


def library_set_spec(name: str) -> LibrarySetSpec:
    """The set called ``name``.

    Raises:
        UnknownLibrarySetError: no set has that name (the message lists the known ones).
    """
    try:
        return LIBRARY_SETS[name]
    except KeyError:
        known = ", ".join(sorted(LIBRARY_SETS))
        raise UnknownLibrarySetError(f"unknown library set {name!r}; known sets: {known}") from None


async def require_library_set(sandbox: Sandbox, name: str) -> None:
    """Refuse a run's library set before it starts, as ``sandbox``'s backend sees it.

    Raises:
        UnknownLibrarySetError: the backend knows no set of that name (the message lists those it has).
        SandboxUnavailableError: the backend knows the set but cannot run it now (why, and the fix).
    """
    sets = await sandbox.library_sets()
    if name not in sets:
        known = ", ".join(sorted(sets))
        raise UnknownLibrarySetError(f"unknown library set {name!r}; known sets: {known}")
    problem = sets[name]
    if problem is not None:
        raise SandboxUnavailableError(problem)


def ready_library_sets(sets: Mapping[str, str | None]) -> frozenset[str]:
    """The names in a backend's ``library_sets()`` answer that it can run now."""
    return frozenset(name for name, problem in sets.items() if problem is None)
