"""Raster tiles for every raster layer: titiler.core's endpoint factory, mounted at ``/rasters``.

The dataset is resolved from the catalog id in the path to the live COG under the data
directory; no parameter names a file or URL (titiler's ``url=`` is not offered), so the server
never reads a path a caller chooses. Tiles in PNG, JPEG and WebP, WebMercatorQuad and the TWD97
quadtree, TileJSON, info, statistics, point values and previews come from titiler; low zooms read
the COG overviews. titiler's own tileset documents and ``info.geojson`` are not served: the OGC
API tilesets of a raster layer are ``/collections/{id}/map/tiles`` (rasters/maptiles.py).
Tiles are cached on disk like vector tiles and invalidated by the same publish/rollback events.

The app is mounted under ``/rasters`` only (not at the root), so a wrong method on any other
route is the 405 of that route, not this app's 404.
"""

import hashlib
import json
import logging
import math
import os
import re
from functools import lru_cache

import morecantile
import numpy
import rasterio
from fastapi import APIRouter, FastAPI, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from rio_tiler.errors import PointOutsideBounds
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Mount
from titiler.core.errors import DEFAULT_STATUS_CODES
from titiler.core.factory import TilerFactory

from geocloud.access import can_read
from geocloud.catalog import Layer, get_catalog
from geocloud.config import get_settings
from geocloud.serve import guard, openapi30
from geocloud.serve.http import (
    HTTPError,
    bad_parameter,
    error_response,
    not_found,
    server_error,
)
from geocloud.serve.state import snapshot
from geocloud.serve.tiles import tilecache
from geocloud.serve.tiles.tms import SERVED, TMS, tile_number

LOG = logging.getLogger("geocloud.serve")
# Every parameter that scales the work of one raster request, with the range allowed: a 16384-pixel
# tile or a 16000 x 16000 preview took a minute of a worker's time.
LIMITS = {"tilesize": (64, 1024), "width": (1, 2048), "height": (1, 2048), "max_size": (1, 2048),
          "buffer": (0, 64), "padding": (0, 64), "cover_scale": (1, 100), "minzoom": (0, 30), "maxzoom": (0, 30)}
MAX_LIST = {"bidx": 16, "p": 100, "c": 256, "rescale": 16}  # repeated parameters: at most this many
MAX_BINS = 1024
MAX_TEXT = {"expression": 512, "algorithm_params": 1024, "colormap": 16_384}
MAX_BODY = 1 << 20  # POST /statistics: a GeoJSON body of at most 1 MiB ...
MAX_FEATURES = 16   # ... and of at most 16 features (each is a read of up to max_size pixels)


def number(name: str, text: str) -> float:
    """A finite number, or 400 naming the parameter."""
    try:
        value = float(text)
    except ValueError:
        raise bad_parameter(name, f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise bad_parameter(name, f"must be a finite number, got {text!r}")
    return value


def check_limits(query, path: dict) -> None:
    """Refuse, naming the parameter and its range, any request whose size parameters would make
    it expensive, and any non-finite number (NaN reaches GDAL as a fill value or a coordinate)."""
    for name, value in query.multi_items():
        if "\x00" in value:
            raise bad_parameter(name, "must not contain NUL (\\0) characters")
        if name in MAX_TEXT and len(value) > MAX_TEXT[name]:
            raise bad_parameter(name, f"longer than {MAX_TEXT[name]} characters")
    sizes = {**{k: v for k, v in query.items() if k in LIMITS},
             **{k: str(path[k]) for k in ("width", "height") if k in path}}
    for name, text in sizes.items():
        low, high = LIMITS[name]
        value = number(name, text)
        if not low <= value <= high:
            raise bad_parameter(name, f"must be between {low} and {high}, got {text}")
    for name, most in MAX_LIST.items():
        if len(query.getlist(name)) > most:
            raise bad_parameter(name, f"given more than {most} times")
    for text in query.getlist("p"):
        if not 0 <= number("p", text) <= 100:
            raise bad_parameter("p", f"a percentile is between 0 and 100, got {text}")
    bins = query.get("histogram_bins")
    if bins is not None:
        edges = bins.split(",")
        count = len(edges) - 1 if len(edges) > 1 else number("histogram_bins", bins)
        if not 1 <= count <= MAX_BINS:
            raise bad_parameter("histogram_bins", f"between 1 and {MAX_BINS} bins, got {bins[:40]}")
        for edge in edges:
            number("histogram_bins", edge)
    for name in ("lon", "lat"):
        if name in path:
            number(name, str(path[name]))
    if "lon" in path and query.get("coord_crs") is None and not (
            -180 <= float(path["lon"]) <= 180 and -90 <= float(path["lat"]) <= 90):
        raise bad_parameter("lon", f"longitude/latitude out of range: {path['lon']},{path['lat']}")


@lru_cache(maxsize=64)
def _bands(path: str) -> tuple[int, str]:
    """(band count, data type) of a COG; a published COG does not change under its path."""
    with rasterio.open(path) as src:
        return src.count, src.dtypes[0]


def _check_dataset(cog: str, query) -> None:
    """Parameters that must fit the dataset: band indexes and a nodata value of its data type."""
    count, dtype = _bands(cog)
    for text in query.getlist("bidx"):
        if not text.strip().isdigit() or not 1 <= int(text) <= count:
            raise bad_parameter("bidx", f"band index must be between 1 and {count}, got {text!r}")
    for band in re.findall(r"\bb(\d+)\b", query.get("expression", "")):
        if not 1 <= int(band) <= count:
            raise bad_parameter("expression", f"band b{band} does not exist; this layer has b1 to b{count}")
    nodata = query.get("nodata")
    if nodata is not None:
        value = number("nodata", nodata)
        if numpy.issubdtype(numpy.dtype(dtype), numpy.integer):
            info = numpy.iinfo(dtype)
            if not (value.is_integer() and info.min <= value <= info.max):
                raise bad_parameter("nodata", f"must be an integer from {info.min} to {info.max} for "
                                              f"{dtype} pixels, got {nodata!r}")


def check_tile(path: dict) -> None:
    """A tile address: non-negative integers (400 otherwise), inside the matrix set (404)."""
    for name in ("z", "x", "y"):
        text = str(path[name])
        if not text.lstrip("-").isdecimal() or not text.isascii():
            raise bad_parameter(name, f"must be an integer, got {text!r}")
        if len(text) > 12:  # beyond every tileMatrix (and int() refuses over 4,300 digits)
            what = {"z": "tileMatrix", "x": "tile column", "y": "tile row"}[name]
            raise not_found(f"{what} {text[:20]}... is outside every tile matrix set")
        if int(text) < 0:
            raise bad_parameter(name, f"must be 0 or more, got {text}")
    tms = SERVED.get(path.get("tileMatrixSetId", ""))
    z, x, y = int(path["z"]), int(path["x"]), int(path["y"])
    if tms is None:
        return  # titiler names the matrix sets it accepts
    if not tms.minzoom <= z <= tms.maxzoom:
        raise not_found(f"tileMatrix {z} is outside {tms.id} (zoom {tms.minzoom}-{tms.maxzoom})")
    matrix = tms.matrix(z)
    if not (x < matrix.matrixWidth and y < matrix.matrixHeight):
        raise not_found(f"tile {z}/{x}/{y} is outside the {tms.id} matrix {z} "
                        f"({matrix.matrixWidth} columns x {matrix.matrixHeight} rows)")


def _check_body(body: bytes) -> None:
    """POST /statistics: a GeoJSON of at most MAX_FEATURES features (each is one read of the
    COG), with finite numbers only."""
    def refuse(constant):
        raise ValueError(f"{constant} is not a JSON number")
    try:
        data = json.loads(body, parse_constant=refuse) if body else None
    except ValueError as exc:
        raise bad_parameter("body", f"not valid GeoJSON: {exc}") from None
    if isinstance(data, dict) and len(data.get("features") or []) > MAX_FEATURES:
        raise bad_parameter("body", f"at most {MAX_FEATURES} features per request, got {len(data['features'])}")


async def live_cog(request: Request, layer_id: str = Path(description="Raster layer id from the catalog"),
                   tileMatrixSetId: str | None = None) -> str:  # noqa: N803 - titiler's path parameter
    """The path of the live COG of a raster layer the caller may read; 401/404/400 otherwise.

    Checked on the event loop, as the vector tile route checks its layer: what it reads is in memory
    but for a stat of the COG and, at most every state.REFRESH seconds, the live state; a hop to a
    worker thread and back cost a cold tile 2-3 ms of CPU (24.3 against 21.5 ms, in-process)."""
    cog = _live_cog(request, layer_id, tileMatrixSetId)
    if request.method == "POST":
        try:
            _check_body(await request.body())
        except HTTPError as exc:
            raise HTTPException(exc.status, exc.description) from None
    return cog


def _live_cog(request: Request, layer_id: str, tileMatrixSetId: str | None) -> str:  # noqa: N803
    """The caller is checked first, so a layer they may not read answers the same whatever else the
    request holds. Web Mercator requests read the web-optimized variant the ETL writes beside the
    COG (aligned to the WebMercatorQuad grid: a tile is a block read, no reprojection);
    everything else, the COG in the layer's own CRS."""
    try:
        guard.layer_for(layer_id, "rasters", kind="raster")
        check_limits(request.query_params, request.path_params)
        if "z" in request.path_params:
            check_tile(request.path_params)
        cog = cog_path(layer_id, web_mercator=tileMatrixSetId == "WebMercatorQuad")
        _check_dataset(cog, request.query_params)
    except HTTPError as exc:
        raise HTTPException(exc.status, exc.description, headers=exc.headers or None) from None
    return cog


def cog_path(layer_id: str, web_mercator: bool = False) -> str:
    """The live COG of a raster layer (the web-optimized variant if asked and there is one)."""
    return _cog_file(str(get_settings().data_path), snapshot().layers[layer_id].storage, layer_id, web_mercator)


@lru_cache(maxsize=256)
def _cog_file(data_dir: str, storage: str, layer_id: str, web_mercator: bool) -> str:
    """A published version's folder never changes (a new version is a new folder): whether it holds
    the web-optimized variant is looked up once, not on every tile."""
    folder = os.path.join(data_dir, storage)
    web = os.path.join(folder, f"{layer_id}-webmercator.tif")
    return web if web_mercator and os.path.exists(web) else os.path.join(folder, f"{layer_id}.tif")


def raster_layer(collection_id: str, surface: str) -> Layer:
    """A raster layer the caller may read, as an OGC API collection (401/404 otherwise; a vector
    collection has no coverage or map tiles: 404)."""
    try:
        return guard.layer_for(collection_id, surface, kind="raster")
    except HTTPError as exc:
        if exc.status == 400:
            raise not_found(f"collection {collection_id!r} is a vector layer: it has no coverage or map tiles; "
                            f"see /collections/{collection_id}/tiles") from None
        raise


class _LayerTiler(TilerFactory):
    """titiler's factory with its routes under ``/{layer_id}`` (so the app lists them with their
    full paths); the links titiler writes (TileJSON's tile URL) get the layer id back."""

    def url_for(self, request: Request, name: str, **path_params) -> str:
        return super().url_for(request, name, layer_id=request.path_params["layer_id"], **path_params)


PREFIX = "/rasters"
# What the raster collections implement (coverages.py, maptiles.py), in the URIs pygeoapi
# uses; serve/app.py gathers every surface's CONFORMANCE for /conformance.
CONFORMANCE = [*(f"http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/{c}"
                 for c in ("core", "oas30", "geodata-coverage", "coverage-subset", "coverage-bbox")),
               *(f"http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/{c}"
                 for c in ("core", "tileset", "tilesets-list", "geodata-tilesets", "png", "jpeg"))]
UNSERVED = {"info_geojson", "tileset_list", "tileset"}  # see the module docstring


class _SharedMatrixSets(morecantile.defaults.TileMatrixSets):
    """The matrix sets for titiler, which asks for one on every tile: morecantile answers each time with
    a deep copy, whose CRS objects rio-tiler then builds again (1-1.4 ms of a cold tile's CPU). A tile
    matrix set is a constant nothing here changes, so the ones geocloud serves are shared (SERVED)."""

    def get(self, identifier: str) -> morecantile.TileMatrixSet:
        shared = SERVED.get(identifier)
        return shared if shared is not None else super().get(identifier)


tiler = _LayerTiler(path_dependency=live_cog, supported_tms=_SharedMatrixSets(TMS.tilematrixsets),
                    router=APIRouter(prefix="/{layer_id}"), router_prefix=PREFIX, add_part=False, add_preview=True, add_viewer=False)


def _error_handler(status: int):
    """titiler's and rio-tiler's exceptions answered in geocloud's error format."""
    code = {400: "InvalidParameterValue", 404: "NotFound"}.get(status, "ServerError")

    async def handler(request: Request, exc: Exception):
        if status >= 500:
            LOG.error("raster error on %s", request.url.path, exc_info=exc)
            return server_error()
        return error_response(HTTPError(status, code, str(exc)))
    return handler


async def _http_error(request: Request, exc: StarletteHTTPException):
    code = {401: "Unauthorized", 404: "NotFound", 405: "HTTPError", 413: "HTTPError"}.get(exc.status_code,
                                                                                      "InvalidParameterValue")
    return error_response(HTTPError(exc.status_code, code, str(exc.detail), dict(exc.headers or {})))


async def _invalid_request(request: Request, exc: RequestValidationError):
    """FastAPI's 422 becomes the 400 every other route answers, naming the first bad parameter."""
    first = exc.errors()[0]
    name = first["loc"][-1] if first.get("loc") else "request"
    return error_response(bad_parameter(str(name), first.get("msg", "invalid value")))


ERRORS = {exc_class: _error_handler(status) for exc_class, status in {**DEFAULT_STATUS_CODES, PointOutsideBounds: 404}.items()}


def error_handler(exc: Exception):
    """The handler the raster app answers ``exc`` with (the nearest class, as Starlette looks it up)."""
    return next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)


def create_raster_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, max_body_size=MAX_BODY,
                  routes=[r for r in tiler.router.routes if r.name not in UNSERVED])
    for exc_class, handler in ERRORS.items():
        app.add_exception_handler(exc_class, handler)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(TileCache)
    return app


def mount() -> Mount:
    """The raster app as a route of the main app."""
    return Mount(PREFIX, app=create_raster_app())


def lookup(layer_id: str, tms_id: str, tile: morecantile.Tile, y_fmt: str, variant: str):
    """(cache file, render token, the answer's headers, (bytes, token) or None) of a raster tile."""
    snap, tms = snapshot(), SERVED[tms_id]
    key = tilecache.tile_path("raster", layer_id, tms_id, tile.z, tile.x, f"{y_fmt}-{variant}")
    cached = tilecache.read(key, snap, [layer_id], lambda: tuple(tms.bounds(tile))) if variant == "default" else None
    token = snap.layer_token(layer_id)
    etag = f'W/"{layer_id}-{tms_id}-{tile.z}-{tile.x}-{y_fmt}-{variant}-{cached[1] if cached else token}"'
    return key, token, {"ETag": etag, "Cache-Control": guard.cache_control([layer_id])}, cached


def known_answer(headers: dict, cached, if_none_match: str | None) -> tuple[int, list, bytes] | None:
    """The answer that needs no rendering: 304 when the ETag matches (it names the bytes), the cached
    bytes on a hit; None when the tile must be rendered. For TileCache and the warm path (tiles/warm.py)."""
    if if_none_match == headers["ETag"]:
        return 304, _raw(headers), b""
    if cached is None:
        return None
    media, body = _unpacked(cached[0])
    return 200, [*_raw({**headers, "X-Tile-Cache": "hit"}), (b"content-length", str(len(body)).encode()),
                 (b"content-type", media.encode("latin-1"))], body


def _raw(headers: dict) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def rendered(raw_headers, body: bytes, kept: tuple[str, int] | None, headers: dict) -> list[tuple[bytes, bytes]]:
    """The headers of a tile titiler rendered: its own (bbox, CRS, media type), the tile's ETag and
    Cache-Control, and whether it was kept on disk; ``kept`` (cache file, render token) names where the
    plain tile is written first (atomically: tilecache.write). For TileCache and the plain tile path
    (rasters/plaintiles.py), which must answer alike."""
    found = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
    media = _media(found.pop("content-type", "application/octet-stream"))
    if kept is not None:
        tilecache.write(*kept, _packed(media, body))
    found.pop("content-length", None)
    found.update({k.lower(): v for k, v in headers.items()}, **{"x-tile-cache": "off" if kept is None else "miss"})
    return [*_raw(found), (b"content-length", str(len(body)).encode()), (b"content-type", media.encode("latin-1"))]


async def send_answer(send, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TileCache:
    """Serve repeated raster tiles from the shared disk cache while the live COG is unchanged there.

    A plain ASGI middleware (not Starlette's BaseHTTPMiddleware, whose streams cost a cold tile
    about as much as everything else geocloud adds to titiler)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        found = self.cacheable(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if found is None:
            return await self.app(scope, receive, send)
        request = Request(scope)
        variant = _variant(request.query_params)
        key, token, headers, cached = lookup(*found, variant)
        known = known_answer(headers, cached, request.headers.get("if-none-match"))
        if known is not None:
            if known[0] == 200:
                guard.layer_for(found[0], "rasters")  # audits reads of non-public rasters
            return await send_answer(send, *known)
        # only the plain tile (what the tilesets' templates name) is kept on disk: a variant per query
        # would let any caller fill the disk with ?junk=1, 2, 3...; variants are rendered each time
        kept_on_disk = variant == "default"
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
        await send_answer(send, 200, rendered(start["headers"], body, (key, token) if kept_on_disk else None, headers), body)

    @staticmethod
    def cacheable(scope):
        """(layer, matrix set, tile, last path part) of a tile request the caller may read, else None:
        titiler's route and its dependency then answer (and refuse)."""
        parts = scope["path"].strip("/").split("/")
        # /rasters/{layer}/tiles/{tms}/{z}/{x}/{y}[.fmt]
        if len(parts) != 7 or parts[2] != "tiles" or parts[3] not in SERVED:
            return None
        layer_id, tms_id, z, x, y_fmt = parts[1], parts[3], parts[4], parts[5], parts[6]
        y = y_fmt.split(".")[0].split("@")[0]
        layer = get_catalog().layers.get(layer_id)
        if not (all(tile_number(n) for n in (z, x, y)) and y_fmt.isascii() and y_fmt.isprintable()) or layer is None \
                or layer_id not in snapshot().layers or not can_read(guard.current.get(), layer):
            return None
        tile = morecantile.Tile(int(x), int(y), int(z))
        size = _matrix_size(tms_id, tile.z)
        if size is None or not (tile.x < size[0] and tile.y < size[1]):
            return None
        return layer_id, tms_id, tile, y_fmt


@lru_cache(maxsize=128)
def _matrix_size(tms_id: str, z: int) -> tuple[int, int] | None:
    """(columns, rows) of a matrix set's matrix ``z`` (morecantile looks it up by name each time);
    None beyond the set's zooms, where morecantile would build matrices up to ``z`` to refuse it."""
    tms = SERVED[tms_id]
    if not tms.minzoom <= z <= tms.maxzoom:
        return None
    try:
        matrix = tms.matrix(z)
    except Exception:  # noqa: BLE001 - out-of-matrix tiles are titiler's to refuse
        return None
    return matrix.matrixWidth, matrix.matrixHeight


def _variant(query) -> str:
    """What in the query makes one tile's bytes differ from another's, as a short digest: every
    parameter but the credentials, sorted by name only (the order of a repeated parameter such as
    ``bidx=3&bidx=1`` is the order of the bands). It is part of the ETag; only "default" is cached."""
    options = sorted(((k, v) for k, v in query.multi_items() if k not in ("token", "api_key")), key=lambda kv: kv[0])
    return hashlib.sha256(repr(options).encode()).hexdigest()[:16] if options else "default"


def _media(content_type: str) -> str:
    """The registered media type of titiler's answer (it says image/jpg for JPEG). A tile asked for
    without an extension is JPEG or PNG depending on its pixels (PNG where any is transparent), so
    the type is the one titiler chose for these bytes, never one guessed from the path."""
    return "image/jpeg" if content_type == "image/jpg" else content_type


def _packed(media: str, body: bytes) -> bytes:
    """A cached raster tile: its media type, a newline, its bytes (a hit must say what it holds)."""
    return media.encode("latin-1") + b"\n" + body


def _unpacked(raw: bytes) -> tuple[str, bytes]:
    media, _, body = raw.partition(b"\n")
    return media.decode("latin-1"), body


def _openapi_paths() -> dict:
    """OpenAPI 3.0 path items of the routes above, from FastAPI's document of titiler's routes with
    geocloud's bounds on every parameter that scales the work (see serve/openapi30.py)."""
    doc = get_openapi(title="rasters", version="1", routes=[r for r in tiler.router.routes if r.name not in UNSERVED])
    definitions = doc.get("components", {}).get("schemas", {})
    paths: dict = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            parameters = []
            for p in op.get("parameters", []):
                schema = openapi30.to_30(p["schema"], definitions)
                name = "layerId" if p["name"] == "layer_id" else p["name"]
                if name in LIMITS:
                    schema = {k: v for k, v in schema.items() if not k.startswith("exclusive")}
                    schema.update(minimum=LIMITS[name][0], maximum=LIMITS[name][1])
                if name in MAX_LIST:
                    schema["maxItems"] = MAX_LIST[name]
                if name in MAX_TEXT:
                    schema["maxLength"] = MAX_TEXT[name]
                if name == "tileMatrixSetId":
                    schema = {"type": "string", "enum": list(SERVED)}
                described = p.get("description") or schema.get("description") or name
                parameters.append({k: v for k, v in p.items() if k != "examples"} |
                                  {"name": name, "schema": schema, "description": described})
            ok = op["responses"]["200"]
            operation = {"tags": ["rasters"], "summary": op.get("summary", ""), "operationId": "rasters_" + op["operationId"].rsplit(".", 1)[-1],
                         "parameters": parameters,
                         "responses": openapi30.responses({"description": ok.get("description", "OK"),
                                                           "content": openapi30.content(*ok.get("content", {}))})}
            if method == "post":
                operation["requestBody"] = {"required": True, "description": f"a GeoJSON Feature or FeatureCollection "
                                            f"of at most {MAX_FEATURES} features, {MAX_BODY} bytes at most",
                                            "content": openapi30.content("application/json", "application/geo+json")}
            paths.setdefault(PREFIX + path.replace("{layer_id}", "{layerId}"), {})[method] = operation
    return paths


OPENAPI_PATHS = _openapi_paths()
