# syntax=docker/dockerfile:1.7
# The server image: `agentic serve` (REST API, Agent Protocol, web UI, hosted-app proxy, git export).
# Build from the repository root:
#   docker build -f infra/docker/server.Dockerfile -t registry.example.com/agentic/server:0.1.0 .
# Runs as uid 10001 with a read-only root filesystem (the Deployment mounts /var/lib/agentic,
# /var/cache/agentic and /tmp). Untrusted code never runs here: on Kubernetes it runs in Kata pods.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md langgraph.json ./
COPY agents ./agents
COPY tools ./tools
COPY sandbox ./sandbox
COPY workspace ./workspace
COPY server ./server
# Every dependency is pinned in pyproject.toml; bytecode is compiled now (the root fs is read-only).
RUN python -m venv /opt/agentic \
 && /opt/agentic/bin/pip install . \
 && /opt/agentic/bin/python -m compileall -q /opt/agentic

FROM python:3.11.13-slim-bookworm
# git: workspace export (fast-import, push); ca-certificates: HTTPS remotes and model endpoints.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 agentic \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin agentic
COPY --from=build /opt/agentic /opt/agentic
ENV PATH=/opt/agentic/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AGENTIC_HOST=0.0.0.0 \
    AGENTIC_DATA_DIR=/var/lib/agentic \
    AGENTIC_CACHE_DIR=/var/cache/agentic
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["agentic"]
CMD ["serve"]
