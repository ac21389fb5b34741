"""OGC API Tiles for vector layers and the multi-layer base map, with TileJSON 3.0 documents.

Discovery: ``/collections/{id}/tiles`` (tilesets) -> ``/collections/{id}/tiles/{tms}`` (tileset,
with the templated tile link) -> ``/collections/{id}/tiles/{tms}/{z}/{y}/{x}`` (MVT); the base map
is the dataset-level ``/tiles`` with the same shape. Tiles come from the shared disk cache when it
still holds them for the live data; otherwise PostGIS renders them and they are cached.
"""

import hashlib

import morecantile
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geocloud.catalog import I18n, Layer, get_catalog
from geocloud.serve import guard, openapi30
from geocloud.serve.http import bad_parameter, base_url, not_found
from geocloud.serve.ogcapi.features import requested_language
from geocloud.serve.state import snapshot
from geocloud.serve.tiles import tilecache, vectortiles
from geocloud.serve.tiles.tms import SERVED, zoom_range

MVT = "application/vnd.mapbox-vector-tile"
BASEMAP = ["districts", "zoning", "topo_water", "topo_contours", "roads", "buildings", "landmarks"]
TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
BASEMAP_TITLE = I18n(**{"zh-TW": "臺中市底圖", "en": "Taichung base map"})
JSON_TYPES = {"text": "String", "integer": "Number", "bigint": "Number", "double": "Number", "boolean": "Boolean",
              "date": "String", "timestamp": "String"}


def tms_or_404(name: str) -> morecantile.TileMatrixSet:
    tms = SERVED.get(name)
    if tms is None:
        raise not_found(f"unknown tile matrix set {name!r}; use {' or '.join(SERVED)}")
    return tms


def vector_layer(collection_id: str) -> Layer:
    return guard.layer_for(collection_id, "tiles", kind="vector")


def tile_or_404(tms: morecantile.TileMatrixSet, z: int, y: int, x: int) -> morecantile.Tile:
    if not tms.minzoom <= z <= tms.maxzoom:
        raise not_found(f"tileMatrix {z} is outside {tms.id} (zoom {tms.minzoom}-{tms.maxzoom})")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise not_found(f"tile {z}/{y}/{x} is outside the {tms.id} matrix {z} "
                        f"({matrix.matrixHeight} rows x {matrix.matrixWidth} columns)")
    return morecantile.Tile(x, y, z)


def cached(name: str, layers: list[Layer], tms: morecantile.TileMatrixSet, tile: morecantile.Tile):
    """(cache file, the request's snapshot, layer ids, (bytes, render token) or None when not cached)."""
    snap = snapshot()
    ids = [layer.id for layer in layers]
    path = tilecache.tile_path("vector", name, tms.id, tile.z, tile.x, f"{tile.y}.mvt")
    return path, snap, ids, tilecache.read(path, snap, ids, lambda: tuple(tms.bounds(tile)))


def answer(name: str, tms: morecantile.TileMatrixSet, tile: morecantile.Tile, ids: list[str], data: bytes,
           token: int, state: str, if_none_match: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A tile's status, headers and body, for the route and the warm path (tiles/warm.py) alike."""
    etag = f'W/"{name}-{tms.id}-{tile.z}-{tile.x}-{tile.y}-{token}"'
    headers = [(b"etag", etag.encode()), (b"cache-control", guard.cache_control(ids).encode()),
               (b"x-tile-cache", state.encode())]
    if if_none_match == etag:
        return 304, headers, b""
    if not data:
        return 204, headers, b""
    return 200, [*headers, (b"content-length", str(len(data)).encode()), (b"content-type", MVT.encode())], data


async def _tile_response(request: Request, name: str, layers: list[Layer], tms: morecantile.TileMatrixSet,
                         tile: morecantile.Tile) -> Response:
    path, snap, ids, found = cached(name, layers, tms, tile)

    def render() -> tuple[bytes, int, str]:
        token = max(snap.layer_token(i) for i in ids)
        data = vectortiles.render(layers, tms, tile)
        tilecache.write(path, token, data)
        return data, token, "miss"
    data, token, state = (*found, "hit") if found is not None else await run_in_threadpool(render)
    status, headers, body = answer(name, tms, tile, ids, data, token, state, request.headers.get("if-none-match"))
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


def collection_target(p: dict) -> tuple[str, list[Layer], morecantile.TileMatrixSet, morecantile.Tile]:
    """The cache name, layers, tile matrix set and tile of a collection's tile; 4xx when there is none."""
    layer = vector_layer(p["collection_id"])
    tms = tms_or_404(p["tms"])
    tile = tile_or_404(tms, p["z"], p["y"], p["x"])
    low, high = zoom_range(layer.zooms, tms)
    if not low <= tile.z <= high:
        raise not_found(f"layer {layer.id!r} has {tms.id} tiles from tileMatrix {low} to {high}")
    return layer.id, [layer], tms, tile


async def collection_tile(request: Request) -> Response:
    return await _tile_response(request, *collection_target(request.path_params))


def basemap_layers(tms: morecantile.TileMatrixSet | None = None, z: int | None = None) -> list[Layer]:
    """The base map's layers that are live and that the caller may read."""
    catalog, live, visible = get_catalog(), snapshot().layers, guard.visible_layers()
    layers = [catalog.layers[i] for i in BASEMAP if i in catalog.layers and i in live and i in visible]
    if z is None:
        return layers
    return [layer for layer in layers if within(zoom_range(layer.zooms, tms), z)]


def within(zooms: tuple[int, int], z: int) -> bool:
    return zooms[0] <= z <= zooms[1]


def basemap_target(p: dict) -> tuple[str, list[Layer], morecantile.TileMatrixSet, morecantile.Tile]:
    """As collection_target for the base map: no layers (none the caller may read at this zoom) is 204."""
    tms = tms_or_404(p["tms"])
    tile = tile_or_404(tms, p["z"], p["y"], p["x"])
    layers = basemap_layers(tms, tile.z)
    # one cache entry per set of member layers, so no caller is handed layers they may not read
    members = ",".join(layer.id for layer in layers)
    return "basemap-" + hashlib.sha256(members.encode()).hexdigest()[:12], layers, tms, tile


async def basemap_tile(request: Request) -> Response:
    name, layers, tms, tile = basemap_target(request.path_params)
    if not layers:
        return Response(status_code=204)
    return await _tile_response(request, name, layers, tms, tile)


def _links_for(request: Request, prefix: str, tms: morecantile.TileMatrixSet, f: str = "mvt") -> list[dict]:
    base = base_url(request)
    return [
        {"rel": "self", "type": "application/json", "href": f"{base}{prefix}/{tms.id}"},
        {"rel": TILING_SCHEME, "type": "application/json", "href": f"{base}/tileMatrixSets/{tms.id}"},
        {"rel": "item", "type": MVT, "templated": True,
         "href": f"{base}{prefix}/{tms.id}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"},
        {"rel": "describedby", "type": "application/json", "title": "TileJSON",
         "href": f"{base}{prefix}/{tms.id}/tilejson.json"},
    ]


def _vector_layer_json(layer: Layer, tms: morecantile.TileMatrixSet, lang: str) -> dict:
    low, high = zoom_range(layer.zooms, tms)
    return {"id": layer.id, "description": layer.title.get(lang), "minzoom": low, "maxzoom": high,
            "fields": {f.name: f"{f.title.zh_TW} / {f.title.en} ({JSON_TYPES[f.type]})" for f in layer.fields}}


def _tileset(request: Request, prefix: str, title: I18n, layers: list[Layer], tms: morecantile.TileMatrixSet) -> dict:
    return {"title": title.get(requested_language(request)), "dataType": "vector", "crs": tms.crs.srs,
            "tileMatrixSetURI": tms.uri or f"{base_url(request)}/tileMatrixSets/{tms.id}",
            "links": _links_for(request, prefix, tms),
            "layers": [{"id": layer.id, "dataType": "vector", "geometryDimension": _dimension(layer),
                        "minTileMatrix": str(zoom_range(layer.zooms, tms)[0]),
                        "maxTileMatrix": str(zoom_range(layer.zooms, tms)[1])} for layer in layers]}


def _dimension(layer: Layer) -> int:
    return 0 if layer.geometry.endswith("Point") else 1 if "Line" in layer.geometry else 2


def _tilejson(request: Request, prefix: str, name: str, description: I18n, layers: list[Layer],
              tms: morecantile.TileMatrixSet) -> dict:
    live, lang = snapshot().layers, requested_language(request)
    boxes = [live[layer.id].extent for layer in layers if live.get(layer.id) and live[layer.id].extent]
    bounds = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
              max(b[3] for b in boxes)] if boxes else [120.45, 23.99, 121.46, 24.45]
    minzoom = min((zoom_range(layer.zooms, tms)[0] for layer in layers), default=0)
    maxzoom = max((zoom_range(layer.zooms, tms)[1] for layer in layers), default=22)
    return {"tilejson": "3.0.0", "name": name, "description": description.get(lang), "version": "1.0.0",
            "scheme": "xyz", "tiles": [f"{base_url(request)}{prefix}/{tms.id}/{{z}}/{{y}}/{{x}}"],
            "minzoom": minzoom, "maxzoom": maxzoom, "bounds": bounds,
            "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, max(minzoom, 12)],
            "attribution": "© 臺中市政府 Taichung City Government (政府資料開放授權條款－第1版)",
            "vector_layers": [_vector_layer_json(layer, tms, lang) for layer in layers]}


def _localised(request: Request, body: dict) -> JSONResponse:
    """A tileset or TileJSON document: its titles are in the language the request asks for, as a
    collection's are (``lang``, then ``Accept-Language``; zh-TW by default)."""
    return JSONResponse(body, headers={"Content-Language": requested_language(request), "Vary": "Accept-Language"})


async def tile_matrix_sets(request: Request) -> JSONResponse:
    base = base_url(request)
    return JSONResponse({"tileMatrixSets": [
        {"id": t.id, "title": t.title, "uri": t.uri or f"{base}/tileMatrixSets/{t.id}",
         "links": [{"rel": "self", "type": "application/json", "href": f"{base}/tileMatrixSets/{t.id}"}]}
        for t in SERVED.values()]})


async def tile_matrix_set(request: Request) -> JSONResponse:
    return JSONResponse(tms_or_404(request.path_params["tms"]).model_dump(mode="json", exclude_none=True))


async def collection_tilesets(request: Request) -> JSONResponse:
    layer = vector_layer(request.path_params["collection_id"])
    prefix = f"/collections/{layer.id}/tiles"
    return _localised(request, {"links": [{"rel": "self", "href": f"{base_url(request)}{prefix}"}],
                                "tilesets": [_tileset(request, prefix, layer.title, [layer], t) for t in SERVED.values()]})


async def collection_tileset(request: Request) -> JSONResponse:
    layer = vector_layer(request.path_params["collection_id"])
    tms = tms_or_404(request.path_params["tms"])
    return _localised(request, _tileset(request, f"/collections/{layer.id}/tiles", layer.title, [layer], tms))


async def collection_tilejson(request: Request) -> JSONResponse:
    layer = vector_layer(request.path_params["collection_id"])
    tms = tms_or_404(request.path_params["tms"])
    return _localised(request, _tilejson(request, f"/collections/{layer.id}/tiles", layer.id, layer.description,
                                         [layer], tms))


async def basemap_tilesets(request: Request) -> JSONResponse:
    layers = basemap_layers()
    return _localised(request, {"links": [{"rel": "self", "href": f"{base_url(request)}/tiles"}],
                                "tilesets": [_tileset(request, "/tiles", BASEMAP_TITLE, layers, t)
                                             for t in SERVED.values()]})


async def basemap_tileset(request: Request) -> JSONResponse:
    tms = tms_or_404(request.path_params["tms"])
    return _localised(request, _tileset(request, "/tiles", BASEMAP_TITLE, basemap_layers(), tms))


async def basemap_tilejson(request: Request) -> JSONResponse:
    tms = tms_or_404(request.path_params["tms"])
    return _localised(request, _tilejson(request, "/tiles", "basemap", BASEMAP_TITLE, basemap_layers(), tms))


def _format_check(request: Request) -> None:
    f = request.query_params.get("f")
    if f not in (None, "mvt", "pbf"):
        raise bad_parameter("f", f"vector tiles are Mapbox Vector Tiles (f=mvt), not {f!r}")


async def checked_collection_tile(request: Request) -> Response:
    _format_check(request)
    return await collection_tile(request)


async def checked_basemap_tile(request: Request) -> Response:
    _format_check(request)
    return await basemap_tile(request)


routes = [
    Route("/tileMatrixSets", tile_matrix_sets, methods=["GET"]),
    Route("/tileMatrixSets/{tms}", tile_matrix_set, methods=["GET"]),
    Route("/collections/{collection_id}/tiles", collection_tilesets, methods=["GET"]),
    Route("/collections/{collection_id}/tiles/{tms}", collection_tileset, methods=["GET"]),
    Route("/collections/{collection_id}/tiles/{tms}/tilejson.json", collection_tilejson, methods=["GET"]),
    Route("/collections/{collection_id}/tiles/{tms}/{z:int}/{y:int}/{x:int}", checked_collection_tile, methods=["GET"]),
    Route("/tiles", basemap_tilesets, methods=["GET"]),
    Route("/tiles/{tms}", basemap_tileset, methods=["GET"]),
    Route("/tiles/{tms}/tilejson.json", basemap_tilejson, methods=["GET"]),
    Route("/tiles/{tms}/{z:int}/{y:int}/{x:int}", checked_basemap_tile, methods=["GET"]),
]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
TMS_ID = openapi30.path_parameter("tileMatrixSetId", "a tile matrix set (see /tileMatrixSets)",
               {"type": "string", "enum": list(SERVED)})
TILE = [openapi30.path_parameter("tileMatrix", "zoom level", {"type": "integer", "minimum": 0}),
        openapi30.path_parameter("tileRow", "row", {"type": "integer", "minimum": 0}),
        openapi30.path_parameter("tileCol", "column", {"type": "integer", "minimum": 0})]
MVT_FORMAT = openapi30.query_parameter("f", "mvt (the default) or pbf: both are Mapbox Vector Tiles",
                    {"type": "string", "enum": ["mvt", "pbf"]})
TILESETS = openapi30.ok("the tilesets (one per tile matrix set)", {"type": "object", "required": ["tilesets"], "properties": {
    "links": openapi30.LINKS, "tilesets": {"type": "array", "items": openapi30.OBJECT}}}, "application/json")
TILESET = openapi30.ok("a tileset: its tile matrix set, layers and templated tile link",
              {"type": "object", "required": ["links"], "properties": {"links": openapi30.LINKS}}, "application/json")
TILEJSON = openapi30.ok("TileJSON 3.0.0", {"type": "object", "required": ["tilejson", "tiles"], "properties": {
    "tilejson": {"type": "string"}, "tiles": {"type": "array", "items": {"type": "string"}}}}, "application/json")
MVT_ANSWER = {"description": "a Mapbox Vector Tile", "content": {MVT: {"schema": openapi30.BINARY}}}
TILE_ANSWERS = {"204": {"description": "the tile holds no feature"}, **openapi30.NOT_MODIFIED, **openapi30.NOT_FOUND}

TILES = {
    "/tileMatrixSets": openapi30.get("the tile matrix sets served", "Tiles", openapi30.ok(
        "the tile matrix sets", {"type": "object", "required": ["tileMatrixSets"], "properties": {
            "tileMatrixSets": {"type": "array", "items": openapi30.OBJECT}}}, "application/json")),
    "/tileMatrixSets/{tileMatrixSetId}": openapi30.get("a tile matrix set (OGC TMS 2.0)", "Tiles", openapi30.ok(
        "the tile matrix set", openapi30.OBJECT, "application/json"), TMS_ID, more=openapi30.NOT_FOUND),
    "/collections/{collectionId}/tiles": openapi30.get("a collection's vector tilesets", "Tiles", TILESETS,
                                              openapi30.COLLECTION, more=openapi30.NOT_FOUND),
    "/collections/{collectionId}/tiles/{tileMatrixSetId}": openapi30.get("a collection's vector tileset", "Tiles", TILESET,
                                                                openapi30.COLLECTION, TMS_ID, more=openapi30.NOT_FOUND),
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json": openapi30.get(
        "a collection's tileset as TileJSON", "Tiles", TILEJSON, openapi30.COLLECTION, TMS_ID, openapi30.LANG, more=openapi30.NOT_FOUND),
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}": openapi30.get(
        "a vector tile of a collection", "Tiles", MVT_ANSWER, openapi30.COLLECTION, TMS_ID, *TILE, MVT_FORMAT, more=TILE_ANSWERS),
    "/tiles": openapi30.get("the base map's vector tilesets", "Tiles", TILESETS),
    "/tiles/{tileMatrixSetId}": openapi30.get("the base map's vector tileset", "Tiles", TILESET, TMS_ID, more=openapi30.NOT_FOUND),
    "/tiles/{tileMatrixSetId}/tilejson.json": openapi30.get("the base map as TileJSON", "Tiles", TILEJSON, TMS_ID,
                                                   more=openapi30.NOT_FOUND),
    "/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}": openapi30.get(
        "a vector tile of the base map (the layers the caller may read)", "Tiles", MVT_ANSWER, TMS_ID, *TILE, MVT_FORMAT,
        more=TILE_ANSWERS),
}

OPENAPI_PATHS = TILES
