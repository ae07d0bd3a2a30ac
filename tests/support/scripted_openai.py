"""A real OpenAI-compatible chat server on 127.0.0.1 that replies from a script (tests and benches).

Driven through the real ``langchain-openai`` client: ``POST /v1/chat/completions`` (streaming and
not), ``GET /v1/models``. Each scripted reply may require a substring of the request (``match``), so
a test can say "the router gets this, the code writer gets that" without depending on call order
across agents. Every request body is recorded in ``requests``; requests nothing matched are in
``unmatched`` and get ``default`` as the reply.

Usage::

    with ScriptedOpenAI() as llm:
        llm.add(Reply('{"next": "code"}', match=ROUTER))
        llm.when(ROUTER, '{"next": "answer", "answer": "done"}')   # repeats forever
        ChatOpenAI(base_url=llm.url, api_key="x", model="m")
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CODE", "PREDICT", "REPAIR", "RESPOND", "ROUTER", "SUMMARY", "TESTS", "Reply", "ScriptedOpenAI"]

# Substrings of our agents' prompts, to aim a reply at one kind of request.
ROUTER = "You are the Task Agent"
CODE = "You write small, complete"
REPAIR = "It failed."
TESTS = "You write tests"
SUMMARY = "Condense the material"
RESPOND = "helpful coding assistant"
PREDICT = "You compute values precisely"


@dataclass
class Reply:
    """One canned reply; ``match`` (if set) must occur in the request's message text."""

    content: str
    match: str | None = None
    delay_s: float = 0.0


def _request_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        elif content is not None:
            parts.append(str(content))
    return "\n".join(parts)


class ScriptedOpenAI:
    """The server; start with ``start()`` or a ``with`` block."""

    def __init__(self, replies: Iterable[Reply | str] = (), *, default: str = "(script exhausted)") -> None:
        self.queue: list[Reply] = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        self.rules: list[Reply] = []
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.unmatched: list[str] = []
        self.authorizations: list[str] = []  # the Authorization header of every POST, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- script -----------------------------------------------------------------------------
    def add(self, *replies: Reply | str) -> ScriptedOpenAI:
        """Queue one-shot replies (consumed in order among those that match)."""
        with self._lock:
            self.queue.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)
        return self

    def when(self, match: str, content: str) -> ScriptedOpenAI:
        """A standing reply for every request containing ``match`` (used when no queued reply fits)."""
        with self._lock:
            self.rules.append(Reply(content, match=match))
        return self

    def reset(self) -> None:
        """Forget the script and the recorded requests."""
        with self._lock:
            self.queue.clear()
            self.rules.clear()
            self.requests.clear()
            self.unmatched.clear()
            self.authorizations.clear()

    def requests_matching(self, text: str) -> list[dict[str, Any]]:
        """Recorded requests whose message text contains ``text``."""
        return [r for r in self.requests if text in _request_text(r)]

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        text = _request_text(body)
        with self._lock:
            self.requests.append(body)
            for index, reply in enumerate(self.queue):
                if reply.match is None or reply.match in text:
                    return self.queue.pop(index)
            for rule in self.rules:
                if rule.match is not None and rule.match in text:
                    return rule
            self.unmatched.append(text[-500:])
            return Reply(self.default)

    # -- server -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for an OpenAI client (``.../v1``)."""
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedOpenAI:
        """Listen on a free loopback port in a background thread."""
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (~40 ms per reply)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    data = {
                        "object": "list",
                        "data": [{"id": "scripted", "object": "model", "owned_by": "test"}],
                    }
                    self._send(200, json.dumps(data).encode(), "application/json")
                else:
                    self._send(404, b'{"error": "not found"}', "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                with script._lock:
                    script.authorizations.append(self.headers.get("Authorization", ""))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": "not found"}', "application/json")
                    return
                reply = script._next_reply(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                model = body.get("model", "scripted")
                ident = "chatcmpl-" + uuid.uuid4().hex[:12]
                created = int(time.time())
                if body.get("stream"):
                    self._stream(ident, created, model, reply.content, body)
                    return
                data = {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }
                self._send(200, json.dumps(data).encode(), "application/json")

            def _stream(
                self, ident: str, created: int, model: str, content: str, body: dict[str, Any]
            ) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                # Chunked: the connection stays open after the reply, as a real endpoint's does.
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def write(data: bytes) -> None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

                def emit(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
                    chunk = {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                        **extra,
                    }
                    write(f"data: {json.dumps(chunk)}\n\n".encode())

                emit({"role": "assistant", "content": ""})
                for start in range(0, len(content), 16):
                    emit({"content": content[start : start + 16]})
                emit({}, "stop")
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
                    chunk = {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                    write(f"data: {json.dumps(chunk)}\n\n".encode())
                write(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scripted-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
