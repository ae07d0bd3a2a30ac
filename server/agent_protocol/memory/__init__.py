"""The long-term memory store (LangGraph's ``BaseStore``), per tenant, with TTLs and semantic search.

    config.py      MemoryStoreSettings (``AGENTIC_STORE_*``): embedding model, TTL, limits
    backends.py    open_memory_store: LangGraph's Postgres / SQLite store on the server's database
    semantic.py    SemanticStore: embeds indexed fields on put, ranks searches with a ``query``
    vectors.py     the vectors table and its migrations
    embeddings.py  the operator's OpenAI-compatible endpoint, or the embedded WordLlama model
    tenant.py      TenantMemoryStore: one tenant's view (its own first label), every op checked
    errors.py      what the routes map to 422 / 503

The HTTP routes are ``api/store.py``; runs get the tenant's view as LangGraph's ``Runtime.store``
(:meth:`server.agent_protocol.graphs.GraphHost.graph_for`). Nothing is imported here, so the
settings model loads without the store's dependencies.
"""
