"""The one ASGI application: OGC API Features (pygeoapi) and downloads, sharing one error policy."""

import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount

from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve import auth, catalog, downloads, features, geocoding, headers, tiles, viewer, wmts
from geocloud.serve.guard import AuthMiddleware, service_unavailable
from geocloud.serve.rasters import create_raster_app
from geocloud.serve.http import HTTPError, error_response

LOG = logging.getLogger("geocloud.serve")


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
    """The last resort: a JSON 500 that says ``Connection: close``. Starlette re-raises the error
    after this response and uvicorn then closes the connection; the header tells a keep-alive
    client so, instead of leaving it to find a dropped connection on its next request."""
    LOG.exception("unexpected error on %s", request.url.path)
    return JSONResponse({"code": "ServerError", "description": "internal error (logged)"}, status_code=500,
                        headers={"Connection": "close", "Cache-Control": "no-store"})


def create_app() -> Starlette:
    return Starlette(
        routes=[*tiles.routes, *features.routes, *downloads.routes, *geocoding.routes, *wmts.routes, *viewer.routes,
                *auth.routes, *catalog.routes,
                Mount("", app=create_raster_app())],
        middleware=[*headers.middleware(), Middleware(AuthMiddleware)],
        exception_handlers={HTTPError: _client_error, HTTPException: _starlette_error,
                            GeocloudError: _geocloud_error, Exception: _unexpected},
    )
