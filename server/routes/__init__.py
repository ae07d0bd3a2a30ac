"""One router per resource; :mod:`server.app` includes them under ``/v1``."""

from server.routes import apps, docs, files, health, runs, versions, workspaces

__all__ = ["apps", "docs", "files", "health", "runs", "versions", "workspaces"]
