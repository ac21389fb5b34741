"""Raster tiles for every raster layer: titiler.core's endpoint factory, mounted in the same app.

The dataset is resolved from the catalog id in the path to the live COG under the data
directory; no parameter names a file or URL (titiler's ``url=`` is not offered), so the server
never reads a path a caller chooses. Tiles in PNG, JPEG and WebP, WebMercatorQuad and the TWD97
quadtree, TileJSON and WMTS capabilities come from titiler; low zooms read the COG overviews.
Tiles are cached on disk like vector tiles and invalidated by the same publish/rollback events.
"""

import hashlib

import morecantile
from fastapi import FastAPI, HTTPException, Path
from starlette.requests import Request
from starlette.responses import Response
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.access import can_read
from geocloud.serve import guard, tilecache
from geocloud.serve.http import HTTPError
from geocloud.serve.state import snapshot
from geocloud.serve.tms import SERVED, TMS


def live_cog(layer_id: str = Path(description="Raster layer id from the catalog"),
             tileMatrixSetId: str | None = None) -> str:  # noqa: N803 - titiler's path parameter
    """The path of the live COG of a raster layer the caller may read; 401/404/400 otherwise.

    Web Mercator requests read the web-optimized variant the ETL writes beside the COG (aligned to
    the WebMercatorQuad grid: a tile is a block read, no reprojection); everything else, the COG in
    the layer's own CRS."""
    try:
        guard.layer_for(layer_id, "rasters", kind="raster")
    except HTTPError as exc:
        raise HTTPException(exc.status, exc.description, headers=exc.headers or None) from None
    folder = get_settings().data_path / snapshot().layers[layer_id].storage
    if tileMatrixSetId == "WebMercatorQuad" and (web := folder / f"{layer_id}-webmercator.tif").exists():
        return str(web)
    return str(folder / f"{layer_id}.tif")


tiler = TilerFactory(path_dependency=live_cog, supported_tms=TMS, router_prefix="/rasters/{layer_id}",
                     add_part=False, add_preview=True, add_viewer=False)


def create_raster_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(tiler.router, prefix="/rasters/{layer_id}")
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
    app.add_middleware(TileCache)
    return app


class TileCache:
    """Serve repeated raster tiles from the shared disk cache while the live COG is unchanged there.

    A plain ASGI middleware (not Starlette's BaseHTTPMiddleware, whose streams cost a cold tile
    about as much as everything else geocloud adds to titiler)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        found = self._cacheable(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if found is None:
            return await self.app(scope, receive, send)
        layer_id, tms_id, tile, y_fmt = found
        request = Request(scope)
        snap, tms = snapshot(), SERVED[tms_id]
        options = sorted((k, v) for k, v in request.query_params.multi_items() if k not in ("token", "api_key"))
        digest = hashlib.sha256(repr(options).encode()).hexdigest()[:16] if options else "default"
        key = tilecache.tile_path("raster", layer_id, tms_id, tile.z, tile.x, f"{y_fmt}.{digest}")
        cached = tilecache.read(key, snap, [layer_id], lambda: tuple(tms.bounds(tile)))
        token = snap.layer_token(layer_id)
        etag = f'W/"{layer_id}-{tms_id}-{tile.z}-{tile.x}-{y_fmt}-{cached[1] if cached else token}"'
        if cached is not None:
            if request.headers.get("if-none-match") == etag:
                return await Response(status_code=304, headers={"ETag": etag})(scope, receive, send)
            guard.layer_for(layer_id, "rasters")  # audits reads of non-public rasters
            response = Response(cached[0], media_type=_media(y_fmt), headers={
                "ETag": etag, "Cache-Control": guard.cache_control([layer_id]), "X-Tile-Cache": "hit"})
            return await response(scope, receive, send)
        start, chunks = None, []

        async def capture(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start is None or start["status"] != 200:  # titiler's refusals pass unchanged
            if start is not None:
                await send(start)
                await send({"type": "http.response.body", "body": body})
            return
        tilecache.write(key, token, body)
        skip = {b"content-length", b"etag", b"content-type"}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"] if k.lower() not in skip}
        headers.update({"ETag": etag, "Cache-Control": guard.cache_control([layer_id]), "X-Tile-Cache": "miss"})
        await Response(body, status_code=200, headers=headers, media_type=_media(y_fmt))(scope, receive, send)

    @staticmethod
    def _cacheable(scope):
        """(layer, matrix set, tile, last path part) of a tile request the caller may read, else None:
        titiler's route and its dependency then answer (and refuse)."""
        parts = scope["path"].strip("/").split("/")
        # /rasters/{layer}/tiles/{tms}/{z}/{x}/{y}[.fmt]
        if len(parts) != 7 or parts[2] != "tiles" or parts[3] not in SERVED:
            return None
        layer_id, tms_id, z, x, y_fmt = parts[1], parts[3], parts[4], parts[5], parts[6]
        y = y_fmt.split(".")[0].split("@")[0]
        layer = get_catalog().layers.get(layer_id)
        if not (z.isdigit() and x.isdigit() and y.isdigit()) or layer is None \
                or layer_id not in snapshot().layers or not can_read(guard.current.get(), layer):
            return None
        tile = morecantile.Tile(int(x), int(y), int(z))
        try:
            matrix = SERVED[tms_id].matrix(tile.z)
        except Exception:  # noqa: BLE001 - out-of-matrix tiles are titiler's to refuse
            return None
        if not (tile.x < matrix.matrixWidth and tile.y < matrix.matrixHeight):
            return None
        return layer_id, tms_id, tile, y_fmt


def _media(name: str) -> str:
    """The registered media type of a tile format (titiler answers image/jpg for .jpg)."""
    ext = name.rsplit(".", 1)[-1] if "." in name else "png"
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tif": "image/tiff",
            "tiff": "image/tiff", "jp2": "image/jp2", "npy": "application/x-binary", "pngraw": "image/png"}.get(ext, "image/png")
