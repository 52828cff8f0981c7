# syntax=docker/dockerfile:1
# billing-gateway: one image for every process (serve, worker, migrate, the other commands).
# Set DATABASE_URL for a real deployment; without it an embedded PostgreSQL keeps its data
# under BILLING_DATA_DIR (mount a volume there). Production rollouts run `billing-gateway
# migrate` once, then `billing-gateway serve --no-migrate` (compose.yaml does exactly that).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# The builder turns the source into wheels: the project's own (with its package data:
# migrations, the built app, GraphiQL, the sandbox's fixtures and Stripe.js) and every
# dependency's, so the final stage installs from local files and holds no build tools.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY schema/ schema/
COPY resolvers/ resolvers/
COPY services/ services/
COPY db/ db/
COPY sandbox/ sandbox/
RUN pip wheel --no-deps --wheel-dir /wheels/project . \
    && pip wheel --wheel-dir /wheels/deps /wheels/project/billing_gateway-*.whl

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    BILLING_DATA_DIR=/var/lib/billing-gateway

RUN useradd --create-home --uid 10001 --user-group billing \
    && mkdir -p /var/lib/billing-gateway \
    && chown billing:billing /var/lib/billing-gateway

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels/deps /wheels/project/billing_gateway-*.whl

# Numeric, so that an orchestrator (runAsNonRoot) can tell it is not root.
USER 10001:10001
WORKDIR /home/billing
VOLUME ["/var/lib/billing-gateway"]
EXPOSE 8000
# /healthz: the process answers. Readiness (database reachable, migrations current) is
# /readyz, for a load balancer or an orchestrator's readiness probe.
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]
CMD ["billing-gateway", "serve"]
