"""The plain raster tile path: a GET of ``/rasters/{layer}/tiles/{tms}/{z}/{x}/{y}[.{format}]`` with no
query, answered before the router (a plain ASGI middleware inside the guard's, so the caller is
resolved, counted in the rate limit and holds one live snapshot, as on every route).

A cold raster tile is ~20 ms of rendering (rio-tiler reading the COG, GDAL encoding the image) that
geocloud and stock TiTiler share, and ~1.5-3 ms around it. Through the router, the raster app's own
middleware stack, FastAPI solving the route's ten dependencies (each sync one handed to the thread
pool and back) and the raster tile cache capturing titiler's answer and building it again, geocloud
spent 3.3 ms of CPU a tile outside the rendering against TiTiler's 1.6 (in-process, rendering left
out); this path spends ~0.7.

It asks exactly what the route asks, with the route's functions: ``TileCache.cacheable`` (the live
layer, ``access.policy.can_read`` for the caller, the tile inside its matrix), ``tiler.check_tile``
and ``tiler.cog_path`` (what ``live_cog`` checks and reads for a request without a query),
``guard.layer_for`` (which records the read of a non-public layer for the audit), ``tiler.lookup`` and
``known_answer`` (the disk cache and 304). The tile is rendered by titiler's own tile function, called
with what FastAPI gives it for a request without a query: every dependency's defaults (checked once
to need nothing from the request). The render, the write to the disk cache (atomic) and the headers
are ``tiler.rendered``'s, as in ``TileCache``, in one hop to the thread pool; titiler's and rio-tiler's
errors get the raster app's handlers. Anything else goes on, untouched, to the full stack, whose
answer (a 401 or 404 for a layer the caller may not read, a 400 for a bad tile address) it is.
"""

import inspect

from fastapi import params
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from titiler.core.resources.enums import ImageType

from geocloud.catalog import get_catalog
from geocloud.errors import GeocloudError
from geocloud.serve import guard
from geocloud.serve.http import HTTPError
from geocloud.serve.rasters import tiler
from geocloud.serve.tiles.tms import tile_number

FORMATS = frozenset(t.value for t in ImageType)


def _tile_function():
    """(titiler's tile function, its keyword arguments that do not depend on the request as
    ``name -> dependency``, the parameter the path dependency fills); None if a dependency would need
    the request (then only FastAPI can solve it, and every tile takes the full stack)."""
    route = next(r for r in tiler.tiler.router.routes if getattr(r, "name", None) == "tile")
    made, fixed, source = {}, {}, None
    for name, parameter in inspect.signature(route.endpoint).parameters.items():
        if isinstance(parameter.default, params.Depends):
            dependency = parameter.default.dependency
            if dependency is tiler.live_cog:
                source = name
                continue
            needs = inspect.signature(dependency).parameters.values()
            if any(p.default is inspect.Parameter.empty or isinstance(p.default, (params.Param, params.Depends))
                   for p in needs):
                return None
            made[name] = dependency
        elif parameter.default is not inspect.Parameter.empty:
            fixed[name] = parameter.default  # the format and tile size a plain path does not name
    return (route.endpoint, made, fixed, source) if source else None


TILE = _tile_function()


def _plain(scope) -> tuple | None:
    """(layer, matrix set, tile, last path part, format or None) of a plain tile request the caller
    may read; else None."""
    found = None if scope["path"].endswith("/") else tiler.TileCache.cacheable(scope)
    if found is None:  # (a trailing slash: the router's redirect, as before)
        return None
    layer_id, tms_id, tile, y_fmt = found
    y, dot, fmt = y_fmt.partition(".")
    if not tile_number(y) or (dot and fmt not in FORMATS):
        return None  # '12@2x.png', '12.png.png', '12.gif': the route's to answer
    if get_catalog().layers[layer_id].kind != "raster":
        return None
    tiler.check_tile({"tileMatrixSetId": tms_id, "z": tile.z, "x": tile.x, "y": tile.y})
    return layer_id, tms_id, tile, y_fmt, fmt or None


def _render(values: dict, made: dict, kept: tuple[str, int], headers: dict) -> tuple[int, list, bytes]:
    """titiler's answer to the tile, on a worker thread, and the plain tile written to the disk cache."""
    response = TILE[0](**values, **{name: make() for name, make in made.items()})
    if response.status_code != 200:
        return response.status_code, response.raw_headers, response.body
    return 200, tiler.rendered(response.raw_headers, response.body, kept, headers), response.body


class PlainRasterTiles:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if TILE is None or scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string") \
                or scope.get("root_path") or not scope["path"].startswith(tiler.PREFIX + "/"):
            return await self.app(scope, receive, send)
        try:
            found = _plain(scope)
            if found is not None:
                layer_id, tms_id, tile, y_fmt, fmt = found
                key, token, headers, cached = tiler.lookup(layer_id, tms_id, tile, y_fmt, "default")
                cog = tiler.cog_path(layer_id, web_mercator=tms_id == "WebMercatorQuad")
        except (HTTPError, GeocloudError, OSError, ValueError):  # the route gives its own answer (4xx, 503...)
            found = None
        if found is None:
            return await self.app(scope, receive, send)
        if_none_match = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None)
        known = tiler.known_answer(headers, cached, if_none_match)
        if known is not None and known[0] == 304:
            return await tiler.send_answer(send, *known)
        try:
            guard.layer_for(layer_id, "rasters", kind="raster")  # records the read of a non-public layer
        except (HTTPError, GeocloudError):  # the catalog moved meanwhile, or the database is down: the route's
            return await self.app(scope, receive, send)
        if known is not None:
            return await tiler.send_answer(send, *known)
        _, _, fixed, source = TILE
        values = {**fixed, source: cog, "z": tile.z, "x": tile.x, "y": tile.y, "tileMatrixSetId": tms_id,
                  "format": ImageType(fmt) if fmt else None}
        try:
            answer = await run_in_threadpool(_render, values, TILE[1], (key, token), headers)
        except Exception as exc:  # noqa: BLE001 - answered as the raster app answers it (tiler.ERRORS)
            return await (await tiler.error_handler(exc)(Request(scope), exc))(scope, receive, send)
        await tiler.send_answer(send, *answer)
