"""A LangChain callback handler that turns a run's graph nodes and model calls into spans.

A node is a chain whose name is its ``langgraph_node`` metadata (the node's own runnable; neither
the chains inside it nor a subgraph named as the node it runs in are spanned). Its span's parent
is the span of the nearest spanned ancestor (callbacks name their parent run), so a subgraph's
nodes sit under the node that runs the subgraph, and top-level nodes under the run's span
(``root``). While a node runs its span is the current one, so spans opened in the node's code
through ``opentelemetry-api`` (the tools' ``sandbox.run``) are its children: the handler runs
inline (``run_inline``) in the node's own context, where LangGraph calls ``on_chain_start`` and
``on_chain_end``.

One handler per run: it keeps the open spans and the parent links of the callbacks in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

__all__ = ["SpanCallbackHandler"]


def _model_name(metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    params = kwargs.get("invocation_params") or {}
    name = (metadata or {}).get("ls_model_name") or params.get("model") or params.get("model_name")
    return str(name or "unknown")


def _usage(response: LLMResult) -> tuple[int | None, int | None]:
    """Input and output token counts, from the provider's usage or the message's usage metadata."""
    usage = (response.llm_output or {}).get("token_usage") or {}
    if usage:
        return usage.get("prompt_tokens"), usage.get("completion_tokens")
    for generations in response.generations:
        for generation in generations:
            message = generation.message if isinstance(generation, ChatGeneration) else None
            meta = message.usage_metadata if isinstance(message, AIMessage) else None
            if meta:
                return meta.get("input_tokens"), meta.get("output_tokens")
    return None, None


class SpanCallbackHandler(BaseCallbackHandler):
    """Spans for graph nodes and chat model calls of one run, under ``root`` (the run's context)."""

    run_inline = True  # called in the node's own context, so attaching a span there makes it current

    def __init__(self, tracer: Tracer, root: context.Context) -> None:
        self._tracer = tracer
        self._root = root
        self._spans: dict[UUID, tuple[Span, object | None]] = {}  # run id -> span, context token
        self._parents: dict[UUID, UUID | None] = {}
        self._nodes: dict[UUID, tuple[str, str]] = {}  # a node span's node and checkpoint namespace

    def _nearest(self, parent_run_id: UUID | None) -> UUID | None:
        """The run id of the nearest ancestor that has a span."""
        seen = parent_run_id
        while seen is not None and seen not in self._spans:
            seen = self._parents.get(seen)
        return seen

    def _parent(self, parent_run_id: UUID | None) -> context.Context:
        nearest = self._nearest(parent_run_id)
        if nearest is None:
            return self._root
        return trace.set_span_in_context(self._spans[nearest][0], self._root)

    def _close(self, run_id: UUID, error: BaseException | None = None) -> None:
        self._parents.pop(run_id, None)
        self._nodes.pop(run_id, None)
        opened = self._spans.pop(run_id, None)
        if opened is None:
            return
        span, token = opened
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
        span.end()
        if token is not None:
            try:
                context.detach(token)  # type: ignore[arg-type]
            except ValueError:  # ended in another context than it started in: the span is closed anyway
                pass

    # chains (graph nodes) --------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a node's span (and make it current) when this chain is a graph node."""
        self._parents[run_id] = parent_run_id
        meta = metadata or {}
        node = meta.get("langgraph_node")
        if node is None or kwargs.get("name") != node:
            return
        key = (str(node), str(meta.get("langgraph_checkpoint_ns", "")))
        nearest = self._nearest(parent_run_id)
        if nearest is not None and self._nodes.get(nearest) == key:
            return  # the node's subgraph (named as the node) inside the node's own span
        self._nodes[run_id] = key
        span = self._tracer.start_span(
            str(node),
            context=self._parent(parent_run_id),
            attributes={
                "langgraph.node": str(node),
                "langgraph.step": int(meta.get("langgraph_step", 0)),
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._spans[run_id] = (span, token)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the node's span."""
        self._close(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the node's span as failed (an interrupt or a cancel ends a node this way too)."""
        self._close(run_id, error)

    # chat models -----------------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a model call's span under its node."""
        self._parents[run_id] = parent_run_id
        model = _model_name(metadata, kwargs)
        span = self._tracer.start_span(
            f"chat {model}",
            context=self._parent(parent_run_id),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.request.message_count": sum(len(batch) for batch in messages),
            },
        )
        self._spans[run_id] = (span, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a model call's span with its token counts when the provider gave them."""
        opened = self._spans.get(run_id)
        if opened is not None:
            tokens_in, tokens_out = _usage(response)
            if tokens_in is not None:
                opened[0].set_attribute("gen_ai.usage.input_tokens", int(tokens_in))
            if tokens_out is not None:
                opened[0].set_attribute("gen_ai.usage.output_tokens", int(tokens_out))
        self._close(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a model call's span as failed."""
        self._close(run_id, error)

    # other callbacks only need their parent link, for nesting ---------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember the tool's parent (a model call it makes nests under the node)."""
        self._parents[run_id] = parent_run_id

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the tool."""
        self._parents.pop(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the tool."""
        self._parents.pop(run_id, None)
