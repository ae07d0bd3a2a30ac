"""DESIGN's arrows are checked by import-linter (``make lint``): this shows the check can fail.

The packages are copied to a temporary directory, ``sandbox`` is made to import ``server`` (an
arrow pointing up), and the same ``lint-imports`` with the project's contract must refuse it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "agents", "tools", "sandbox", "workspace")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"]
    return subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_project_keeps_its_layers(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_contract(tree: Path) -> None:
    (tree / "sandbox" / "upward.py").write_text("import server.app  # an arrow pointing up\n")
    result = _lint(tree)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout
    assert "sandbox.upward -> server.app" in result.stdout
