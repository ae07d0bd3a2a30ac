"""``python -m agents.runtime setup|path|bench``: the model commands without the server's CLI."""

from agents.runtime.cli import main

raise SystemExit(main())
