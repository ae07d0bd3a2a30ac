"""How often the Task Agent sends a request where it belongs, with the embedded model.

Each labeled request (``bench/routing_cases.py``: 80 threads: code, code-bearing, follow-ups,
greetings and conceptual questions, search, summary, turns after a specialist reported) goes
through the real Task Agent node (``task_agent(state, runtime)``) with the embedded Qwen model; the
route it picks is compared with the label (``answer`` also counts ``done`` / ``reply``: the turn
ends with a reply). Baselines in the same run: the model's JSON choice alone (``decide``, without
the deterministic first pass), and the old router's keyword fallback (its regexes, copied here).
Cases marked ``held_out`` were written after the first pass's rules and not tuned on; their rate is
printed apart. Prints each miss, accuracy per label, the code-bearing rate, and overall last.

Usage: python bench/routing.py [--limit N] [--only LABEL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langgraph.runtime import Runtime  # noqa: E402
from routing_cases import CASES, RoutingCase  # noqa: E402

from agents.context import Context  # noqa: E402
from agents.state import State  # noqa: E402

try:  # the Task Agent's module (agents.router before issue 9)
    from agents.task_agent import decide, task_agent
except ImportError:  # pragma: no cover - the old layout, for the before figure
    from agents.router import decide, task_agent  # type: ignore[no-redef]

# The old router's keyword fallback (agents/router.py before issue 9), as a fixed baseline.
_OLD_CODE = re.compile(
    r"\b(write|code|program|script|function|python|typescript|implement|fix|bug|run|compute|calculate)\b",
    re.I,
)
_OLD_SEARCH = re.compile(r"\b(search|look up|find|latest|news|who is|what is|docs?|documentation)\b", re.I)
_OLD_SUMMARY = re.compile(r"\b(summari[sz]e|summary|tl;?dr|condense)\b", re.I)


def thread_of(case: RoutingCase) -> list[BaseMessage]:
    """The conversation the Task Agent sees."""
    messages: list[BaseMessage] = []
    for role, name, text in case.before:
        messages.append(HumanMessage(text) if role == "user" else AIMessage(text, name=name or None))
    messages.append(AIMessage(case.text, name=case.speaker) if case.speaker else HumanMessage(case.text))
    return messages


def label_of(route: Any) -> str:
    """The bench label of a route (a reply of any kind is ``answer``)."""
    return "answer" if route in ("answer", "done", "reply", "respond", None) else str(route)


async def route_case(case: RoutingCase, context: Context) -> str:
    """The label the real Task Agent node picks for ``case``."""
    state = State(messages=thread_of(case))
    update = await task_agent(state, Runtime(context=context))
    return label_of(update.get("route"))


def keyword_label(case: RoutingCase) -> str:
    """Baseline: the old keyword guess on the request alone (``answer`` when nothing fits)."""
    if case.speaker:
        return "answer"
    for pattern, label in ((_OLD_SUMMARY, "summarize"), (_OLD_CODE, "code"), (_OLD_SEARCH, "search")):
        if pattern.search(case.text):
            return label
    return "answer"


async def model_label(case: RoutingCase, context: Context) -> str:
    """Baseline: the model's JSON choice alone, without the first pass (``answer`` when unreadable)."""
    decision = await decide(context, thread_of(case))
    return label_of(decision[0] if decision else None)


def table(name: str, results: list[tuple[RoutingCase, str]]) -> float:
    """Print accuracy per label for one router; return the overall accuracy in percent."""
    labels = sorted({c.label for c, _ in results})
    for label in labels:
        rows = [(c, got) for c, got in results if c.label == label]
        hits = sum(got == c.label for c, got in rows)
        print(f"  {name:8s} {label:10s} {hits:3d}/{len(rows):3d} = {100 * hits / len(rows):5.1f}%")
    bearing = [(c, got) for c, got in results if c.bearing]
    if bearing:
        hits = sum(got == "code" for _, got in bearing)
        print(f"  {name:8s} {'bearing':10s} {hits:3d}/{len(bearing):3d} = {100 * hits / len(bearing):5.1f}%")
    overall = sum(got == c.label for c, got in results)
    return 100 * overall / len(results) if results else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases of each label")
    parser.add_argument("--only", default="", help="only cases with this label")
    parser.add_argument("--no-model-baseline", action="store_true", help="skip the model-alone baseline")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = [c for c in CASES if not args.only or c.label == args.only]
    if args.limit:
        seen: Counter[str] = Counter()
        picked = []
        for c in cases:
            if seen[c.label] < args.limit:
                picked.append(c)
                seen[c.label] += 1
        cases = picked
    context = Context(model_base_url=None, model_api_key=None, model_name=None, max_steps=6)
    model_results: list[tuple[RoutingCase, str]] = []
    started = time.monotonic()
    for n, case in enumerate(cases, 1):
        t0 = time.monotonic()
        got = await route_case(case, context)
        model_results.append((case, got))
        mark = "ok  " if got == case.label else "MISS"
        short = case.text.replace("\n", " ")[:70]
        print(
            f"{n:3d} {mark} want {case.label:9s} got {got:9s} {time.monotonic() - t0:5.1f}s  {short}",
            flush=True,
        )
    elapsed = time.monotonic() - started
    keyword_results = [(c, keyword_label(c)) for c in cases]
    alone: list[tuple[RoutingCase, str]] = []
    if not args.no_model_baseline:
        for case in cases:
            alone.append((case, await model_label(case, context)))
    print(f"\n{len(cases)} requests, {elapsed / max(len(cases), 1):.1f} s per request through the Task Agent")
    base = table("keywords", keyword_results)
    model_only = table("model", alone) if alone else float("nan")
    ours = table("router", model_results)
    held = [(c, got) for c, got in model_results if c.held_out]
    if held:
        hits = sum(got == c.label for c, got in held)
        print(f"  held-out (written after the rules): {hits}/{len(held)} = {100 * hits / len(held):.1f}%")
    bearing = [got == "code" for c, got in model_results if c.bearing]
    bearing_pct = 100 * sum(bearing) / len(bearing) if bearing else 0.0
    print(
        f"routing accuracy: overall {ours:.1f}% (model alone {model_only:.1f}%, old keywords {base:.1f}%), "
        f"code-bearing to code {bearing_pct:.0f}%, n={len(cases)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
