"""Build the FastAPI app: lifespan (store + sandbox), middleware, error handlers, routers, docs.

``create_app(settings)`` is the only entry point; ``agentic serve`` and the tests both call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from sandbox.config import SandboxSettings
from sandbox.guard import GuardedSandbox
from sandbox.registry import open_sandbox
from server import __version__
from server.agent_protocol.storage import async_url
from server.apps.access import LinkSigner, load_secret
from server.apps.manager import APP_PREFIX, AppManager
from server.apps.origin import AppOriginMiddleware
from server.apps.proxy import AppProxy
from server.apps.store import AppStore
from server.config import Settings
from server.deps import require_api_key
from server.errors import install_error_handlers
from server.heap import freeze_after_startup
from server.keys import KeyRing, KeyStore
from server.metrics import InstrumentedSandbox, watch_admission
from server.metrics import router as metrics_router
from server.middleware import BodySizeLimitMiddleware, RequestClockMiddleware
from server.routes import apps, docs, export, files, health, runs, versions, workspaces
from server.schemas import ErrorPublic
from server.stackdump import install_stack_dumps
from server.tracing import install_tracing
from tools.services import no_process_services
from workspace.base import VersionStore
from workspace.config import open_store
from workspace.git_export import GitExporter
from workspace.retention import prune_periodically

__all__ = ["API_PREFIX", "CORS_EXPOSED_HEADERS", "create_app", "sandbox_settings"]

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
# Response headers browser clients must read: the run id of a created run and where to rejoin its
# stream (langgraph-sdk reads Content-Location), and the LangGraph server's pagination headers.
CORS_EXPOSED_HEADERS = ["Content-Location", "Location", "X-Pagination-Next", "X-Pagination-Total"]

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in {
        400: "Bad input",
        401: "Missing or wrong API key",
        404: "Unknown workspace, file or version (or one of another tenant)",
        413: "File or request body too large",
        415: "Not JSON, or binary content",
        422: "Malformed JSON or invalid field",
        429: "Rate limit of the API key reached, or the sandboxes are at capacity (see Retry-After)",
        500: "Internal error",
    }.items()
}


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has stopped."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _open_apps(
    app: FastAPI,
    stack: AsyncExitStack,
    settings: Settings,
    store: VersionStore,
    sandbox: GuardedSandbox,
    backend: object,
) -> None:
    """Hosted apps: their table, manager, reaper and reverse proxy; closed before the sandbox."""
    ap = settings.agent_protocol
    apps_store = AppStore.from_url(async_url(ap.database_url, ap.data_dir))
    stack.push_async_callback(apps_store.close)
    await apps_store.setup()
    configured = settings.apps.link_secret
    secret = (
        configured.get_secret_value().encode()
        if configured is not None
        else await asyncio.to_thread(load_secret, settings.apps.secret_file or ap.data_dir / "app_link.key")
    )
    manager = AppManager(apps_store, store, sandbox, settings.apps, LinkSigner(secret))
    stack.push_async_callback(manager.close)
    egress = getattr(backend, "egress", None)
    if egress is not None:  # a sandbox of the tenant reaches its own apps as <id>.apps.internal
        egress.app_route = manager.egress_route
    reaper = asyncio.create_task(manager.reap_periodically(), name="reap-apps")
    stack.push_async_callback(_cancel, reaper)
    # Sandboxes on a cluster reach their tenant's apps through the egress proxy, which forwards them
    # with the run identity this backend signed (kata: AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET).
    proxy = AppProxy(manager, app.state.keyring, getattr(backend, "verify_egress_identity", None))
    stack.push_async_callback(proxy.aclose)
    app.state.apps, app.state.app_proxy = manager, proxy


async def _apps_entry(scope: Scope, receive: Receive, send: Send) -> None:
    """``/apps``: hand the request to the reverse proxy the lifespan built (404 when hosting is off)."""
    proxy: AppProxy | None = getattr(scope["app"].state, "app_proxy", None)
    if proxy is None:
        if scope["type"] == "http":
            await PlainTextResponse("app hosting is off", status_code=404)(scope, receive, send)
        return
    await proxy(scope, receive, send)


def sandbox_settings(settings: Settings) -> SandboxSettings:
    """The sandbox settings with the server's part of the egress policy: the public internet only
    when the server allows network, and the API's own port among the refused platform ports."""
    s = settings.sandbox
    ports = sorted({*s.egress_platform_ports, settings.port})
    return s.model_copy(
        update={
            "egress_allow_internet": s.egress_allow_internet or settings.allow_network,
            "egress_platform_ports": ports,
        }
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the app; the store and the sandbox are opened by its lifespan and closed after."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_stack_dumps()  # SIGUSR1: threads, SIGUSR2: asyncio tasks, to stderr
        async with AsyncExitStack() as stack:
            stack.enter_context(install_tracing(settings.tracing))  # off (nothing) without an endpoint
            # Runs get the server's tenant-scoped objects; a process-wide (unscoped) store is refused.
            stack.enter_context(no_process_services())
            # open_store runs the store's migrations (setup()) and closes it on exit.
            store = await stack.enter_async_context(open_store(settings.workspace))
            # The backend's host (or remote) I/O happens off the event loop, in its open().
            backend = await open_sandbox(sandbox_settings(settings))
            stack.push_async_callback(backend.close)
            # Every run (REST, CLI, agents) passes the one guard: limits clamped, memory admitted.
            sandbox = GuardedSandbox.from_settings(InstrumentedSandbox(backend), settings.sandbox)
            watch_admission(sandbox.admission)
            app.state.store = store
            if settings.workspace.run_output_prune_interval_s > 0:
                # Registered after the store: on exit the sweep is cancelled before the store closes.
                pruner = asyncio.create_task(
                    prune_periodically(
                        store.prune_run_outputs, settings.workspace.run_output_prune_interval_s
                    ),
                    name="prune-run-outputs",
                )
                stack.push_async_callback(_cancel, pruner)
            app.state.sandbox = sandbox
            # Keys created with `agentic keys create` live beside threads and runs.
            ap = settings.agent_protocol
            keys = KeyStore.from_url(async_url(ap.database_url, ap.data_dir))
            stack.push_async_callback(keys.close)
            await keys.setup()
            app.state.keyring = KeyRing(settings.tenant_keys, keys)
            if settings.apps.enabled:
                await _open_apps(app, stack, settings, store, sandbox, backend)
            if not await app.state.keyring.enabled():
                logger.warning(
                    "no API key (AGENTIC_API_KEYS is empty, none created with `agentic keys "
                    "create`): authentication is OFF, anyone reaching %s:%s can use the API",
                    settings.host,
                    settings.port,
                )
            logger.info(
                "server ready (sandbox backend %s)", getattr(sandbox, "name", settings.sandbox.backend)
            )
            yield
        logger.info("server stopped; store and sandbox closed")

    app = FastAPI(
        title="Agentic Platform",
        version=__version__,
        description=(
            "Versioned workspaces and sandboxed runs. Authenticate with `Authorization: Bearer <key>` "
            "or `X-API-Key: <key>` when the server has API keys configured."
        ),
        lifespan=lifespan,
        docs_url=None,  # served by server.routes.docs from local assets
        redoc_url=None,  # ReDoc needs a CDN; not offered
    )
    app.state.settings = settings
    app.state.exporter = GitExporter(settings.export)  # holds no connection: nothing to open or close
    install_error_handlers(app)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,  # keys are headers: no cookie is ever sent cross-origin
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    if settings.apps.enabled:
        # Requests on an app's own host {id}.{domain} (and a sandbox's {id}.apps.internal) go to that
        # app only, never to the API or the UI.
        app.add_middleware(AppOriginMiddleware, domain=settings.apps.domain)
    # Added last = outermost: oversize bodies are refused before anything reads them.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestClockMiddleware)  # outermost: a request's clock starts first

    app.include_router(health.router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    # Agent Protocol (threads, streamed runs; owned by server/agent_protocol) before the REST API:
    # FastAPI tries routes in order, about 10 us each, and a chat run's three requests land here.
    from server.agent_protocol.mount import install_agent_protocol
    from server.ui import install_ui

    install_agent_protocol(app)
    app.include_router(docs.router)
    app.mount(docs.ASSETS_PREFIX, docs.swagger_assets(), name="docs-assets")
    for module in (workspaces, files, versions, runs, apps, export):
        app.include_router(
            module.router,
            prefix=API_PREFIX,
            dependencies=[Depends(require_api_key)],
            responses=_ERROR_RESPONSES,
        )
    app.mount(APP_PREFIX, _apps_entry, name="apps")
    install_ui(app)  # the web UI at "/" (owned by server/ui), last: its paths are the least specific
    # Outermost, once the routers' lifespans are merged in: the heap is frozen when all are open.
    app.router.lifespan_context = freeze_after_startup(app.router.lifespan_context)
    return app
