"""Library sets as directories on this host: built once into the data dir, bound read-only into runs.

Inside a host sandbox the interpreter is always Debian's ``/usr/bin/python3`` (CPython 3.11); a set
(:mod:`sandbox.libsets`) is a directory of packages installed with ``pip --target`` into
``<data_dir>/libsets/<name>``, bound read-only at :data:`~sandbox.libsets.MOUNT_POINT` and put on
``PYTHONPATH`` through :attr:`LibrarySet.env`. Bytecode is compiled at build time because the mount
is read-only. The Deno binary (TypeScript) is bound the same way (:func:`deno_binary`).

Building is idempotent: a stamp holds the hash of the pinned requirements and the sandbox
interpreter's version, so a second ``agentic libsets build`` with nothing changed only reads the
stamps. A build goes into a temp dir, is verified with the sandbox interpreter, then renamed into
place, so a half-built set is never visible; the previous generation is kept (as ``.<name>.old-*``)
until the next build, for servers that still have it mounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.config import SandboxSettings
from sandbox.errors import SandboxUnavailableError, UnknownLibrarySetError
from sandbox.libsets import LIBRARY_SETS, MOUNT_POINT, LibrarySetSpec, library_set_spec

__all__ = [
    "LibrarySet",
    "build_library_set",
    "build_library_sets",
    "deno_binary",
    "get_library_set",
    "LibrarySetDirs",
    "libsets_dir",
]

logger = logging.getLogger(__name__)

_STAMP = ".agentic-libset.json"
_FORMAT = 1  # bump when the build procedure changes so old sets are rebuilt
_BUILD_FIX = "run `agentic libsets build` (make test / make run do it)"


@dataclass(frozen=True)
class LibrarySet:
    """A set ready to bind: ``host_path`` (None for stdlib-only) appears read-only at ``mount_point``."""

    name: str
    host_path: Path | None
    mount_point: str
    env: dict[str, str] = field(default_factory=dict)


def libsets_dir(settings: SandboxSettings) -> Path:
    """Return where sets are built (``<data_dir>/libsets``)."""
    return settings.data_dir / "libsets"


def get_library_set(name: str, settings: SandboxSettings) -> LibrarySet:
    """Return the set called ``name``, ready to bind into a sandbox.

    Raises:
        UnknownLibrarySetError: no set has that name (the message lists the known ones).
        SandboxUnavailableError: the set exists but has not been built on this host.
    """
    spec = library_set_spec(name)
    if not spec.requirements:
        return LibrarySet(name=name, host_path=None, mount_point=MOUNT_POINT, env=dict(spec.env))
    path = libsets_dir(settings) / name
    if not (path / _STAMP).is_file():
        raise SandboxUnavailableError(f"library set {name!r} is not built at {path}; fix: {_BUILD_FIX}")
    return LibrarySet(name=name, host_path=path, mount_point=MOUNT_POINT, env=dict(spec.env))


class LibrarySetDirs:
    """One backend's library sets: each looked up once, and remembered once it is built.

    Why remember: a built set stays in place (a rebuild renames the new one over it), so a run or a
    REST request asking for a set costs no file system look-up after the first.
    """

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._found: dict[str, LibrarySet] = {}

    def get(self, name: str) -> LibrarySet:
        """The set ``name``, ready to bind (see :func:`get_library_set`, which raises the same)."""
        libset = self._found.get(name)
        if libset is None:
            libset = self._found[name] = get_library_set(name, self.settings)
        return libset

    async def states(self) -> dict[str, str | None]:
        """Every known set -> None when built here (or stdlib only), else why not and the fix."""
        if not all(name in self._found for name in LIBRARY_SETS):
            return await asyncio.to_thread(self._probe)
        return dict.fromkeys(LIBRARY_SETS)

    def _probe(self) -> dict[str, str | None]:
        states: dict[str, str | None] = {}
        for name in LIBRARY_SETS:
            try:
                self.get(name)
                states[name] = None
            except SandboxUnavailableError as exc:
                states[name] = str(exc)
        return states


def deno_binary() -> Path:
    """Return the Deno executable shipped by the ``deno`` PyPI package (the TypeScript runner).

    Raises:
        SandboxUnavailableError: the package or its binary is missing.
    """
    try:
        import deno

        found = Path(deno.find_deno_bin())
    except (ImportError, FileNotFoundError) as exc:
        raise SandboxUnavailableError(
            "the Deno binary was not found; fix: pip install 'deno==2.9.8' into the server's venv"
        ) from exc
    if not os.access(found, os.X_OK):
        raise SandboxUnavailableError(f"the Deno binary at {found} is not executable; fix: chmod +x {found}")
    return found


def _sandbox_python_version(python: str) -> str:
    """Return the sandbox interpreter's full version (part of the stamp: its ABI decides the wheels)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailableError(
            f"the sandbox interpreter {python} does not run; fix: apt-get install python3"
        ) from exc
    return out.stdout.strip()


def _stamp_for(spec: LibrarySetSpec, python_version: str) -> dict[str, object]:
    payload = {"format": _FORMAT, "python": python_version, "requirements": sorted(spec.requirements)}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return {"name": spec.name, "sha256": digest, **payload}


def _read_stamp(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads((path / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """Serialise builds of the same data dir (``make test`` and a test fixture may race)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_step(what: str, argv: list[str], *, env: Mapping[str, str] | None = None) -> str:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=None if env is None else dict(env))
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise SandboxUnavailableError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    logger.info("  %s done in %.1f s", what, time.monotonic() - started)
    return proc.stdout


def _install(spec: LibrarySetSpec, target: Path, python_version: str) -> None:
    major_minor = "".join(python_version.split(".")[:2])
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(target),
        "--no-compile",
        "--only-binary=:all:",
        # Wheels for the *sandbox* interpreter, whatever Python runs this builder.
        "--implementation",
        "cp",
        "--python-version",
        major_minor,
        "--abi",
        f"cp{major_minor}",
        *spec.requirements,
    ]
    logger.info("  pip install --target (%d pinned packages)...", len(spec.requirements))
    _run_step("pip install", argv)


def _verify(spec: LibrarySetSpec, path: Path, python: str) -> None:
    if not spec.verify:
        return
    with tempfile.TemporaryDirectory(prefix="libset-verify-") as tmp:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": tmp,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            **spec.env,
            "PYTHONPATH": str(path),
            "MPLCONFIGDIR": os.path.join(tmp, "matplotlib"),
        }
        logger.info("  verifying with %s...", python)
        out = _run_step("verify", [python, "-s", "-c", spec.verify], env=env)
        logger.info("  verified: %s", out.strip())


def build_library_set(name: str, settings: SandboxSettings, *, force: bool = False) -> LibrarySet:
    """Build one set if its stamp is missing or stale, and return it.

    Raises:
        UnknownLibrarySetError: no set has that name.
        SandboxUnavailableError: pip, byte-compiling or verification failed (message has the log tail).
    """
    spec = library_set_spec(name)
    if not spec.requirements:
        return get_library_set(name, settings)
    root = libsets_dir(settings)
    final = root / name
    wanted = _stamp_for(spec, _sandbox_python_version(settings.local.python_path))
    current = _read_stamp(final)
    if not force and current is not None and current.get("sha256") == wanted["sha256"]:
        logger.info("library set %s is up to date (%s)", name, final)
        return get_library_set(name, settings)
    with _build_lock(root):
        current = _read_stamp(final)  # another process may have built it while we waited
        if not force and current is not None and current.get("sha256") == wanted["sha256"]:
            return get_library_set(name, settings)
        started = time.monotonic()
        logger.info("building library set %s (%s) into %s", name, spec.description, final)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=root))
        try:
            _install(spec, staging, str(wanted["python"]))
            logger.info("  compiling bytecode (the set is mounted read-only)...")
            python = settings.local.python_path
            _run_step("compileall", [python, "-m", "compileall", "-q", "-j0", str(staging)])
            _verify(spec, staging, python)
            (staging / _STAMP).write_text(json.dumps(wanted, indent=2) + "\n")
            staging.chmod(0o755)  # mkdtemp makes it 0700; the sandbox uid must read it
            # A running server may still have the previous set bind-mounted: keep it until the next
            # build instead of deleting files under its feet; older generations go now.
            for stale in root.glob(f".{name}.old-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if final.exists():
                final.rename(root / f".{name}.old-{int(time.time())}")
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("library set %s built in %.1f s", name, time.monotonic() - started)
    return get_library_set(name, settings)


def build_library_sets(
    settings: SandboxSettings, names: list[str] | None = None, *, force: bool = False
) -> list[LibrarySet]:
    """Build every set (or the ones named), in order; see :func:`build_library_set`."""
    return [build_library_set(n, settings, force=force) for n in (names or list(LIBRARY_SETS))]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``agentic libsets build [NAME...] [--force]`` and ``list``."""
    import argparse

    parser = argparse.ArgumentParser(prog="agentic libsets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build library sets into <data_dir>/libsets (no-op when current)")
    build.add_argument("names", nargs="*", help=f"sets to build (default: all of {', '.join(LIBRARY_SETS)})")
    build.add_argument("--force", action="store_true", help="rebuild even when the stamp is current")
    sub.add_parser("list", help="list the known sets and where they live")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[libsets] %(message)s", stream=sys.stderr)
    settings = SandboxSettings()
    if args.command == "list":
        for spec in LIBRARY_SETS.values():
            where = libsets_dir(settings) / spec.name if spec.requirements else "(stdlib, nothing to build)"
            print(f"{spec.name:12} {spec.description:45} {where}")
        return 0
    try:
        build_library_sets(settings, args.names or None, force=args.force)
    except (UnknownLibrarySetError, SandboxUnavailableError) as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
