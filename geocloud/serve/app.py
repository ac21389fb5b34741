"""The one ASGI application: every surface (OGC API Features through pygeoapi, tiles, rasters,
WMTS, geocoding, downloads, metadata, styles, tokens), sharing one error policy."""

import logging
import sys

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request

from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve import auth, headers, health, manage, metrics
from geocloud.serve.guard import AuthMiddleware, service_unavailable
from geocloud.serve.http import HTTPError, error_response, server_error
from geocloud.serve.ogcapi import (
    downloads,
    features,
    geocoding,
    landing,
    metadata,
    pygeoapi_config,
    styles,
)
from geocloud.serve.portal import account, apidocs, pages, signin, steward, viewer
from geocloud.serve.portal import render as portal
from geocloud.serve.portal import requests as request_pages
from geocloud.serve.portal import updates as update_pages
from geocloud.serve.rasters import coverages, maptiles, tiler
from geocloud.serve.rasters.plaintiles import PlainRasterTiles
from geocloud.serve.tiles import tiles, wmts

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


def _declared(name: str) -> list:
    """What the serve modules the app is made of declare under ``name``, in module order. Any such
    module counts, however it was imported, so a surface added later is described without a list
    to keep."""
    return [getattr(module, name) for key, module in sorted(sys.modules.items())
            if key.startswith(f"{__package__}.") and hasattr(module, name)]


def described_paths() -> dict:
    """Every path item the serve modules declare in their ``OPENAPI_PATHS`` (pygeoapi describes the
    features routes); tests/test_api.py checks the result against the routes."""
    paths: dict = {}
    for declared in _declared("OPENAPI_PATHS"):
        paths = pygeoapi_config.merged(paths, declared)
    return paths


def conformance() -> list[str]:
    """The conformance classes every surface declares (``CONFORMANCE``), for /conformance."""
    return list(dict.fromkeys(c for declared in _declared("CONFORMANCE") for c in declared))


def create_app() -> Starlette:
    app = Starlette(
        routes=[*pages.routes, *apidocs.routes,  # first: a browser's page or, for any other client, the OGC API's document
                *landing.routes, *tiles.routes, *features.routes, *downloads.routes, *geocoding.routes, *wmts.routes,
                *styles.routes, *viewer.routes, *auth.routes, *metadata.routes, *health.routes, *metrics.routes,
                *coverages.routes, *maptiles.routes, *manage.routes, *portal.routes,
                *signin.routes, *account.routes, *request_pages.routes, *update_pages.routes,
                *steward.routes, tiler.mount()],
        # the warm tile path answers anonymous cached tiles before all of this (tiles/warm.py, asked by
        # observe.py); plain raster tiles, cold or cached, after the guard and before the router
        # (rasters/plaintiles.py)
        middleware=[*headers.middleware(), Middleware(AuthMiddleware), Middleware(PlainRasterTiles)],
        exception_handlers={HTTPError: _client_error, HTTPException: _starlette_error,
                            GeocloudError: _geocloud_error, Exception: _unexpected},
    )
    app.state.openapi_paths = described_paths()
    app.state.conformance = conformance()
    return app
