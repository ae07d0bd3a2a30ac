"""The Kata backend through the real ``kubernetes`` client against the fake API: phases, errors, resumes."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from sandbox.base import EndReason, Limits, RunRequest
from sandbox.errors import InvalidRunRequestError, SandboxStartError, UnknownLibrarySetError
from sandbox.kata import KataSandbox
from sandbox.kata.naming import NETWORK_LABEL, RUN_LABEL, TENANT_LABEL
from sandbox.kata.runner import frame
from sandbox.kata.settings import DEFAULT_EGRESS_PROXY_URL, KataSettings
from tests.sandbox.kata.conftest import kata_settings
from tests.sandbox.kata.fake_kube import FakeKube
from tests.sandbox.kata.fake_kubelet import Scenario


def py(code: str, **kwargs: object) -> RunRequest:
    files = {**kwargs.pop("files", {}), "main.py": code}  # type: ignore[dict-item]
    return RunRequest(files=files, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


def log(stdout: bytes = b"", stderr: bytes = b"", *extra: bytes, exit_code: int | None = 0) -> bytes:
    lines = [frame("s")]
    if stdout:
        lines.append(frame("o", stdout))
    if stderr:
        lines.append(frame("e", stderr))
    lines += list(extra)
    if exit_code is not None:
        lines.append(frame("x", str(exit_code)))
    return b"".join(lines)


def created(kube: FakeKube, resource: str) -> list[dict[str, object]]:
    return [obj for _, res, _, kind, obj in kube.events if res == resource and kind == "ADDED"]


# --- phases played back -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
async def test_succeeded_and_failed_exit_codes(kata: KataSandbox, fake_kube: FakeKube, code: int) -> None:
    container_code = code
    fake_kube.scenarios.append(
        Scenario(
            mode="script", log=log(b"out\n", b"err\n", exit_code=code), exit_code=container_code, run_s=0.05
        )
    )
    result = await kata.run(py("print(1)"))
    assert (result.exit_code, result.reason, result.stdout, result.stderr) == (
        code,
        EndReason.EXIT,
        "out\n",
        "err\n",
    )
    assert result.ok is (code == 0) and result.backend == "kata"


async def test_oom_killed_container_is_oom(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.scenarios.append(
        Scenario(
            mode="script",
            log=log(b"allocating\n", exit_code=None),
            exit_code=137,
            container_reason="OOMKilled",
        )
    )
    result = await kata.run(py("x = bytearray(1 << 34)"))
    assert result.reason is EndReason.OOM and result.exit_code == -9
    assert result.stdout == "allocating\n"


async def test_runner_seen_oom_is_oom(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.scenarios.append(
        Scenario(
            mode="script",
            log=log(b"", b"", frame("m"), exit_code=-9),
            exit_code=137,
            container_reason="Error",
        )
    )
    assert (await kata.run(py("pass"))).reason is EndReason.OOM


async def test_deadline_exceeded_is_timeout(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.scenarios.append(
        Scenario(
            mode="script", log=log(b"working\n", exit_code=None), exit_code=137, pod_reason="DeadlineExceeded"
        )
    )
    result = await kata.run(py("import time; time.sleep(99)"))
    assert result.reason is EndReason.TIMEOUT and result.exit_code < 0 and result.stdout == "working\n"


async def test_evicted_pod_is_killed(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.scenarios.append(
        Scenario(mode="script", log=log(exit_code=None), exit_code=137, pod_reason="Evicted")
    )
    assert (await kata.run(py("pass"))).reason is EndReason.KILLED


async def test_signal_death_is_killed(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.scenarios.append(Scenario(mode="script", log=log(exit_code=-11), exit_code=139))
    result = await kata.run(py("pass"))
    assert (result.reason, result.exit_code) == (EndReason.KILLED, -11)


@pytest.mark.parametrize(
    "waiting",
    [
        [("ErrImagePull", "rpc error: manifest unknown")],
        [("ContainerCreating", ""), ("ImagePullBackOff", 'Back-off pulling image "registry.invalid/x"')],
        [("InvalidImageName", "couldn't parse image name")],
    ],
    ids=["ErrImagePull", "ImagePullBackOff", "InvalidImageName"],
)
async def test_image_pull_errors_are_start_errors(
    kata: KataSandbox, fake_kube: FakeKube, waiting: list[tuple[str, str]]
) -> None:
    fake_kube.scenarios.append(Scenario(mode="script", waiting=waiting))
    with pytest.raises(SandboxStartError, match=waiting[-1][0]) as info:
        await kata.run(py("print(1)"))
    assert waiting[-1][1] in str(info.value)


async def test_unschedulable_pod_times_out_with_the_schedulers_reason(
    fake_kube: FakeKube, tmp_path: Path
) -> None:
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), start_timeout_s=0.5)
    fake_kube.scenarios.append(Scenario(mode="script", unschedulable=True))
    async with await KataSandbox.open(settings) as box:
        with pytest.raises(SandboxStartError, match="did not start within.*Insufficient memory"):
            await box.run(py("print(1)"))


async def test_runner_that_cannot_start_is_a_start_error(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.scenarios.append(
        Scenario(mode="script", log=b'exec: "/usr/bin/python3": no such file or directory\n', exit_code=128)
    )
    with pytest.raises(SandboxStartError, match="no such file or directory.*PYTHON_PATH"):
        await kata.run(py("print(1)"))


# --- API errors -----------------------------------------------------------------------------------


async def test_transient_500_on_create_is_retried(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    fake_kube.fail("POST", r"/pods$", 500, times=2)
    result = await kata.run(py("print('made it')"))
    assert result.ok and result.stdout == "made it\n"
    assert [m for m, p in fake_kube.requests if p.endswith("/pods") and m == "POST"] == ["POST"] * 3


async def test_persistent_500_is_a_start_error_and_leaves_nothing(
    kata: KataSandbox, fake_kube: FakeKube
) -> None:
    fake_kube.fail("POST", r"/pods$", 500, times=10)
    with pytest.raises(SandboxStartError, match="500"):
        await kata.run(py("print(1)"))
    assert fake_kube.stored("configmaps") == []  # the ConfigMap made before the pod is gone


async def test_forbidden_is_a_start_error_with_a_hint(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.fail("POST", r"/configmaps$", 403)
    with pytest.raises(SandboxStartError, match="403.*(RBAC|quota)"):
        await kata.run(py("print(1)"))
    assert [p for m, p in fake_kube.requests if m == "POST" and p.endswith("/configmaps")] != []
    assert [p for m, p in fake_kube.requests if m == "POST" and p.endswith("/pods")] == []


async def test_conflict_is_a_start_error_and_the_other_object_survives(
    kata: KataSandbox, fake_kube: FakeKube
) -> None:
    fake_kube.fail("POST", r"/configmaps$", 409)
    with pytest.raises(SandboxStartError, match="409.*already exists"):
        await kata.run(py("print(1)"))
    assert not [
        p for m, p in fake_kube.requests if m == "DELETE" and "/configmaps/" in p
    ]  # not ours: untouched


async def test_failed_deletes_are_retried(kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None) -> None:
    fake_kube.fail("DELETE", r"/pods/", 503, times=2)
    assert (await kata.run(py("print(1)"))).ok
    assert fake_kube.stored("pods") == []


# --- disconnects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["abort", "gone"])
async def test_watch_that_breaks_mid_run_is_resumed(
    kata: KataSandbox, fake_kube: FakeKube, cut: str, needs_bwrap: None
) -> None:
    fake_kube.watch_cuts.extend([cut, cut])
    result = await kata.run(py("import time\nprint('a', flush=True)\ntime.sleep(0.3)\nprint('b')"))
    assert result.ok and result.stdout == "a\nb\n"
    polls = [
        p
        for m, p in fake_kube.requests
        if m == "GET" and "/pods/agentic-run-" in p and not p.endswith("/log")
    ]
    versions = fake_kube.watch_versions
    assert len(versions) >= 2 and len(polls) >= 1  # a break: the pod is read once, then watched again
    assert all(v is not None and v.isdigit() for v in versions)  # always from a resourceVersion
    assert int(versions[1]) > int(versions[0])  # resumed from newer state, not from scratch


@pytest.mark.parametrize("cut", ["abort", "midline"])
async def test_log_stream_that_breaks_is_resumed_without_duplicates(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None, cut: str
) -> None:
    fake_kube.log_cuts.append(cut)
    code = "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.1)\n"
    result = await kata.run(py(code))
    assert result.ok and result.stdout == "0\n1\n2\n3\n"
    assert len([p for m, p in fake_kube.requests if p.endswith("/log")]) == 2


# --- requests -------------------------------------------------------------------------------------


async def test_pod_carries_the_request(kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None) -> None:
    limits = Limits(cpus=0.5, memory_mb=200, disk_mb=16, wall_seconds=7)
    result = await kata.run(py("print(1)", limits=limits, labels={"tenant": "acme", "run": "run-42"}))
    assert result.ok
    (pod,) = created(fake_kube, "pods")
    labels = pod["metadata"]["labels"]  # type: ignore[index]
    assert (
        labels[TENANT_LABEL] == "acme" and labels[RUN_LABEL] == "run-42" and labels[NETWORK_LABEL] == "none"
    )
    spec = pod["spec"]  # type: ignore[index]
    assert spec["activeDeadlineSeconds"] == 7 + 30
    assert spec["containers"][0]["resources"]["limits"]["memory"] == "200Mi"


async def test_tenant_namespace_template(fake_kube: FakeKube, tmp_path: Path, needs_bwrap: None) -> None:
    fake_kube.namespaces.add("agentic-u-acme")
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), namespace="agentic-u-{tenant}")
    async with await KataSandbox.open(settings) as box:
        assert (await box.run(py("print(1)", labels={"tenant": "acme"}))).ok
        with pytest.raises(SandboxStartError, match='namespaces "agentic-u-other" not found'):
            await box.run(py("print(1)", labels={"tenant": "other"}))
    assert {obj["metadata"]["namespace"] for obj in created(fake_kube, "pods")} == {"agentic-u-acme"}  # type: ignore[index]


async def test_network_needs_the_egress_proxy(fake_kube: FakeKube, tmp_path: Path, needs_bwrap: None) -> None:
    kubeconfig = fake_kube.kubeconfig(tmp_path / "kc")
    assert KataSettings().egress_proxy_url == DEFAULT_EGRESS_PROXY_URL  # infra/'s Service
    async with await KataSandbox.open(kata_settings(kubeconfig, egress_proxy_url="")) as box:
        with pytest.raises(SandboxStartError, match="EGRESS_PROXY_URL"):
            await box.run(py("print(1)", network=True))
    proxy = "http://agentic-egress.agentic-system.svc:3128"
    async with await KataSandbox.open(kata_settings(kubeconfig, egress_proxy_url=proxy)) as box:
        result = await box.run(
            py("import os\nprint(os.environ['HTTPS_PROXY'], os.environ['http_proxy'])", network=True)
        )
    assert result.stdout == f"{proxy} {proxy}\n"
    (pod,) = created(fake_kube, "pods")
    assert pod["metadata"]["labels"][NETWORK_LABEL] == "egress"  # type: ignore[index]


async def test_bad_requests_are_refused_before_any_api_call(kata: KataSandbox, fake_kube: FakeKube) -> None:
    with pytest.raises(UnknownLibrarySetError, match="datascience.*base"):
        await kata.run(py("print(1)", library_set="datascience"))
    with pytest.raises(InvalidRunRequestError, match="scratch"):
        await kata.run(RunRequest(files={"../x.py": ""}, language="python", entry="../x.py"))
    with pytest.raises(InvalidRunRequestError, match="at most .* 1 MB scratch dir"):
        await kata.run(py("print(1)", files={"big.bin": os.urandom(1_200_000)}, limits=Limits(disk_mb=1)))
    with pytest.raises(SandboxStartError, match="pipes"):
        await kata.run(py("print(1)", pipe_fds=(5,)))
    assert fake_kube.requests == []


async def test_files_near_the_configmap_limit_still_fit(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    blob = os.urandom(600_000)  # incompressible
    result = await kata.run(py("print(len(open('blob.bin','rb').read()))", files={"blob.bin": blob}))
    assert result.ok and result.stdout == "600000\n"
    assert len(created(fake_kube, "configmaps")) == 1  # below the threshold: no exec
    assert not [p for _, p in fake_kube.requests if p.endswith("/exec")]


async def test_leaving_a_stream_early_deletes_the_pod(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    marker = f"agentic-early-{uuid.uuid4().hex}"
    sleeper = f"os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(60)', '{marker}'])"
    code = f"import os\nprint('go', flush=True)\n{sleeper}\n"
    stream = kata.stream(py(code))
    seen = ""
    async for chunk in stream:
        seen += chunk.data  # print() may arrive as "go" and "\n"
        if seen == "go\n":
            break
    for _ in range(100):  # the program is really running (so the checks below can fail)
        if _host_pids(marker):
            break
        await asyncio.sleep(0.05)
    assert fake_kube.stored("pods") and _host_pids(marker)
    await stream.aclose()  # type: ignore[attr-defined]
    assert fake_kube.stored("pods") == [] and fake_kube.stored("configmaps") == []
    for _ in range(50):
        if not _host_pids(marker):
            break
        await asyncio.sleep(0.05)
    assert _host_pids(marker) == []


async def test_closed_backend_refuses_runs(fake_kube: FakeKube, tmp_path: Path) -> None:
    box = await KataSandbox.open(kata_settings(fake_kube.kubeconfig(tmp_path / "kc")))
    await box.close()
    await box.close()  # idempotent
    with pytest.raises(SandboxStartError, match="closed"):
        await box.run(py("print(1)"))


def _host_pids(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found
