# syntax=docker/dockerfile:1
# Same install steps as scripts/setup: the package into a virtualenv, DSFR and tus-js-client
# assets from npm.
# Python 3.13: the newest the suite passes on (scripts/test runs it on 3.11 and on the newest).

FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
# The DSFR's preinstall script refuses a plain install: --ignore-scripts is the documented way.
RUN npm ci --ignore-scripts --no-audit --no-fund --omit=dev

FROM python:3.13-slim-bookworm AS build
WORKDIR /build
RUN python -m venv /opt/filr
COPY pyproject.toml README.md ./
COPY portal ./portal
COPY storage ./storage
COPY audit ./audit
RUN /opt/filr/bin/pip install --no-cache-dir .

FROM python:3.13-slim-bookworm
# pg_dump / pg_restore for `filr backup` (same major version as the server, or newer); Pango,
# HarfBuzz and fonts for WeasyPrint (the fiches' PDF, portal/fiches/pdf.py).
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends postgresql-client \
       libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-liberation \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin filr \
    && mkdir -p /data && chown filr /data
COPY --from=build /opt/filr /opt/filr
COPY --from=assets /build/node_modules/@gouvfr/dsfr/dist /opt/dsfr
COPY --from=assets /build/node_modules/tus-js-client/dist/tus.min.js /opt/tus-js-client/
ENV PATH=/opt/filr/bin:$PATH \
    FILR_DATA_DIR=/data \
    FILR_DSFR_DIR=/opt/dsfr \
    FILR_TUS_CLIENT_DIR=/opt/tus-js-client \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER filr
WORKDIR /data
EXPOSE 8000
# Migrations are a release step (`filr db upgrade`), not something every replica does at start.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "2", \
     "--threads", "4", "--timeout", "120", "portal.wsgi:app"]
