"""A run's events on their way to clients: per-run fan-out (``streams``), the hubs of this process
that also tail runs executing elsewhere from the event table (``hubs``), and SSE / long-poll
responses (``sse``)."""
