# billing-gateway: one process serving GraphQL, webhooks and health checks.
# Set DATABASE_URL for a real deployment; without it an embedded PostgreSQL keeps its data
# under BILLING_DATA_DIR (mount a volume there).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    BILLING_DATA_DIR=/var/lib/billing-gateway

RUN useradd --create-home --uid 10001 billing \
    && mkdir -p /var/lib/billing-gateway \
    && chown billing:billing /var/lib/billing-gateway

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY schema/ schema/
COPY resolvers/ resolvers/
COPY services/ services/
COPY db/ db/
COPY sandbox/ sandbox/
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER billing
VOLUME ["/var/lib/billing-gateway"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"
CMD ["billing-gateway", "serve"]
