# syntax=docker/dockerfile:1.7
# Sandbox image for library set "datascience" (sandbox/libsets.py): numpy, pandas, matplotlib (Agg).
# The same pins (the whole closure) and the same layout as the local set: packages in /opt/libset
# on PYTHONPATH, bytecode compiled at build time (the root filesystem is read-only at run time).
#   docker build -f infra/docker/sandbox-datascience.Dockerfile -t registry.example.com/agentic/sandbox-datascience:0.1.0 infra/docker
# No entrypoint: the backend gives the command. Runs as uid 10001.

FROM python:3.11.13-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install deno==2.9.8 \
 && ln -s "$(python -c 'import deno; print(deno.find_deno_bin())')" /usr/local/bin/deno \
 && deno --version \
 && groupadd --gid 10001 sandbox \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin sandbox
RUN pip install --no-deps --target /opt/libset \
      numpy==2.3.5 \
      pandas==2.3.3 \
      matplotlib==3.10.8 \
      contourpy==1.3.3 \
      cycler==0.12.1 \
      fonttools==4.68.0 \
      kiwisolver==1.5.1 \
      packaging==26.4 \
      pillow==13.0.0 \
      pyparsing==3.3.3 \
      python-dateutil==4.0.0 \
      pytz==2026.6 \
      tzdata==2026.6 \
 && python -m compileall -q /opt/libset \
 && PYTHONPATH=/opt/libset MPLBACKEND=Agg MPLCONFIGDIR=/tmp/matplotlib \
      python -c "import numpy, pandas, matplotlib.pyplot; print(numpy.__version__, pandas.__version__)"
ENV PYTHONPATH=/opt/libset \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DENO_DIR=/tmp/deno \
    DENO_NO_UPDATE_CHECK=1
WORKDIR /tmp
USER 10001:10001
CMD ["python3"]
