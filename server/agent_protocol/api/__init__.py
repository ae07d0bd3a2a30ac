"""One router per Agent Protocol resource: meta (``/info``), assistants, threads, runs."""
