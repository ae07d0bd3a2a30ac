"""The official JS SDK (``@langchain/langgraph-sdk``, pinned in ``browser/package.json``) under Node.

What a Node back-end calls: create an assistant with a context, patch it (a new version), run it
statelessly (``runs.wait`` and ``runs.stream`` with no thread), list its versions, have a context
the operator refuses answered 422, delete it. The script is ``browser/node_stateless.mjs`` (it
shares the browser test's pinned install: one ``npm ci``, done by ``make test`` or here); the test
skips, saying why, when Node, npm or the registry is unavailable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.agent_protocol.support import ServerProcess

HERE = Path(__file__).parent / "browser"


@pytest.fixture(scope="session")
def sdk_installed() -> Path:
    """``browser/node_modules`` installed from the lock file (only when it changed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js / npm are not installed (Debian packages nodejs, npm): the JS SDK cannot run")
    marker = HERE / "node_modules" / ".package-lock.json"
    inputs = (HERE / "package.json", HERE / "package-lock.json")
    if not marker.exists() or any(marker.stat().st_mtime < p.stat().st_mtime for p in inputs):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            pytest.skip(f"npm ci failed (registry unreachable?): {done.stderr.strip()[-500:]}")
    return HERE


def test_js_sdk_assistant_and_stateless_runs(sdk_installed: Path, sample_server: ServerProcess) -> None:
    node = shutil.which("node")
    assert node is not None and sample_server.api_key is not None
    done = subprocess.run(
        [node, "node_stateless.mjs", sample_server.url, sample_server.api_key],
        cwd=sdk_installed,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assistant = out["assistant"]
    assert assistant["graph_id"] == "agent" and assistant["version"] == 1
    assert assistant["context"] == {"model_name": "small", "max_attempts": 2}
    assert out["updated"]["version"] == 2 and out["updated"]["context"] == {"model_name": "large"}
    assert out["waited"] == {"steps": ["work", "auto"], "ticks": 1}
    assert out["seen"]["model_name"] == "large" and out["seen"]["max_attempts"] == 3
    assert out["seen"]["model_base_url"] is None
    assert [v["version"] for v in out["versions"]] == [2, 1]
    assert out["refused"]["status"] == 422 and "model_base_url" in out["refused"]["message"]
    assert out["afterDelete"] == 404
