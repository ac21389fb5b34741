"""The one ASGI application: every surface (OGC API Features through pygeoapi, tiles, rasters,
WMTS, geocoding, downloads, metadata, styles, tokens), sharing one error policy."""

import logging
from pathlib import Path

import pygeoapi
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve import (auth, catalog, downloads, features, geocoding, headers, landing, openapi_paths,
                            pygeoapi_config, rasters, tiles, viewer, wmts)
from geocloud.serve.guard import AuthMiddleware, service_unavailable
from geocloud.serve.rasters import create_raster_app
from geocloud.serve.http import HTTPError, error_response, server_error

LOG = logging.getLogger("geocloud.serve")
# pygeoapi's HTML pages load their stylesheet and images from /static (as pygeoapi's own app serves them)
PYGEOAPI_STATIC = Path(pygeoapi.__file__).parent / "static"
# the modules serving the app's routes: the OpenAPI document merges the OPENAPI_PATHS each declares
SURFACES = (landing, features, tiles, downloads, geocoding, wmts, viewer, auth, catalog, rasters, openapi_paths)


async def _client_error(request: Request, exc: HTTPError):
    return error_response(exc)


async def _starlette_error(request: Request, exc: HTTPException):
    return error_response(HTTPError(exc.status_code, "NotFound" if exc.status_code == 404 else "HTTPError",
                                    str(exc.detail)))


async def _geocloud_error(request: Request, exc: GeocloudError):
    if isinstance(exc, DatabaseError):
        return error_response(service_unavailable(exc))
    return error_response(HTTPError(400, "InvalidParameterValue", str(exc)))


async def _unexpected(request: Request, exc: Exception):
    LOG.exception("unexpected error on %s", request.url.path)
    return server_error()


def described_paths() -> dict:
    """Every path item the app's modules declare (pygeoapi describes the features routes)."""
    paths: dict = {}
    for module in SURFACES:
        paths = pygeoapi_config.merged(paths, getattr(module, "OPENAPI_PATHS", {}))
    return paths


def create_app() -> Starlette:
    app = Starlette(
        routes=[*landing.routes, *tiles.routes, *features.routes, *downloads.routes, *geocoding.routes, *wmts.routes,
                *viewer.routes, *auth.routes, *catalog.routes,
                Mount("/static", app=StaticFiles(directory=PYGEOAPI_STATIC), name="static"),
                Mount("", app=create_raster_app())],
        middleware=[*headers.middleware(), Middleware(AuthMiddleware)],
        exception_handlers={HTTPError: _client_error, HTTPException: _starlette_error,
                            GeocloudError: _geocloud_error, Exception: _unexpected},
    )
    app.state.openapi_paths = described_paths()
    return app
