"""The FastAPI server: REST for workspaces, files, versions and runs, plus the ``agentic`` CLI."""

from importlib import metadata

__all__ = ["__version__"]

try:
    __version__ = metadata.version("agentic-platform")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
