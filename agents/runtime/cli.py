"""Commands of the embedded model: ``agentic model setup|path|bench`` (or ``python -m agents.runtime ...``).

``setup`` is what ``make test`` / ``make run`` call: a fast no-op when the model is current, otherwise a
download + assembly with a progress bar. ``bench`` starts the server and measures generation speed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agents.runtime.assembly import DEFAULT_MODEL, ModelSetupError, ensure_model, is_current
from agents.settings import ModelSettings

__all__ = ["main", "measure_tokens_per_second"]

logger = logging.getLogger(__name__)


def _setup(settings: ModelSettings, console: Console) -> int:
    target = settings.models_dir / DEFAULT_MODEL.filename
    if is_current(target, DEFAULT_MODEL.sha256):
        console.print(f"model ready: {target}")
        return 0
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}
        done: dict[str, int] = {}

        def report(phase: str, advance: int, total: int | None) -> None:
            if phase not in tasks:
                label = "downloading parts" if phase == "download" else "assembling + sha256"
                tasks[phase] = progress.add_task(label, total=total, detail="")
                done[phase] = 0
            done[phase] += advance
            if phase == "download":
                detail = f"{done[phase]}/{total} parts"
            else:
                detail = f"{done[phase] / 1e6:.0f}/{(total or 0) / 1e6:.0f} MB"
            progress.update(tasks[phase], advance=advance, detail=detail)

        try:
            path = ensure_model(DEFAULT_MODEL, settings.models_dir, progress=report)
        except ModelSetupError as exc:
            console.print(f"[red]model setup failed:[/red] {exc}")
            return 1
    console.print(f"model ready: {path} ({time.monotonic() - started:.1f}s)")
    return 0


def measure_tokens_per_second(settings: ModelSettings, max_tokens: int = 128) -> dict[str, float]:
    """Start the embedded server and time one generation; returns llama.cpp's own timings."""
    import httpx

    from agents.runtime.embedded import EMBEDDED_MODEL_NAME, get_embedded_server

    t0 = time.monotonic()
    server = get_embedded_server(settings)
    load = time.monotonic() - t0
    body = {
        "model": EMBEDDED_MODEL_NAME,
        "messages": [{"role": "user", "content": "Write a Python function that merges two sorted lists."}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    t1 = time.monotonic()
    resp = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=600.0)
    resp.raise_for_status()
    wall = time.monotonic() - t1
    data = resp.json()
    timings = data.get("timings", {})
    completion = float(data.get("usage", {}).get("completion_tokens", 0))
    return {
        "load_s": load,
        "wall_s": wall,
        "completion_tokens": completion,
        "prompt_tokens_per_s": float(timings.get("prompt_per_second", 0.0)),
        "tokens_per_s": float(timings.get("predicted_per_second", completion / wall if wall else 0.0)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m agents.runtime", description=__doc__)
    parser.add_argument("command", choices=["setup", "path", "bench"])
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = ModelSettings()
    console = Console(stderr=True)
    if args.command == "setup":
        return _setup(settings, console)
    if args.command == "path":
        target = settings.models_dir / DEFAULT_MODEL.filename
        print(target)
        return 0 if is_current(target, DEFAULT_MODEL.sha256) else 1
    rc = _setup(settings, console)
    if rc:
        return rc
    numbers = measure_tokens_per_second(settings, args.max_tokens)
    for key, value in numbers.items():
        print(f"{key}: {value:.2f}")
    sys.stdout.flush()
    return 0
