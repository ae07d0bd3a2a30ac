"""Files too large for a ConfigMap: the pod waits, one ``exec`` writes them into its scratch dir.

Through the real client's websocket exec against the fake API, which checks each exec request
(command, container, stream flags, subprotocol) and runs it inside the pod's running container.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from starlette.datastructures import QueryParams

from sandbox.base import Limits, RunRequest
from sandbox.errors import SandboxStartError
from sandbox.kata import KataSandbox
from sandbox.kata.manifests import UPLOAD_DIR
from tests.sandbox.kata.conftest import kata_settings
from tests.sandbox.kata.fake_kube import FakeKube
from tests.sandbox.kata.fake_streams import exec_problems

READ_ALL = f"""
import hashlib, os, sys
for root, _, names in sorted(os.walk('.')):
    for name in sorted(names):
        path = os.path.join(root, name)[2:]
        data = open(path, 'rb').read()
        print(path, len(data), hashlib.sha256(data).hexdigest()[:16])
print('stdin', sys.stdin.read())
print('upload dir empty', os.listdir('{UPLOAD_DIR}'))
"""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _created(kube: FakeKube, resource: str) -> list[dict[str, object]]:
    return [obj for _, res, _, kind, obj in kube.events if res == resource and kind == "ADDED"]


async def test_a_file_set_above_the_threshold_goes_over_exec(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    files: dict[str, str | bytes] = {
        "data/big.bin": os.urandom(1_500_000),  # incompressible: far past a ConfigMap
        "data/more.bin": os.urandom(400_000),
        "notes.txt": "hello\n" * 1000,
        "main.py": READ_ALL,
    }
    request = RunRequest(
        files=files, language="python", entry="main.py", stdin=b"piped", limits=Limits(disk_mb=16)
    )
    result = await kata.run(request)
    assert result.ok, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        assert f"{path} {len(data)} {_digest(data)}" in lines, result.stdout
    assert "stdin piped" in lines and "upload dir empty []" in lines, result.stdout
    # No ConfigMap; one exec into the pod; the pod waits for its files instead of mounting them.
    assert _created(fake_kube, "configmaps") == []
    (pod,) = _created(fake_kube, "pods")
    assert "configMap" not in str(pod["spec"]["volumes"])  # type: ignore[index]
    execs = [p for _, p in fake_kube.requests if p.endswith("/exec")]
    assert len(execs) == 1 and pod["metadata"]["name"] in execs[0]  # type: ignore[index]


async def test_the_threshold_is_a_setting(fake_kube: FakeKube, tmp_path: Path, needs_bwrap: None) -> None:
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), configmap_max_bytes=1000)
    async with await KataSandbox.open(settings) as box:
        code = "print(open('a.txt').read())"
        text = os.urandom(2000).hex()  # 2 KB compressed: past a 1000-byte threshold
        result = await box.run(
            RunRequest(files={"main.py": code, "a.txt": text}, language="python", entry="main.py")
        )
    assert result.ok and result.stdout == text + "\n", result
    assert _created(fake_kube, "configmaps") == []
    assert [p for _, p in fake_kube.requests if p.endswith("/exec")]


async def test_a_refused_exec_is_a_start_error_and_leaves_nothing(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    fake_kube.fail("GET", r"/pods/.*/exec$", 403)
    request = RunRequest(
        files={"main.py": "print(1)", "big.bin": os.urandom(1_200_000)}, language="python", entry="main.py"
    )
    with pytest.raises(SandboxStartError, match=r"refused to exec into pod .* 403 .*pods/exec"):
        await kata.run(request)
    assert fake_kube.stored("pods") == []


async def test_a_set_nearly_as_large_as_the_scratch_dir_fits(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    # The uploaded archive is freed (unlinked, fd closed) before it is unpacked, so 1.9 MB of
    # incompressible files fit a 2 MB scratch dir although they arrive compressed first.
    blob = os.urandom(1_900_000)
    code = "print(len(open('big.bin', 'rb').read()))"
    request = RunRequest(
        files={"main.py": code, "big.bin": blob}, language="python", entry="main.py", limits=Limits(disk_mb=2)
    )
    result = await kata.run(request)
    assert result.ok and result.stdout == "1900000\n", result


def test_the_fake_refuses_exec_requests_the_api_server_would() -> None:
    pod = {"spec": {"containers": [{"name": "sandbox"}, {"name": "other"}]}}
    bad = QueryParams([("stdin", "yes"), ("tty", "true")])
    problems = exec_problems(pod, bad, ["v5.channel.k8s.io"])
    text = " | ".join(problems)
    for expected in (
        "no command",
        "container name must be given",
        "stdin='yes'",
        "at least 1 of",
        "tty",
        "v4",
    ):
        assert expected in text, text
    good = QueryParams([("command", "true"), ("container", "sandbox"), ("stdout", "true")])
    assert exec_problems(pod, good, ["v4.channel.k8s.io"]) == []
