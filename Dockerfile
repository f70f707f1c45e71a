# syntax=docker/dockerfile:1
# One image for every Cité+ service; the command chooses which one runs:
#   docker run citeplus:0.1.0 service anonymise --instance 1
# Built by docker-compose.yml (`docker compose build`). Secrets (pseudonymisation
# keyrings, source tokens, TLS keys, the warehouse password) are never copied in:
# they are mounted at run time (docker-compose.yml, `secrets:`).

# Exact tags: Python 3.11 (one of the versions pyproject.toml allows) and
# uv 0.13.9 (Makefile). Pin the digests too where your registry policy asks for it
# (docs/runbook.md, "Rolling upgrade"). The image runs no Kafka broker, so the Java
# runtime of the `servers` dependency group is left out.
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: resolve exactly uv.lock, without the dev group -----------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (a layer that changes only with uv.lock), then the project.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-group servers --no-install-project
# The services find avro/, proto/ and deploy/ next to their own package
# (services/runtime/paths.py), so the project is installed from /app, in place.
COPY README.md ./
COPY services ./services
COPY avro ./avro
COPY proto ./proto
COPY deploy ./deploy
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-group servers \
    && /app/.venv/bin/citeplus --help > /dev/null
# Generated once here: at run time /app is read-only for the service user.
# (gRPC modules of proto/ for the federation API, bytecode of the sources.)
RUN /app/.venv/bin/python -c "import importlib.util as u; \
from importlib import import_module as m; \
u.find_spec('services.federation.protos') and m('services.federation.protos').codegen(force=True)" \
    && /app/.venv/bin/python -m compileall -q services

# --- runtime: the virtual environment and the sources, nothing else -------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="citeplus" \
      org.opencontainers.image.description="Cité+ services (ingest, anonymise, normalise, energy-analytics, publish, api)" \
      org.opencontainers.image.licenses="EUPL-1.2"
# A fixed, unprivileged identity: operators give it the secret files it reads
# (chown 10001, mode 0600; see docs/runbook.md).
RUN groupadd --system --gid 10001 citeplus \
    && useradd --system --uid 10001 --gid citeplus --no-create-home \
       --home-dir /var/lib/citeplus --shell /usr/sbin/nologin citeplus \
    && install -d -o citeplus -g citeplus -m 0750 /var/lib/citeplus
# Code, contracts and configuration belong to root: the service can read, not change them.
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CITEPLUS_NODE_STATE_DIR=/var/lib/citeplus \
    CITEPLUS_METRICS_HOST=0.0.0.0
WORKDIR /app
# ingest (city systems push), the common API (NGSI-LD), the federation API (publish).
EXPOSE 8000 8010 7443
USER citeplus:citeplus
ENTRYPOINT ["citeplus"]
CMD ["--help"]
