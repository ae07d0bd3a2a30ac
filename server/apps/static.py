"""Static sites: an ``.html`` entry is served as it is by a small stdlib server inside the app's sandbox.

Why: the simplest app a small model writes reliably is one self-contained page (HTML with inline
CSS and JavaScript). Hosting it needs no program of the model's: the platform's server below serves
the app's files from the sandbox's work dir, answers ``/`` with the entry page, and tells browsers
not to cache (a repaired page must show its new version).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from sandbox.commands import PYTHON_PATH

__all__ = ["STATIC_SERVER", "is_static_entry", "static_command"]

STATIC_SUFFIXES = (".html", ".htm")

STATIC_SERVER = """\
import http.server, os, sys
ENTRY = sys.argv[1]
class Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        if self.path.split('?', 1)[0] in ('', '/'):
            self.path = '/' + ENTRY
        return super().send_head()
    def end_headers(self):
        self.send_header('Cache-Control', 'no-store')
        super().end_headers()
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()
"""


def is_static_entry(entry: str | None) -> bool:
    """True for an entry served as a static page (``index.html``)."""
    return entry is not None and PurePosixPath(entry).suffix.lower() in STATIC_SUFFIXES


def static_command(entry: str) -> tuple[str, ...]:
    """The argv that serves the app's files with ``entry`` at ``/``."""
    return (PYTHON_PATH, "-c", STATIC_SERVER, entry)
