"""Web search behind one small interface, so the agents never depend on a live search engine.

``WebSearchBackend`` is the protocol; ``DdgsSearch`` asks DuckDuckGo & co. through ``ddgs`` with a hard
timeout (offline it fails fast with :class:`SearchUnavailableError`), and ``LocalCorpusSearch`` ranks
a fixed list of documents (tests, air-gapped installs).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "DdgsSearch",
    "LocalCorpusSearch",
    "SearchUnavailableError",
    "WebResult",
    "WebSearchBackend",
]

logger = logging.getLogger(__name__)


class SearchUnavailableError(Exception):
    """The search engine could not be reached (offline, timeout, blocked); the message says why."""


@dataclass(frozen=True, kw_only=True)
class WebResult:
    """One search hit with its source."""

    title: str
    url: str
    snippet: str


@runtime_checkable
class WebSearchBackend(Protocol):
    """Something that turns a query into ranked results with sources."""

    name: str

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        """Return up to ``max_results`` hits; raise SearchUnavailableError when the engine is unreachable."""
        ...


class DdgsSearch:
    """Metasearch through the ``ddgs`` package, bounded by ``timeout_s`` in total."""

    name = "ddgs"

    def __init__(self, *, timeout_s: float = 4.0, region: str = "wt-wt") -> None:
        self.timeout_s = timeout_s
        self.region = region

    def _search_sync(self, query: str, max_results: int) -> list[WebResult]:
        from ddgs import DDGS  # imported lazily: it is slow to import and only needed online

        per_request = max(1, int(self.timeout_s))
        rows = DDGS(timeout=per_request).text(query, region=self.region, max_results=max_results)
        return [
            WebResult(
                title=str(r.get("title", "")),
                url=str(r.get("href") or r.get("url") or ""),
                snippet=str(r.get("body", "")),
            )
            for r in rows
        ]

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        """Search the web; offline this raises SearchUnavailableError within ``timeout_s``."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._search_sync, query, max_results), timeout=self.timeout_s
            )
        except TimeoutError as exc:
            raise SearchUnavailableError(
                f"search unavailable: no answer from the search engines within {self.timeout_s:g} s "
                "(is this machine offline?)"
            ) from exc
        except Exception as exc:  # ddgs raises its own hierarchy plus httpx errors
            logger.info("web search failed: %s", exc)
            raise SearchUnavailableError(f"search unavailable: {exc}") from exc


_WORD = re.compile(r"[a-z0-9]+")


def _terms(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class LocalCorpusSearch:
    """Rank a fixed list of documents by shared terms (title words count double)."""

    name = "local"

    def __init__(self, documents: Iterable[WebResult]) -> None:
        self.documents = list(documents)

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        """Return the documents sharing the most terms with the query (none when nothing matches)."""
        wanted = set(_terms(query))
        scored: list[tuple[int, int, WebResult]] = []
        for index, doc in enumerate(self.documents):
            body = _terms(doc.snippet)
            title = _terms(doc.title)
            score = sum(1 for t in body if t in wanted) + 2 * sum(1 for t in title if t in wanted)
            if score:
                scored.append((-score, index, doc))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [doc for _, _, doc in scored[:max_results]]
