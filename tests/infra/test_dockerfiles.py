"""infra/docker: parseable Dockerfiles, pinned bases, non-root, and one sandbox image per library set
with exactly the set's pins and environment. Images are not built here (no container registry is
reachable from this machine); ``docker build`` lines are in each file's header.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from sandbox.libsets import LIBRARY_SETS
from tests.infra.render import INFRA, ROOT

DOCKER = INFRA / "docker"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
_PIN = re.compile(r"^[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+$")


def parse(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuation lines joined."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        steps.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name}: ends inside a continued line"
    return steps


def dockerfiles() -> list[Path]:
    return sorted(DOCKER.glob("*.Dockerfile"))


def _env(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in steps:
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _pins(steps: list[tuple[str, str]]) -> set[str]:
    return {tok for word, args in steps if word == "RUN" for tok in shlex.split(args) if _PIN.match(tok)}


def test_the_images_exist() -> None:
    names = {p.name for p in dockerfiles()}
    assert "server.Dockerfile" in names
    assert {f"sandbox-{name}.Dockerfile" for name in LIBRARY_SETS} <= names, (
        "every library set in sandbox/libsets.py needs its sandbox image in infra/docker"
    )


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.name)
def test_parseable_pinned_non_root(path: Path) -> None:
    steps = parse(path)
    assert steps and all(word in INSTRUCTIONS for word, _ in steps), [w for w, _ in steps]
    stages: set[str] = set()
    for word, args in steps:
        if word != "FROM":
            continue
        parts = args.split()
        image = parts[0]
        if image in stages:  # FROM an earlier stage
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split("@")[0].partition(":")[2]
        assert (tag and tag != "latest") or "@sha256:" in image, f"{path.name}: FROM {image} is not pinned"
        assert "$" not in image, f"{path.name}: FROM {image} depends on a build argument"
        if len(parts) == 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
    users = [args for word, args in steps if word == "USER"]
    assert users, f"{path.name}: no USER (it would run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{path.name}: the final USER must be a numeric non-root uid"
    assert steps[-1][0] in ("CMD", "ENTRYPOINT", "USER", "EXPOSE")
    # Bytecode must not be written at run time: the root filesystem is read-only.
    assert _env(steps).get("PYTHONDONTWRITEBYTECODE") == "1"


def _pyproject_pin(package: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if d.startswith(package + "=="))


@pytest.mark.parametrize("name", sorted(LIBRARY_SETS))
def test_sandbox_image_matches_its_library_set(name: str) -> None:
    """The image holds exactly the set's pins, on the set's environment, as the local set does."""
    spec = LIBRARY_SETS[name]
    steps = parse(DOCKER / f"sandbox-{name}.Dockerfile")
    pins = _pins(steps)
    deno = _pyproject_pin("deno")
    assert deno in pins, f"the image's Deno must be the server's ({deno})"
    assert pins - {deno} == set(spec.requirements)
    env = _env(steps)
    for key, value in spec.env.items():
        assert env.get(key) == value, f"{key}: image has {env.get(key)!r}, the library set {value!r}"
    assert any("python:3.11" in args for word, args in steps if word == "FROM"), "the sets are built for 3.11"


def test_server_image_installs_the_project_and_git() -> None:
    steps = parse(DOCKER / "server.Dockerfile")
    copied = {args.split()[0] for word, args in steps if word == "COPY" and not args.startswith("--from")}
    for package in ("agents", "tools", "sandbox", "workspace", "server"):
        assert package in copied, f"server image does not copy {package}/"
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "pip install ." in runs and " git " in runs + " "
    assert [args for word, args in steps if word == "ENTRYPOINT"] == ['["agentic"]']
    ignore = (DOCKER / "server.Dockerfile.dockerignore").read_text().split()
    assert ".git" in ignore and ".venv" in ignore and ".env" in ignore
