"""Hosted apps: services started in sandboxes from pinned workspace versions, reached at ``/apps/{id}/``.

``store`` keeps them in the database (they survive a restart), ``manager`` starts, wakes, stops and
reaps them, ``access`` checks tokens and signed links, ``proxy`` is the reverse proxy (HTTP with
streamed bodies, SSE, WebSocket). REST endpoints live in ``server/routes/apps.py``.
"""
