"""One router per resource; :mod:`server.app` includes them under ``/v1``."""

from server.routes import docs, files, health, runs, versions, workspaces

__all__ = ["docs", "files", "health", "runs", "versions", "workspaces"]
