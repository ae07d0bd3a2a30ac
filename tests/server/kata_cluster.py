"""The real server with the ``kata`` backend against the fake cluster (in a thread of its own).

Why one helper: the Kata app tests (``test_app_kata.py``, ``test_app_egress.py``) each need the same
set-up: the fake API server, the backend's settings pointed at it, a live server hosting apps there,
and afterwards the check that nothing of the apps was left in the fake and no request body failed
its schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import SandboxSettings
from server.app import create_app
from server.apps.config import AppSettings
from tests.sandbox.kata.conftest import IMAGE, service_ports_allowed
from tests.sandbox.kata.fake_kube_thread import FakeKubeThread
from tests.server.conftest import make_settings
from tests.server.support import LiveServer

APP_KINDS = ("configmaps", "deployments", "services", "pods")


@contextlib.contextmanager
def kata_server(
    data_dir: Path, api_keys: list[str], **kata_env: str
) -> Iterator[tuple[FakeKubeThread, LiveServer]]:
    """The fake cluster and a live server hosting apps there (``kata_env``: more ``AGENTIC_SANDBOX_KATA_*``).

    Skips (saying why) without bubblewrap or the right to listen on port 80.
    """
    if not Path("/usr/bin/bwrap").exists():
        pytest.skip("the fake kubelet runs pods in bubblewrap; fix: apt-get install bubblewrap")
    if not service_ports_allowed():
        pytest.skip("the fake's Services listen on port 80; run as root or lower ip_unprivileged_port_start")
    with pytest.MonkeyPatch.context() as env, FakeKubeThread(data_dir / "kubeconfig") as fake:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.delenv(name, raising=False)  # the client's aiohttp session trusts them: keep 127.0.0.1 direct
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        kata = {
            "KUBECONFIG": str(fake.kubeconfig),
            "IMAGES": f'{{"base": "{IMAGE}"}}',
            "PYTHON_PATH": "/usr/bin/python3",
            "REAP_INTERVAL_S": "0",
            "START_TIMEOUT_S": "20",
            "EGRESS_PROXY_URL": "http://127.0.0.1:3128",  # an IP: nothing to resolve at open
            **kata_env,
        }
        for name, value in kata.items():
            env.setenv(f"AGENTIC_SANDBOX_KATA_{name}", value)
        apps = AppSettings(reap_interval_s=0.3, link_secret="s" * 32, idle_stop_s=0)  # type: ignore[arg-type]
        sandbox = SandboxSettings().model_copy(update={"backend": "kata"})
        settings = make_settings(data_dir, api_keys=api_keys, apps=apps, sandbox=sandbox)
        with LiveServer(create_app(settings)) as server:
            yield fake, server
        left = fake.call(lambda kube: [k for k in kube.stored() if k[0] in APP_KINDS])
        assert left == [], f"the server left objects in the fake cluster: {left}"
        assert fake.call(lambda kube: list(kube.invalid)) == []
