"""The package's folders import only downwards: api -> runs -> streaming -> storage.

So a newcomer can read storage without the rest, and nothing below the run manager calls back up
into it (the callbacks that tied manager, worker and executor together are gone for good).
"""

from __future__ import annotations

import ast
from pathlib import Path

import server.agent_protocol as package

ROOT = Path(package.__file__).parent
ORDER = ["api", "runs", "streaming", "storage"]  # each may import the ones after it, not before


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_folders_import_only_downwards() -> None:
    upward = []
    for rank, folder in enumerate(ORDER):
        above = {f"server.agent_protocol.{name}" for name in ORDER[:rank]}
        above |= {"server.agent_protocol.service", "server.agent_protocol.mount"}
        for path in sorted((ROOT / folder).glob("*.py")):
            for module in _imports(path):
                if folder != "api" and any(module == a or module.startswith(a + ".") for a in above):
                    upward.append(f"{folder}/{path.name} imports {module}")
    assert not upward, upward


def test_every_folder_is_there_with_its_roles() -> None:
    names = {p.parent.name + "/" + p.stem for p in ROOT.glob("*/*.py")}
    for role in (
        "runs/manager",
        "runs/worker",
        "runs/executor",
        "storage/queue",
        "storage/store",
        "storage/events",
        "streaming/hubs",
        "streaming/sse",
        "api/runs",
    ):
        assert role in names, role
