"""The one ASGI application: every surface (OGC API Features through pygeoapi, tiles, rasters,
WMTS, geocoding, downloads, metadata, styles, tokens), sharing one error policy."""

import logging
import sys
from pathlib import Path

import pygeoapi
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve import (
    auth,
    catalog,
    coverages,
    downloads,
    features,
    geocoding,
    headers,
    health,
    landing,
    manage,
    maptiles,
    metrics,
    openapi_paths,  # noqa: F401 (imported for its OPENAPI_PATHS: see described_paths)
    pygeoapi_config,
    rasters,
    tiles,
    viewer,
    wmts,
)
from geocloud.serve.guard import AuthMiddleware, service_unavailable
from geocloud.serve.http import HTTPError, error_response, server_error
from geocloud.serve.portal import account, signin
from geocloud.serve.portal import render as portal
from geocloud.serve.portal import requests as request_pages
from geocloud.serve.portal import updates as update_pages

LOG = logging.getLogger("geocloud.serve")
# pygeoapi's HTML pages load their stylesheet and images from /static (as pygeoapi's own app serves them)
PYGEOAPI_STATIC = Path(pygeoapi.__file__).parent / "static"


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


def described_paths() -> dict:
    """Every path item the serve modules the app is made of declare in their ``OPENAPI_PATHS``
    (pygeoapi describes the features routes). Any such module counts, however it was imported, so
    a module added later is described without a list to keep; tests/test_api.py checks the result
    against the routes."""
    paths: dict = {}
    for name, module in sorted(sys.modules.items()):
        if name.startswith(f"{__package__}.") and hasattr(module, "OPENAPI_PATHS"):
            paths = pygeoapi_config.merged(paths, module.OPENAPI_PATHS)
    return paths


def create_app() -> Starlette:
    app = Starlette(
        routes=[*landing.routes, *tiles.routes, *features.routes, *downloads.routes, *geocoding.routes, *wmts.routes,
                *viewer.routes, *auth.routes, *catalog.routes, *health.routes, *metrics.routes,
                *coverages.routes, *maptiles.routes, *manage.routes, *portal.routes,
                *signin.routes, *account.routes,
                *request_pages.routes, *update_pages.routes,
                Mount("/static", app=StaticFiles(directory=PYGEOAPI_STATIC), name="static"),
                rasters.mount()],
        middleware=[*headers.middleware(), Middleware(AuthMiddleware)],
        exception_handlers={HTTPError: _client_error, HTTPException: _starlette_error,
                            GeocloudError: _geocloud_error, Exception: _unexpected},
    )
    app.state.openapi_paths = described_paths()
    return app
