# geocloud server and CLI. What it installs comes from scripts/packages.txt, the one install list that
# scripts/dev reads too (tests/test_ops.py checks both use it); GDAL, PROJ (with EPSG:15487) and GEOS
# come inside the Python wheels.

# The viewer's npm packages (MapLibre GL JS, served by geocloud at /map/; no CDN), exactly
# package-lock.json's, and their CycloneDX list (npm >= 10).
FROM node:22-bookworm-slim AS web
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/packages scripts/packages.txt ./scripts/
RUN npm $(scripts/packages npm) \
    && npm sbom --sbom-format cyclonedx --omit dev --package-lock-only > npm-sbom.json

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GEOCLOUD_PROJECT_DIR=/srv/geocloud GEOCLOUD_DATA_DIR=/data
WORKDIR /srv/geocloud
COPY scripts/packages scripts/packages.txt ./scripts/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(scripts/packages debian) \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY geocloud ./geocloud
RUN pip install --no-cache-dir $(scripts/packages pip)
COPY --from=web /src/node_modules ./node_modules
# The software bill of materials (CycloneDX JSON) of this image's Python environment and npm packages, at
# /srv/geocloud/sbom.cdx.json; the tool that writes it runs from a virtual environment that is removed after.
COPY scripts/sbom.py ./scripts/sbom.py
COPY --from=web /src/npm-sbom.json /tmp/npm-sbom.json
RUN python -m venv /tmp/sbom-tool && /tmp/sbom-tool/bin/pip install --no-cache-dir -q cyclonedx-bom \
    && /tmp/sbom-tool/bin/python scripts/sbom.py --python /usr/local/bin/python --npm-sbom /tmp/npm-sbom.json \
       -o /srv/geocloud/sbom.cdx.json \
    && rm -rf /tmp/sbom-tool /tmp/npm-sbom.json
COPY layers ./layers
COPY etl ./etl
COPY styles ./styles
COPY agencies.yml pygeoapi-config.yml ./
RUN useradd --system --home /srv/geocloud geocloud && mkdir -p /data && chown geocloud /data
USER geocloud
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
CMD ["sh", "-c", "geocloud db upgrade && exec geocloud serve --host 0.0.0.0 --port 8000 --workers ${GEOCLOUD_WORKERS:-4}"]
