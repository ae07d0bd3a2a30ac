"""Library sets: lookup errors, idempotent builds, lookup through the backend, and datascience for real."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import libsets
from sandbox.base import RunRequest
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxUnavailableError, UnknownLibrarySetError
from sandbox.host.libset_dirs import build_library_set, deno_binary, get_library_set
from sandbox.libsets import LIBRARY_SETS, MOUNT_POINT, LibrarySetSpec, ready_library_sets, require_library_set
from sandbox.registry import available_backends, create_sandbox
from sandbox.resources import TIERS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_settings() -> SandboxSettings:
    """Default settings with the datascience set built (a no-op after ``make test`` built it)."""
    settings = SandboxSettings()
    build_library_set("datascience", settings)
    return settings


@pytest.fixture
def tiny_spec(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Register a small real set (one pure-Python wheel) so build mechanics test in seconds."""
    spec = LibrarySetSpec(
        name="tiny",
        description="cycler only",
        requirements=("cycler==0.12.1",),
        env={"PYTHONPATH": MOUNT_POINT},
        verify="import cycler; print(cycler.__version__)",
    )
    monkeypatch.setitem(LIBRARY_SETS, "tiny", spec)
    yield "tiny"


def test_unknown_set_lists_known_sets(tmp_path: Path) -> None:
    with pytest.raises(UnknownLibrarySetError) as info:
        get_library_set("nope", SandboxSettings(data_dir=tmp_path))
    assert "'nope'" in str(info.value)
    assert "base" in str(info.value) and "datascience" in str(info.value)


def test_base_set_needs_no_build(tmp_path: Path) -> None:
    base = get_library_set("base", SandboxSettings(data_dir=tmp_path))
    assert base.host_path is None and base.name == "base"


def test_unbuilt_set_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="agentic libsets build"):
        get_library_set("datascience", SandboxSettings(data_dir=tmp_path))


@pytest.mark.parametrize("backend", ["local", "gvisor"])  # Unikraft's (an image per set): its own suite
async def test_library_sets_are_looked_up_through_the_backend(
    backend: str, tmp_path: Path, tiny_spec: str
) -> None:
    """Each backend says which sets it has (here: a data dir where nothing is built yet); opens nothing."""
    sandbox = create_sandbox(SandboxSettings(data_dir=tmp_path), backend)
    sets = await sandbox.library_sets()
    assert set(sets) == set(LIBRARY_SETS) and sets["base"] is None
    problem = sets[tiny_spec]
    assert problem is not None and "not built" in problem and "agentic libsets build" in problem
    assert ready_library_sets(sets) == {"base"}
    await require_library_set(sandbox, "base")
    with pytest.raises(UnknownLibrarySetError, match="'nope'.*known sets: base"):
        await require_library_set(sandbox, "nope")
    with pytest.raises(SandboxUnavailableError, match="fix: run `agentic libsets build`"):
        await require_library_set(sandbox, tiny_spec)
    build_library_set(tiny_spec, SandboxSettings(data_dir=tmp_path))
    assert (await sandbox.library_sets())[tiny_spec] is None  # built now: the same backend sees it
    await require_library_set(sandbox, tiny_spec)


def test_deno_binary_runs() -> None:
    deno = deno_binary()
    out = subprocess.run([str(deno), "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.startswith("deno ")


def test_build_is_idempotent_and_rebuilds_on_change(
    tmp_path: Path, tiny_spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SandboxSettings(data_dir=tmp_path)
    first = build_library_set(tiny_spec, settings)
    assert first.host_path == tmp_path / "libsets" / "tiny"
    assert (first.host_path / "cycler").is_dir()
    assert list((first.host_path / "cycler").glob("__pycache__/*.cpython-311.pyc")), "bytecode precompiled"
    inode = first.host_path.stat().st_ino

    started = time.monotonic()
    again = build_library_set(tiny_spec, settings)
    assert time.monotonic() - started < 1.0
    assert again.host_path is not None and again.host_path.stat().st_ino == inode, "no rebuild"

    changed = LibrarySetSpec(
        name="tiny",
        description="cycler, older pin",
        requirements=("cycler==0.11.0",),
        env={"PYTHONPATH": MOUNT_POINT},
        verify="from importlib.metadata import version as v; assert v('cycler') == '0.11.0', v('cycler')",
    )
    monkeypatch.setitem(LIBRARY_SETS, "tiny", changed)
    rebuilt = build_library_set(tiny_spec, settings)
    assert rebuilt.host_path is not None and rebuilt.host_path.stat().st_ino != inode

    def leftovers() -> list[str]:
        return [p.name for p in (tmp_path / "libsets").iterdir() if p.name.startswith(".tiny")]

    assert [n.split("-")[0] for n in leftovers()] == [".tiny.old"], "previous generation kept once"
    build_library_set(tiny_spec, settings, force=True)
    assert len(leftovers()) == 1, "only one previous generation"


def test_failed_verify_leaves_nothing_half_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = LibrarySetSpec(
        name="broken",
        description="verification fails",
        requirements=("cycler==0.12.1",),
        verify="import not_a_module_anywhere",
    )
    monkeypatch.setitem(LIBRARY_SETS, "broken", broken)
    settings = SandboxSettings(data_dir=tmp_path)
    with pytest.raises(SandboxUnavailableError, match="verify failed"):
        build_library_set("broken", settings)
    assert [p.name for p in (tmp_path / "libsets").iterdir() if p.name != ".lock"] == []
    with pytest.raises(SandboxUnavailableError):
        get_library_set("broken", settings)


def test_cli_second_build_is_fast(built_settings: SandboxSettings) -> None:
    # CPU time, not wall time: the no-op must cost < 1 s even when other suites load the host.
    env = {**os.environ, "AGENTIC_SANDBOX_DATA_DIR": str(built_settings.data_dir)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.host.libset_dirs", "build"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr
    assert cpu < 1.0, f"no-op build used {cpu:.2f} s of CPU"
    assert elapsed < 5.0, f"no-op build took {elapsed:.2f} s"


def test_cli_unknown_set_fails(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTIC_SANDBOX_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.host.libset_dirs", "build", "nope"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "known sets: base, datascience" in proc.stderr


def test_datascience_imports_with_debian_python(built_settings: SandboxSettings, tmp_path: Path) -> None:
    ds = get_library_set("datascience", built_settings)
    assert ds.host_path is not None
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        **ds.env,
        "PYTHONPATH": str(ds.host_path),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    code = "import numpy, pandas, matplotlib; print(matplotlib.get_backend())"
    out = subprocess.run(
        [built_settings.local.python_path, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "agg"


_PLOT = """
import numpy as np, pandas as pd, matplotlib.pyplot as plt
frame = pd.DataFrame({"x": np.arange(10), "y": np.arange(10) ** 2})
frame.plot(x="x", y="y")
plt.savefig("plot.png")
with open("plot.png", "rb") as fh:
    print(fh.read(4)[1:].decode(), int(frame.y.sum()))
"""


async def test_datascience_inside_local_sandbox(built_settings: SandboxSettings) -> None:
    problem = (await available_backends(built_settings, ["local"]))["local"]
    if problem is not None:
        pytest.skip(f"local sandbox unavailable: {problem}")
    async with create_sandbox(built_settings, "local") as sb:
        result = await sb.run(
            RunRequest(
                files={"plot.py": _PLOT},
                language="python",
                entry="plot.py",
                library_set="datascience",
                limits=TIERS["medium"],
            )
        )
        assert result.ok, result.stderr
        assert result.stdout.split() == ["PNG", "285"]
        # The set is read-only inside.
        ro = await sb.run(
            RunRequest(
                command=("/usr/bin/python3", "-c", f"open('{MOUNT_POINT}/x', 'w')"),
                library_set="datascience",
            )
        )
        assert not ro.ok and ("Read-only" in ro.stderr or "Permission" in ro.stderr)


def test_public_names() -> None:
    for name in libsets.__all__:
        assert hasattr(libsets, name)
