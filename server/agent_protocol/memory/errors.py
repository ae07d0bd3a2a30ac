"""Errors of the memory store; the routes map them to HTTP status codes.

AgentProtocolError
├── InvalidStoreRequestError   422  (a namespace, key, value, filter or TTL the store refuses)
├── SemanticSearchOffError     422  (a search ``query`` on a server without semantic search)
└── EmbeddingUnavailableError  503  (the embedding endpoint failed: nothing was stored)
"""

from __future__ import annotations

from server.agent_protocol.errors import AgentProtocolError

__all__ = ["EmbeddingUnavailableError", "InvalidStoreRequestError", "SemanticSearchOffError"]


class InvalidStoreRequestError(AgentProtocolError):
    """The request names a namespace, key, value, filter or TTL the store refuses; the message says why."""

    status = 422
    kind = "invalid_store_request"


class SemanticSearchOffError(AgentProtocolError):
    """A search with ``query`` on a server whose operator turned semantic search off."""

    status = 422
    kind = "semantic_search_off"


class EmbeddingUnavailableError(AgentProtocolError):
    """The operator's embedding endpoint failed or answered something unusable."""

    status = 503
    kind = "embedding_unavailable"
