"""Time 1000 writes + 1000 reads on the SQLite and the Postgres version store; print postgres/sqlite last.

Usage: ``python bench/workspace_store.py [--postgres-url postgresql://...] [-n 1000]``. Without a URL
a throw-away Postgres cluster is started (as the test suite does; needs the postgresql package).
Writes go one after another to 50 paths (so most carry a diff to their parent); reads fetch the latest
version of a path. A second round runs the same work 8 tasks at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workspace import SqlVersionStore  # noqa: E402

PATHS = 50


def _content(i: int) -> str:
    return "".join(f"line {j} of file, revision {i if j == i % 40 else 0}\n" for j in range(40))


async def _measure(url: str, n: int, concurrency: int) -> tuple[float, float]:
    async with SqlVersionStore.from_url(url) as store:
        await store.setup()
        ws = await store.create_workspace(f"bench-{concurrency}")
        sem = asyncio.Semaphore(concurrency)

        async def write(i: int) -> None:
            async with sem:
                await store.write(ws.id, f"src/f{i % PATHS}.py", _content(i), author="bench")

        async def read(i: int) -> None:
            async with sem:
                await store.read(ws.id, f"src/f{i % PATHS}.py")

        start = time.perf_counter()
        if concurrency == 1:
            for i in range(n):
                await write(i)
        else:
            await asyncio.gather(*(write(i) for i in range(n)))
        writes = time.perf_counter() - start
        start = time.perf_counter()
        if concurrency == 1:
            for i in range(n):
                await read(i)
        else:
            await asyncio.gather(*(read(i) for i in range(n)))
        reads = time.perf_counter() - start
        return writes, reads


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.postgres import postgres_cluster

    with postgres_cluster() as started:
        yield started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, _postgres(args.postgres_url) as pg_url:
        backends = {"sqlite": f"sqlite:///{tmp}/bench.db", "postgres": pg_url}
        for concurrency in (1, 8):
            for name, url in backends.items():
                writes, reads = asyncio.run(_measure(url, args.n, concurrency))
                if concurrency == 1:
                    totals[name] = writes + reads
                print(
                    f"{name:8s} concurrency={concurrency}: {args.n} writes {writes:6.2f}s "
                    f"({writes / args.n * 1000:5.2f} ms each), {args.n} reads {reads:6.2f}s "
                    f"({reads / args.n * 1000:5.2f} ms each)"
                )
    ratio = totals["postgres"] / totals["sqlite"]
    print(f"postgres/sqlite time ratio (sequential writes+reads): {ratio:.2f}")


if __name__ == "__main__":
    main()
