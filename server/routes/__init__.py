"""One router per resource; :mod:`server.app` includes them under ``/v1``."""

from server.routes import apps, docs, export, files, health, runs, versions, workspaces

__all__ = ["apps", "docs", "export", "files", "health", "runs", "versions", "workspaces"]
