"""The embedded default model: llama.cpp's OpenAI-compatible server running in this process.

With no external endpoint configured the agents talk to Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), served by
``xllamacpp`` (llama.cpp's own C++ HTTP server, continuous batching, thread safe) on a free
``127.0.0.1`` port. The server is started lazily, once per process, under a lock, and stopped at exit.
The model file comes from :mod:`agents.runtime.assembly`; ``agentic model setup`` (or
``python -m agents.runtime setup``) prepares it, ``agentic model bench`` measures tokens/s.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agents.runtime.assembly import DEFAULT_MODEL, ModelSetupError, ModelSpec, ensure_model
from agents.settings import ModelSettings

__all__ = [
    "EMBEDDED_MODEL_NAME",
    "EmbeddedServer",
    "EmbeddedServerError",
    "embedded_base_url",
    "get_embedded_server",
    "model_path",
    "stop_embedded_server",
]

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = DEFAULT_MODEL.name
"""Model name the embedded server reports (its alias) and clients send."""


class EmbeddedServerError(RuntimeError):
    """The embedded llama.cpp server could not be started."""


def model_path(settings: ModelSettings | None = None, spec: ModelSpec = DEFAULT_MODEL) -> Path:
    """Return the verified model file, assembling it first if needed (fast no-op when current)."""
    settings = settings or ModelSettings()
    return ensure_model(spec, settings.models_dir)


@dataclass
class EmbeddedServer:
    """A running llama.cpp server; ``base_url`` is the OpenAI-compatible root (``.../v1``)."""

    server: Any
    address: str
    model_file: Path
    n_ctx: int
    threads: int

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL of the server."""
        return f"{self.address}/v1"

    def stop(self) -> None:
        """Stop the HTTP server and free the model (llama.cpp does this when the object is released)."""
        self.server = None


_lock = threading.Lock()
_server: EmbeddedServer | None = None


def _start(settings: ModelSettings) -> EmbeddedServer:
    # Read by the OpenMP runtime when xllamacpp loads it: spinning threads collapse throughput
    # (measured 2.6 -> 6.5 tok/s) when sandbox runs share the two cores.
    os.environ.setdefault("OMP_WAIT_POLICY", settings.omp_wait_policy)
    try:
        import xllamacpp as xlc
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise EmbeddedServerError("xllamacpp is not installed; run `make setup`") from exc
    try:
        path = model_path(settings)
    except ModelSetupError as exc:
        raise EmbeddedServerError(f"embedded model unavailable: {exc}") from exc
    params = xlc.CommonParams()
    params.model.path = str(path)
    params.model_alias = {EMBEDDED_MODEL_NAME}
    params.n_ctx = settings.n_ctx
    params.n_parallel = settings.n_parallel
    params.n_predict = settings.max_tokens
    params.cpuparams.n_threads = settings.threads
    params.cpuparams_batch.n_threads = settings.threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # llama.cpp binds a free port; listening_address reports it
    params.warmup = False
    params.verbosity = settings.log_verbosity
    # Agents end conversations with other agents' reports (assistant messages). With prefill on,
    # llama.cpp would continue that message instead of answering it, and a JSON-schema request then
    # fails ("Failed to initialize samplers") because the prefilled text breaks the grammar.
    params.prefill_assistant = False
    started = time.monotonic()
    try:
        server = xlc.Server(params)
    except Exception as exc:
        raise EmbeddedServerError(f"llama.cpp failed to start with {path}: {exc}") from exc
    address = str(server.listening_address).rstrip("/")
    if not address.startswith("http"):
        address = f"http://{address}"
    _wait_healthy(address)
    logger.info(
        "embedded llama.cpp server on %s (n_ctx=%d, threads=%d) ready in %.1fs",
        address,
        settings.n_ctx,
        settings.threads,
        time.monotonic() - started,
    )
    return EmbeddedServer(server, address, path, settings.n_ctx, settings.threads)


def _wait_healthy(address: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    last: str = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{address}/health", timeout=5.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise EmbeddedServerError(f"embedded server at {address} not healthy after {timeout:.0f}s ({last})")


def get_embedded_server(settings: ModelSettings | None = None) -> EmbeddedServer:
    """Return the process-wide embedded server, starting it on first use (thread safe).

    Blocking (the model loads in a few seconds); async callers should use ``asyncio.to_thread``.

    Raises:
        EmbeddedServerError: The model could not be prepared or llama.cpp did not start.
    """
    global _server
    with _lock:
        if _server is None:
            _server = _start(settings or ModelSettings())
            atexit.register(stop_embedded_server)
        return _server


def embedded_base_url(settings: ModelSettings | None = None) -> str:
    """Return the OpenAI-compatible base URL of the embedded server, starting it if needed."""
    return get_embedded_server(settings).base_url


def stop_embedded_server() -> None:
    """Stop the process-wide embedded server if it runs; safe to call twice."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None
