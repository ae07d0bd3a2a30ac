"""A real OpenAI-compatible embeddings server on 127.0.0.1 with deterministic, topic-shaped vectors.

``POST /v1/embeddings`` answers one vector per input: dimension ``i`` counts the input's words
that belong to topic ``i`` of :data:`TOPICS`, the last one is a small constant (no zero vectors).
So "which programming language" lands near an item about TypeScript and far from one about pizza:
a ranking test can fail. Every request body and ``Authorization`` header is recorded.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DIMS", "TOPICS", "TopicEmbeddings", "topic_vector"]

TOPICS: list[frozenset[str]] = [
    frozenset({"typescript", "python", "code", "coding", "programming", "language", "deno", "program"}),
    frozenset({"pizza", "food", "eat", "eats", "pasta", "lunch", "dinner", "cooking"}),
    frozenset({"berlin", "paris", "city", "live", "lives", "home", "town"}),
    frozenset({"dark", "theme", "mode", "editor", "colour", "color"}),
]
DIMS = len(TOPICS) + 1


def topic_vector(text: str) -> list[float]:
    """The vector of ``text``: words per topic, then 0.1."""
    words = re.findall(r"[a-z]+", text.lower())
    return [float(sum(word in topic for word in words)) for topic in TOPICS] + [0.1]


class TopicEmbeddings:
    """The server; use as a ``with`` block. ``fail`` makes it answer 500 (endpoint down)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.fail = False
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL (``.../v1``)."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> TopicEmbeddings:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                owner.requests.append(body)
                owner.authorizations.append(self.headers.get("Authorization", ""))
                if owner.fail or self.path != "/v1/embeddings":
                    payload = b'{"error": "down"}'
                    self.send_response(500 if owner.fail else 404)
                else:
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    data = [
                        {"object": "embedding", "index": i, "embedding": topic_vector(text)}
                        for i, text in enumerate(inputs)
                    ]
                    payload = json.dumps(
                        {"object": "list", "data": data, "model": body.get("model")}
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
