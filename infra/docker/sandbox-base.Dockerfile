# syntax=docker/dockerfile:1.7
# Sandbox image for library set "base" (sandbox/libsets.py): Python's standard library, and Deno
# for TypeScript, nothing else. One image per library set; the kata backend picks it by set name.
#   docker build -f infra/docker/sandbox-base.Dockerfile -t registry.example.com/agentic/sandbox-base:0.1.0 infra/docker
# No entrypoint: the backend gives the command. Runs as uid 10001 with a read-only root
# filesystem; the pod mounts a size-limited scratch emptyDir (working directory and /tmp).

FROM python:3.11.13-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Deno from its PyPI package, the same pin as the server's (pyproject.toml).
RUN pip install deno==2.9.8 \
 && ln -s "$(python -c 'import deno; print(deno.find_deno_bin())')" /usr/local/bin/deno \
 && deno --version \
 && groupadd --gid 10001 sandbox \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin sandbox
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DENO_DIR=/tmp/deno \
    DENO_NO_UPDATE_CHECK=1
WORKDIR /tmp
USER 10001:10001
CMD ["python3"]
