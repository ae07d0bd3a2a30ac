"""N concurrent streamed Agent Protocol runs against one server process, with the scripted model.

The server is ``server.app:create_app`` under uvicorn in its own process, serving the real agent
graph with the model pointed at the scripted OpenAI-compatible server (the Task Agent answers
directly, so the load is the serving path: HTTP, run manager, graph, checkpointer, model
streaming; no sandbox). Each run creates a thread and streams ``values`` + ``messages-tuple`` +
``custom`` through ``langgraph-sdk``. The scripted model runs in a process of its own: its
threads would otherwise take the client's GIL, and the client's delays would be counted as the
server's. Besides times, it prints the CPU time the server process spent per run under load
(from ``/proc``), the figure least disturbed by other work on a shared machine.

Baseline, measured in the same process first: the same run done alone, a few times in a row.
Prints p50 / p99 of the time to the first event (from the run's start, thread creation included,
and from the stream request alone: its first byte) and to completion for both, the failure count
(a failure: an exception, an ``error`` event, or a run whose status is not ``success``), and last
the figures on one line. ``--clients K`` spreads the runs over K client processes started at
once (one Python process streaming hundreds of runs is itself slow to read them, and its delays
count as the server's). Each run is one user with an HTTP client of its own (a connection pool
per user, as users on their own machines have); ``--shared-client`` puts all of a process's runs
on one client instead (httpx scans its whole pool on every request, so one pool of hundreds of
connections costs the client processes, on the same cores as the server, about twice the CPU
per run). The server's own time to the first byte of each stream (from the request
reaching the app to its first body byte: ``agentic_stream_first_byte_seconds`` on ``/metrics``,
interpolated within its buckets as Prometheus' ``histogram_quantile`` does) is printed beside the
client's, which also counts the time before the server read the request and the client processes'
own delays. Run from the repo root: ``python bench/server_load.py [-n 200] [--clients 4]``.
To compare with another checkout, run this file from there (the server runs the code of the tree
the bench is in).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from langgraph_sdk.client import LangGraphClient  # noqa: E402

from tests.server.agent_protocol.support import ServerProcess  # noqa: E402
from tests.support.scripted_openai import RESPOND, ROUTER, ScriptedOpenAI  # noqa: E402

ANSWER = "The answer is 42. " * 8
MODES = ["values", "messages-tuple", "custom"]
BASELINE_RUNS = 5


@dataclass
class Sample:
    """Timings of one run (seconds from the request), or the failure."""

    first_event: float = 0.0  # from the start (thread creation included)
    stream_first: float = 0.0  # from the stream request: the time to its first byte
    done: float = 0.0
    error: str | None = None


def _serve_model(conn: Connection) -> None:
    """The scripted model, in its own process, until the parent says stop."""
    with ScriptedOpenAI() as llm:
        llm.when(ROUTER, json.dumps({"next": "answer", "answer": ANSWER.strip()}))
        llm.when(RESPOND, ANSWER.strip())  # the reply is streamed by the respond node (issue 9)
        conn.send(llm.url)
        conn.recv()


@contextlib.contextmanager
def scripted_model() -> Iterator[tuple[str, int | None]]:
    """Start :func:`_serve_model` in a new process; yields its base URL and pid."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_model, args=(child,), daemon=True)
    proc.start()
    try:
        yield str(parent.recv()), proc.pid
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_FIRST_BYTE = "agentic_stream_first_byte_seconds_bucket"


async def first_byte_buckets(http: httpx.AsyncClient) -> dict[float, float] | None:
    """The server's cumulative first-byte histogram (upper bound -> count); None if it has none."""
    text = (await http.get("/metrics")).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(_FIRST_BYTE + "{"):
            labels, value = line.rsplit(" ", 1)
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(value)
    return buckets or None


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Quantile ``q`` (0..1) of the observations between two scrapes (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def one_run(client: LangGraphClient) -> Sample:
    """Create a thread, stream one run to its end, check its status."""
    sample = Sample()
    start = time.perf_counter()
    try:
        thread = await client.threads.create()
        tid = thread["thread_id"]
        run_id = None
        streamed = time.perf_counter()
        async for part in client.runs.stream(
            tid,
            "agent",
            input={"messages": [{"role": "user", "content": "what is the answer?"}]},
            stream_mode=MODES,
        ):
            if not sample.first_event:
                sample.first_event = time.perf_counter() - start
                sample.stream_first = time.perf_counter() - streamed
            if part.event == "metadata":
                run_id = part.data["run_id"]
            elif part.event == "error":
                sample.error = f"error event: {part.data}"
        sample.done = time.perf_counter() - start
        if run_id is None:
            sample.error = sample.error or "no metadata event"
        elif sample.error is None:
            status = (await client.runs.get(tid, run_id))["status"]
            if status != "success":
                sample.error = f"run ended {status}"
    except Exception as exc:  # a bench counts failures instead of stopping at the first
        sample.error = f"{type(exc).__name__}: {exc}"
    return sample


def summary(label: str, samples: list[Sample]) -> str:
    """One line of p50 / p99 for first event and completion."""
    ok = [s for s in samples if s.error is None]
    first = [s.first_event * 1000 for s in ok]
    done = [s.done * 1000 for s in ok]
    return (
        f"{label:<28} runs={len(samples):4d} failed={len(samples) - len(ok):3d}  "
        f"first event p50={percentile(first, 50):7.1f} ms p99={percentile(first, 99):7.1f} ms  "
        f"done p50={percentile(done, 50):7.1f} ms p99={percentile(done, 99):7.1f} ms"
    )


def _http(url: str, headers: dict[str, str], n: int, tls: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    # Idle connections expire on the client before the server's 5 s keep-alive closes them: a
    # request sent on a connection the server is closing fails (ReadError / disconnected). ``tls``:
    # one context for all of a process's clients; httpx otherwise loads the CA bundle for each
    # client it makes (~10 ms; the server is plain HTTP on loopback, so it is never used).
    limits = httpx.Limits(max_connections=n + 20, max_keepalive_connections=n + 20, keepalive_expiry=2.0)
    timeout = httpx.Timeout(connect=30, read=300, write=60, pool=120)
    return httpx.AsyncClient(
        base_url=url,
        headers=headers,
        limits=limits,
        timeout=timeout,
        verify=tls if tls is not None else True,
    )


async def _load(
    url: str, headers: dict[str, str], n: int, barrier: Any = None, shared: bool = False
) -> tuple[list[Sample], float, float, float]:
    """``n`` concurrent runs from this process: samples, CPU time, start and end (epoch seconds).

    Each run on a client of its own (a user's: made before the load starts, as users' clients are
    made on their own machines; its connection is opened by its first request), or with ``shared``
    all on one. With ``barrier`` (one of several client processes), a first request warms the
    process up (imports, a connection), then all wait for each other before the load starts.
    """
    async with contextlib.AsyncExitStack() as stack:
        client = LangGraphClient(await stack.enter_async_context(_http(url, headers, n)))
        tls = ssl.create_default_context()
        users = [
            LangGraphClient(await stack.enter_async_context(_http(url, headers, 1, tls)))
            for _ in range(0 if shared else n)
        ]
        if barrier is not None:
            await client.assistants.search(limit=1)
            await asyncio.to_thread(barrier.wait)
        cpu, started = time.process_time(), time.time()
        samples = list(await asyncio.gather(*(one_run(user) for user in users or [client] * n)))
        return samples, time.process_time() - cpu, started, time.time()


def _client_process(
    url: str, headers: dict[str, str], n: int, barrier: Any, shared: bool, conn: Connection
) -> None:
    """One of ``--clients`` processes: run its share once all are ready, send back the results.

    At a lower priority (nice 10): the clients stand for users on other machines, so on a small
    host they take the CPU the server leaves, instead of a share of the server's (with 4 client
    processes on 2 cores, the server otherwise got about a core's 2/5 while they were all busy).
    """
    os.nice(10)
    conn.send(asyncio.run(_load(url, headers, n, barrier, shared)))


def _load_from_processes(
    url: str, headers: dict[str, str], shares: list[int], shared: bool
) -> tuple[list[Sample], float, float]:
    """The runs spread over client processes: samples, their CPU time, and the wall time of the load."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(shares))
    pipes, procs = [], []
    for share in shares:
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_client_process, args=(url, headers, share, barrier, shared, child), daemon=True
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    samples: list[Sample] = []
    cpu, starts, ends = 0.0, [], []
    for parent in pipes:
        got, used, started, ended = parent.recv()
        samples.extend(got)
        cpu += used
        starts.append(started)
        ends.append(ended)
    for proc in procs:
        proc.join(10)
    return samples, cpu, max(ends) - min(starts)


async def main(
    n: int, extra_env: dict[str, str] | None = None, clients: int = 1, shared: bool = False
) -> int:
    with tempfile.TemporaryDirectory(prefix="agentic-load-") as tmp, scripted_model() as (llm_url, llm_pid):
        env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "scripted", "AGENTIC_MODEL": "scripted"}
        env["AGENTIC_RATE_LIMIT_PER_MINUTE"] = "0"  # ~600 requests in seconds: measure serving, not the limit
        env.update(extra_env or {})
        with ServerProcess(Path(tmp), env) as server:
            async with _http(server.url, server.headers, 1) as http:
                client = LangGraphClient(http)
                await one_run(client)  # warm-up: imports, first model connection, first checkpoint
                baseline = [await one_run(client) for _ in range(BASELINE_RUNS)]
            shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
            async with _http(server.url, server.headers, 1) as http:
                buckets_before = await first_byte_buckets(http)
            server_cpu = cpu_seconds(server.pid)  # client processes starting up cost the server nothing
            model_cpu = cpu_seconds(llm_pid) if llm_pid is not None else None
            if clients == 1:
                loaded, client_cpu, started, ended = await _load(server.url, server.headers, n, shared=shared)
                wall = ended - started
            else:
                loaded, client_cpu, wall = await asyncio.to_thread(
                    _load_from_processes, server.url, server.headers, shares, shared
                )
            server_end = cpu_seconds(server.pid)
            model_end = cpu_seconds(llm_pid) if llm_pid is not None else None
            async with _http(server.url, server.headers, 1) as http:
                buckets_after = await first_byte_buckets(http)
            if server_cpu is not None and server_end is not None:
                server_cpu = server_end - server_cpu
            model_cpu = model_end - model_cpu if model_cpu is not None and model_end is not None else None
            errors = sorted({s.error for s in loaded + baseline if s.error})
    print(summary("baseline (1 run at a time)", baseline))
    print(summary(f"{n} concurrent runs", loaded))
    for err in errors[:5]:
        print(f"  failure: {err[:200]}")
    ok = [s for s in loaded if s.error is None]
    failed = len(loaded) - len(ok)
    per_run = f"{server_cpu * 1000 / n:.1f}ms" if server_cpu is not None else "n/a"
    print(
        f"CPU under load: server {per_run} per run, clients ({clients} process(es)) "
        f"{client_cpu * 1000 / n:.1f}ms per run, scripted model "
        + (f"{model_cpu * 1000 / n:.1f}ms per run" if model_cpu is not None else "n/a")
    )
    server_first = "n/a"
    if buckets_before is not None and buckets_after is not None:
        server_first = "/".join(
            f"{bucket_quantile(buckets_before, buckets_after, q) * 1000:.1f}ms" for q in (0.5, 0.99)
        )
    base_done = percentile([s.done for s in baseline if s.error is None], 50) or float("nan")
    stream_first = [s.stream_first for s in ok]
    print(
        f"N={n} clients={clients}{' shared' if shared else ''} wall={wall:.2f}s "
        f"first_event_p50={percentile([s.first_event for s in ok], 50) * 1000:.1f}ms "
        f"first_event_p99={percentile([s.first_event for s in ok], 99) * 1000:.1f}ms "
        f"stream_first_byte_p50={percentile(stream_first, 50) * 1000:.1f}ms "
        f"stream_first_byte_p99={percentile(stream_first, 99) * 1000:.1f}ms "
        f"server_first_byte_p50/p99={server_first} "
        f"done_p50={percentile([s.done for s in ok], 50) * 1000:.1f}ms "
        f"done_p99={percentile([s.done for s in ok], 99) * 1000:.1f}ms "
        f"done_p50_vs_baseline={percentile([s.done for s in ok], 50) / base_done:.1f}x "
        f"server_cpu_per_run={per_run} failures={failed}"
    )
    return 0 if failed == 0 and not any(s.error for s in baseline) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--runs", type=int, default=200, help="concurrent runs (default 200)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra server setting, e.g. AGENTIC_PERSIST_EVENTS=always or AGENTIC_DATABASE_URL=postgresql://...",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="client processes sharing the runs (default 1); one Python process streaming hundreds "
        "of runs is itself slow to read them, and its delays count as the server's",
    )
    parser.add_argument(
        "--shared-client",
        action="store_true",
        help="all runs of a client process on one HTTP client (one pool) instead of one client per run",
    )
    args = parser.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    raise SystemExit(asyncio.run(main(args.runs, env, max(1, args.clients), args.shared_client)))
