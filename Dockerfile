# geocloud server and CLI. GDAL, PROJ (with EPSG:15487) and GEOS come inside the Python wheels.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GEOCLOUD_PROJECT_DIR=/srv/geocloud GEOCLOUD_DATA_DIR=/data
WORKDIR /srv/geocloud
COPY pyproject.toml README.md ./
COPY geocloud ./geocloud
RUN pip install --no-cache-dir .
COPY layers ./layers
COPY etl ./etl
COPY styles ./styles
COPY agencies.yml pygeoapi-config.yml ./
RUN useradd --system --home /srv/geocloud geocloud && mkdir -p /data && chown geocloud /data
USER geocloud
EXPOSE 8000
CMD ["sh", "-c", "geocloud db upgrade && exec geocloud serve --host 0.0.0.0 --port 8000 --workers 4"]
