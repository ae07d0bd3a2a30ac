"""The ``agentic`` command: ``serve`` the API, ``run`` a file in the local sandbox, ``doctor`` the host,
``egress-proxy`` (the sandboxes' way out, on TCP, for a cluster),
``keys`` create / list / revoke the API keys of tenants, ``prune`` old run output, ``export`` a
workspace's history to a git remote, ``model setup`` the embedded model, ``libsets build`` the
library sets.

This is the only module (with start-up) that prints and configures logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from sandbox.base import EndReason, RunRequest, RunResult
from sandbox.errors import SandboxError
from server.config import TENANT_PATTERN, Settings
from server.doctor import render_checks, run_checks
from server.logs import configure_logging

if TYPE_CHECKING:
    from server.keys import KeyStore
    from workspace.git_export import ExportResult

__all__ = ["app", "exit_code_for", "keys_app"]

T = TypeVar("T")

app = typer.Typer(
    help="Agentic Platform: versioned workspaces and sandboxed runs.",
    no_args_is_help=True,
    add_completion=False,
)
_err = Console(stderr=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default AGENTIC_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default AGENTIC_PORT or 8000)")] = None,
) -> None:
    """Start the HTTP API server."""
    import uvicorn

    from server.app import create_app

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


def exit_code_for(result: RunResult) -> int:
    """Map a run's outcome to a shell exit code (the program's own when it exited)."""
    if result.reason is EndReason.TIMEOUT:
        return 124  # like timeout(1)
    if result.reason is EndReason.OOM:
        return 137
    if result.exit_code < 0:
        return 128 - result.exit_code
    return result.exit_code


def _explain(result: RunResult, limits_wall: float, limits_mem: int) -> str | None:
    if result.reason is EndReason.TIMEOUT:
        return f"timed out: wall-clock limit of {limits_wall:g} s reached, the process tree was killed"
    if result.reason is EndReason.OOM:
        return f"out of memory: the memory limit of {limits_mem} MB was reached"
    if result.reason is EndReason.KILLED:
        sig = -result.exit_code if result.exit_code < 0 else 0
        name = signal.Signals(sig).name if sig in {s.value for s in signal.Signals} else f"signal {sig}"
        return f"killed by {name} (a CPU-time, process-count or other limit)"
    return None


async def _run_streaming(settings: Settings, request: RunRequest, backend: str | None) -> RunResult:
    from sandbox.guard import GuardedSandbox
    from sandbox.libsets import require_library_set
    from sandbox.registry import create_sandbox

    result: RunResult | None = None
    # The same guard as the server's: limits clamped to the operator's maximums.
    raw = create_sandbox(settings.sandbox, backend)
    async with GuardedSandbox.from_settings(raw, settings.sandbox) as sandbox:
        await require_library_set(sandbox, request.library_set)  # as this backend has it
        async for chunk in sandbox.stream(request):
            if chunk.stream == "stdout":
                sys.stdout.write(chunk.data)
                sys.stdout.flush()
            elif chunk.stream == "stderr":
                sys.stderr.write(chunk.data)
                sys.stderr.flush()
            else:
                result = chunk.result
    if result is None:
        raise SandboxError("the sandbox stream ended without a result")
    return result


@app.command()
def run(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Program to run")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments passed to the program")] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", help="python or typescript (default: from extension)")
    ] = None,
    tier: Annotated[
        str | None, typer.Option(help="light, medium or heavy (default: chosen from the code)")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Sandbox backend (default AGENTIC_SANDBOX_BACKEND)")
    ] = None,
    library_set: Annotated[
        str, typer.Option("--library-set", help="Library set, e.g. base, datascience")
    ] = "base",
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Pass this command's standard input to the program")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.01, help="Wall-clock limit in seconds (default: the tier's)"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the sandbox does")] = False,
) -> None:
    """Run FILE in the local sandbox, streaming its output; exit with the program's exit code."""
    from sandbox.plan import plan_run, require_language

    settings = Settings()
    _configure_logging("debug" if verbose else "warning")
    try:
        language = require_language(file.name, lang)
    except SandboxError as exc:
        _err.print(f"[red]error:[/] {exc} (pass --lang python|typescript)")
        raise typer.Exit(2) from None
    try:
        code = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _err.print(f"[red]error:[/] {file} is not UTF-8 text")
        raise typer.Exit(2) from None
    try:
        overrides = {"wall_seconds": timeout} if timeout is not None else None
        plan = plan_run(
            code_size=len(code.encode()),
            file_count=1,
            library_set=library_set,
            tier=tier,  # type: ignore[arg-type]
            overrides=overrides,
            maximums=settings.sandbox.max_limits,
        )
        limits = plan.limits
        request = RunRequest(
            files={file.name: code},
            language=language,
            entry=file.name,
            args=tuple(args or ()),
            stdin=sys.stdin.buffer.read() if stdin else b"",
            limits=limits,
            library_set=library_set,
        )
        result = asyncio.run(_run_streaming(settings, request, backend))
    except SandboxError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    reason = _explain(result, limits.wall_seconds, limits.memory_mb)
    if reason is not None:
        _err.print(f"[yellow]agentic:[/] {reason}")
    if result.stdout_truncated or result.stderr_truncated:
        _err.print(f"[yellow]agentic:[/] output truncated at {limits.output_bytes} bytes per stream")
    if verbose:
        _err.print(
            f"[dim]agentic: {result.backend} tier={plan.tier} exit={result.exit_code} "
            f"reason={result.reason.value} {result.duration_s:.3f}s[/]"
        )
    raise typer.Exit(exit_code_for(result))


@app.command("egress-proxy")
def egress_proxy(
    host: Annotated[
        str | None, typer.Option(help="Interface (default AGENTIC_EGRESS_PROXY_HOST or 0.0.0.0)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default AGENTIC_EGRESS_PROXY_PORT or 3128)")] = None,
) -> None:
    """Run the egress proxy on TCP for a cluster's sandbox pods (settings: AGENTIC_EGRESS_PROXY_*)."""
    from sandbox.egress_listener import EgressListenerSettings, serve_egress_proxy

    overrides: dict[str, object] = {"host": host, "port": port}
    settings = EgressListenerSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    server = Settings()
    configure_logging(server.log_level, server.log_format)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_egress_proxy(settings)

    asyncio.run(main())


@app.command()
def doctor() -> None:
    """Check what this host can run, with a fix for each missing piece (always exits 0)."""
    checks = asyncio.run(run_checks(Settings()))
    Console().print(render_checks(checks))
    missing = [c for c in checks if not c.ok]
    if missing:
        Console().print(f"{len(missing)} item(s) missing or not working; optional ones only limit features.")
    else:
        Console().print("everything is in place.")


async def _prune(settings: Settings) -> int:
    from workspace.config import open_store

    async with open_store(settings.workspace) as store:
        return await store.prune_run_outputs()


@app.command()
def prune() -> None:
    """Delete run output past AGENTIC_RUN_OUTPUT_RETENTION_S or over a tenant's quota (files stay)."""
    count = asyncio.run(_prune(Settings()))
    _err.print(f"deleted {count} run output(s)")


async def _export(settings: Settings, workspace_id: str, remote: str, tenant: str | None) -> ExportResult:
    from server.tenancy import TenantStore
    from workspace.base import VersionStore
    from workspace.config import open_store
    from workspace.git_export import GitExporter

    async with open_store(settings.workspace) as raw:
        store: VersionStore = TenantStore(raw, tenant) if tenant is not None else raw
        return await GitExporter(settings.export).export(store, workspace_id, remote)


@app.command("export")
def export_workspace(
    workspace: Annotated[str, typer.Argument(help="Workspace id")],
    remote: Annotated[str, typer.Option("--remote", help="A remote named in AGENTIC_EXPORT_REMOTES")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Refuse unless the workspace belongs to this tenant")
    ] = None,
) -> None:
    """Push WORKSPACE's history to a git remote: each version one commit, only the new ones.

    Prints the branch's new head commit on stdout. Exit 2 for an unknown workspace or remote,
    1 when git or the remote failed.
    """
    from workspace.errors import GitExportError, UnknownRemoteError, WorkspaceError, WorkspaceNotFoundError

    if tenant is not None:
        _check_tenant(tenant)
    try:
        result = asyncio.run(_export(Settings(), workspace, remote, tenant))
    except (UnknownRemoteError, WorkspaceNotFoundError) as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except (GitExportError, WorkspaceError) as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    _err.print(
        f"{result.commits} new commit(s) on {result.branch} of remote {result.remote} "
        f"({result.versions} version(s) in the workspace)"
    )
    for path in result.skipped_paths:
        _err.print(f"[yellow]not exported:[/] {path} (git does not carry .git paths)")
    if result.head is not None:
        sys.stdout.write(result.head + "\n")


keys_app = typer.Typer(
    help="API keys of tenants, stored hashed in the server's database.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


def _key_store(settings: Settings) -> KeyStore:
    from server.agent_protocol.storage import async_url
    from server.keys import KeyStore

    ap = settings.agent_protocol
    return KeyStore.from_url(async_url(ap.database_url, ap.data_dir))


async def _with_keys(settings: Settings, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    store = _key_store(settings)
    try:
        await store.setup()
        return await action(store)
    finally:
        await store.close()


def _check_tenant(tenant: str) -> None:
    if not TENANT_PATTERN.match(tenant):
        _err.print(f"[red]error:[/] tenant {tenant!r} must be 1-64 letters, digits, '_', '.' or '-'")
        raise typer.Exit(2)


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Argument(help="Tenant the key acts for")]) -> None:
    """Create a key for TENANT and print it (it is shown only this once)."""
    _check_tenant(tenant)
    info, key = asyncio.run(_with_keys(Settings(), lambda store: store.create_key(tenant)))
    _err.print(f"created key {info.key_id} for tenant {tenant}; store it now, it cannot be shown again:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Argument(help="Only this tenant's keys")] = None,
) -> None:
    """List keys (id, tenant, created, revoked); never the secrets."""
    infos = asyncio.run(_with_keys(Settings(), lambda store: store.list_keys(tenant)))
    for info in infos:
        sys.stdout.write(f"{info.key_id}\t{info.tenant}\t{info.created_at}\t{info.revoked_at or 'active'}\n")
    if not infos:
        _err.print("no keys")


@keys_app.command("revoke")
def keys_revoke(
    tenant: Annotated[str, typer.Argument(help="Tenant whose keys to revoke")],
    key_id: Annotated[str | None, typer.Option("--key-id", help="Revoke only this key")] = None,
) -> None:
    """Revoke TENANT's keys (or one with --key-id); effective on the next request."""
    _check_tenant(tenant)
    count = asyncio.run(_with_keys(Settings(), lambda store: store.revoke_keys(tenant, key_id)))
    _err.print(f"revoked {count} key(s) of tenant {tenant}")
    if count == 0:
        raise typer.Exit(1)

        raise typer.Exit(1)


model_app = typer.Typer(help="The embedded model (Qwen2.5-Coder-1.5B Q4_K_M).", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("setup")
def model_setup() -> None:
    """Download and assemble the embedded model (a fast no-op when it is current)."""
    from agents.runtime.cli import main as model_main

    raise typer.Exit(model_main(["setup"]))


@model_app.command("path")
def model_path() -> None:
    """Print where the model file lives (exit 1 when it is missing or stale)."""
    from agents.runtime.cli import main as model_main

    raise typer.Exit(model_main(["path"]))


@model_app.command("bench")
def model_bench(max_tokens: Annotated[int, typer.Option("--max-tokens")] = 128) -> None:
    """Start the embedded server and measure its generation speed."""
    from agents.runtime.cli import main as model_main

    raise typer.Exit(model_main(["bench", "--max-tokens", str(max_tokens)]))


libsets_app = typer.Typer(help="Library sets for the local sandbox.", no_args_is_help=True)
app.add_typer(libsets_app, name="libsets")


@libsets_app.command("build")
def libsets_build() -> None:
    """Build the library sets (base, datascience) into the data dir; a no-op when current."""
    from sandbox.host.libset_dirs import main as libsets_main

    raise typer.Exit(libsets_main(["build"]))
