"""The one ASGI application: OGC API Features (pygeoapi) and downloads, sharing one error policy."""

import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.exceptions import HTTPException
from starlette.requests import Request

from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve import (auth, catalog, coverages, downloads, features, geocoding, headers, health, maptiles,
                            metrics, rasters, tiles, viewer, wmts)
from geocloud.serve.guard import AuthMiddleware, service_unavailable
from geocloud.serve.http import HTTPError, error_response, server_error

LOG = logging.getLogger("geocloud.serve")


async def _client_error(request: Request, exc: HTTPError):
    return error_response(exc)


async def _starlette_error(request: Request, exc: HTTPException):
    return error_response(HTTPError(exc.status_code, "NotFound" if exc.status_code == 404 else "HTTPError",
                                    str(exc.detail), dict(exc.headers or {})))  # 405 keeps its Allow


async def _geocloud_error(request: Request, exc: GeocloudError):
    if isinstance(exc, DatabaseError):
        return error_response(service_unavailable(exc))
    return error_response(HTTPError(400, "InvalidParameterValue", str(exc)))


async def _unexpected(request: Request, exc: Exception):
    LOG.exception("unexpected error on %s", request.url.path)
    return server_error()


def create_app() -> Starlette:
    return Starlette(
        routes=[*tiles.routes, *features.routes, *downloads.routes, *geocoding.routes, *wmts.routes, *viewer.routes,
                *auth.routes, *catalog.routes, *health.routes, *metrics.routes,
                *coverages.routes, *maptiles.routes, rasters.mount()],
        middleware=[*headers.middleware(), Middleware(AuthMiddleware)],
        exception_handlers={HTTPError: _client_error, HTTPException: _starlette_error,
                            GeocloudError: _geocloud_error, Exception: _unexpected},
    )
