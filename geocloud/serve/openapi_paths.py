"""The OpenAPI path items of geocloud's own surfaces (pygeoapi describes the features part).

Grouped by the module that serves them; each entry says what the route takes and answers. The
answers every route can give (400, 401, 429, 500, 503) are added to each operation by the document
builder (``pygeoapi_config.openapi``); the shared components (``#/components/...``) live there too.
``{collectionId}`` is a vector collection the caller may read (the builder lists them).
"""

from geocloud.geocode.match import LOCKS
from geocloud.geocode.service import CRS_CHOICES
from geocloud.publish.metadata import SERVICES
from geocloud.serve.downloads import FORMATS as DOWNLOAD_FORMATS
from geocloud.serve.openapi30 import path_parameter, query_parameter
from geocloud.serve.tms import SERVED
from geocloud.serve.viewer import MAPBOX_STYLE, QML

BINARY = {"type": "string", "format": "binary"}
JSON_OBJECT = {"type": "object"}
_LINKS = {"type": "array", "items": {"$ref": "#/components/schemas/link"}}
_REF = "#/components/{}/{}".format


def _ref(kind: str, name: str) -> dict:
    return {"$ref": _REF(kind, name)}


def _ok(description: str, schema: dict, *media: str) -> dict:
    return {"description": description, "content": {m: {"schema": schema} for m in media}}


def _get(summary: str, tag: str, ok: dict, *parameters: dict, more: dict | None = None) -> dict:
    return {"get": {"summary": summary, "tags": [tag], "parameters": list(parameters),
                    "responses": {"200": ok, **(more or {})}}}


NOT_FOUND = {"404": _ref("responses", "NotFound")}
NOT_MODIFIED = {"304": _ref("responses", "NotModified")}
COLLECTION = _ref("parameters", "collectionId")
LANG = _ref("parameters", "lang")

# -- tiles.py: OGC API - Tiles (vector tiles of a collection, the base map), TileJSON --------------
TMS_ID = path_parameter("tileMatrixSetId", "a tile matrix set (see /tileMatrixSets)",
               {"type": "string", "enum": list(SERVED)})
TILE = [path_parameter("tileMatrix", "zoom level", {"type": "integer", "minimum": 0}),
        path_parameter("tileRow", "row", {"type": "integer", "minimum": 0}),
        path_parameter("tileCol", "column", {"type": "integer", "minimum": 0})]
MVT_FORMAT = query_parameter("f", "mvt (the default) or pbf: both are Mapbox Vector Tiles",
                    {"type": "string", "enum": ["mvt", "pbf"]})
TILESETS = _ok("the tilesets (one per tile matrix set)", {"type": "object", "required": ["tilesets"], "properties": {
    "links": _LINKS, "tilesets": {"type": "array", "items": JSON_OBJECT}}}, "application/json")
TILESET = _ok("a tileset: its tile matrix set, layers and templated tile link",
              {"type": "object", "required": ["links"], "properties": {"links": _LINKS}}, "application/json")
TILEJSON = _ok("TileJSON 3.0.0", {"type": "object", "required": ["tilejson", "tiles"], "properties": {
    "tilejson": {"type": "string"}, "tiles": {"type": "array", "items": {"type": "string"}}}}, "application/json")
MVT = {"description": "a Mapbox Vector Tile", "content": {"application/vnd.mapbox-vector-tile": {"schema": BINARY}}}
TILE_ANSWERS = {"204": {"description": "the tile holds no feature"}, **NOT_MODIFIED, **NOT_FOUND}

TILES = {
    "/tileMatrixSets": _get("the tile matrix sets served", "Tiles", _ok(
        "the tile matrix sets", {"type": "object", "required": ["tileMatrixSets"], "properties": {
            "tileMatrixSets": {"type": "array", "items": JSON_OBJECT}}}, "application/json")),
    "/tileMatrixSets/{tileMatrixSetId}": _get("a tile matrix set (OGC TMS 2.0)", "Tiles", _ok(
        "the tile matrix set", JSON_OBJECT, "application/json"), TMS_ID, more=NOT_FOUND),
    "/collections/{collectionId}/tiles": _get("a collection's vector tilesets", "Tiles", TILESETS,
                                              COLLECTION, more=NOT_FOUND),
    "/collections/{collectionId}/tiles/{tileMatrixSetId}": _get("a collection's vector tileset", "Tiles", TILESET,
                                                                COLLECTION, TMS_ID, more=NOT_FOUND),
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json": _get(
        "a collection's tileset as TileJSON", "Tiles", TILEJSON, COLLECTION, TMS_ID, LANG, more=NOT_FOUND),
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}": _get(
        "a vector tile of a collection", "Tiles", MVT, COLLECTION, TMS_ID, *TILE, MVT_FORMAT, more=TILE_ANSWERS),
    "/tiles": _get("the base map's vector tilesets", "Tiles", TILESETS),
    "/tiles/{tileMatrixSetId}": _get("the base map's vector tileset", "Tiles", TILESET, TMS_ID, more=NOT_FOUND),
    "/tiles/{tileMatrixSetId}/tilejson.json": _get("the base map as TileJSON", "Tiles", TILEJSON, TMS_ID,
                                                   more=NOT_FOUND),
    "/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}": _get(
        "a vector tile of the base map (the layers the caller may read)", "Tiles", MVT, TMS_ID, *TILE, MVT_FORMAT,
        more=TILE_ANSWERS),
}

# -- features.py: the sortable properties (pygeoapi describes the other features routes) ------------
FEATURES = {
    "/collections/{collectionId}/sortables": _get(
        "the properties items can be sorted by (sortby), with zh-TW and English titles", "Features",
        _ok("the sortable properties as a JSON schema", {"type": "object", "properties": {"properties": JSON_OBJECT}},
            "application/schema+json", "application/json", "text/html"),
        COLLECTION, _ref("parameters", "f"), LANG, more=NOT_FOUND),
}

# -- wmts.py: WMTS 1.0.0 RESTful capabilities of the raster layers ---------------------------------
XML = "application/xml"
WMTS = {
    "/wmts/1.0.0/WMTSCapabilities.xml": _get("WMTS capabilities of the raster layers the caller may read",
                                             "WMTS", _ok("WMTS capabilities", {"type": "string"}, XML)),
}

# -- geocoding.py: addresses (門牌) to coordinates and back ------------------------------------------
GEO_CRS = query_parameter("crs", "the CRS of the coordinates answered (and of x/y in /reverse)",
                 {"type": "string", "enum": list(CRS_CHOICES)})
MATCHING = [
    GEO_CRS,
    query_parameter("candidates", "how many candidates to answer", {"type": "integer", "minimum": 1, "maximum": 10}),
    query_parameter("max_distance", "how many house numbers away a nearest-number match may be",
           {"type": "integer", "minimum": 0, "maximum": 500}),
    query_parameter("same_parity", "a nearest-number match keeps the side of the street (odd/even)",
           {"type": "string", "enum": ["true", "false"]}),
    query_parameter("fuzzy", "nearest (match the nearest house number) or none (exact matches only)",
           {"type": "string", "enum": ["nearest", "none"]}),
    query_parameter("lock", f"comma-separated levels a match must agree on: {', '.join(LOCKS)}", {"type": "string"}),
]
RESULT = _ok("the match", JSON_OBJECT, "application/json")
ADDRESSES_NOT_LOADED = {"503": _ref("responses", "ServiceUnavailable")}
GEOCODING = {
    "/geocode": _get("geocode one address", "Geocoding", RESULT,
                     query_parameter("address", "the address, e.g. 臺中市西屯區臺灣大道三段99號", {"type": "string"},
                            required=True),
                     query_parameter("format", "json (the default) or tgos (TGOS's answer shape)",
                            {"type": "string", "enum": ["json", "tgos"]}), *MATCHING),
    "/geocode/batch": {"post": {
        "summary": "geocode a CSV of addresses (streamed back with the match columns appended)",
        "tags": ["Geocoding"],
        "parameters": [query_parameter("column", "the CSV column holding the addresses, e.g. 地址", {"type": "string"}, required=True),
                       *MATCHING],
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
        "responses": {"200": _ok("the CSV with the match columns", {"type": "string"}, "text/csv"),
                      "413": _ref("responses", "PayloadTooLarge")}}},
    "/reverse": _get("the address (and what else is there) at a point", "Geocoding", RESULT,
                     query_parameter("lon", "longitude (with lat)", {"type": "number", "minimum": -180, "maximum": 180}),
                     query_parameter("lat", "latitude (with lon)", {"type": "number", "minimum": -90, "maximum": 90}),
                     query_parameter("x", "easting in crs (with y)", {"type": "number"}),
                     query_parameter("y", "northing in crs (with x)", {"type": "number"}), *MATCHING),
}

# -- downloads.py: a vector layer, whole or filtered, in a file format -----------------------------
DOWNLOAD_MEDIA = sorted({media.split(";")[0] for media, _ in DOWNLOAD_FORMATS.values()})
DOWNLOADS = {
    "/collections/{collectionId}/download": _get(
        "download a collection, whole or filtered", "Downloads",
        {"description": "the file (named after the layer and its live version)",
         "content": {m: {"schema": JSON_OBJECT if m.endswith("json") else BINARY} for m in DOWNLOAD_MEDIA}},
        COLLECTION,
        query_parameter("f", "the file format (geojson by default)", {"type": "string", "enum": list(DOWNLOAD_FORMATS)}),
        query_parameter("accept_terms", "for a collection that is not public: the terms of use accepted", {"type": "string"}),
        _ref("parameters", "bbox"), _ref("parameters", "bbox-crs"), _ref("parameters", "filter"),
        _ref("parameters", "filter-lang"), _ref("parameters", "filter-crs"),
        more={**NOT_MODIFIED, **NOT_FOUND}),
}

# -- catalog.py: metadata records (TWSMP / ISO 19139) and the DCAT-AP feed -------------------------
CATALOG = {
    "/metadata/services/{service}.xml": _get(
        "a service's metadata record", "Metadata", _ok("the record (ISO 19139)", {"type": "string"}, XML),
        path_parameter("service", "the service", {"type": "string", "enum": list(SERVICES)}),
        more={**NOT_MODIFIED, **NOT_FOUND}),
    "/metadata/{layerId}.xml": _get(
        "a layer's metadata record", "Metadata", _ok("the record (TWSMP, ISO 19139)", {"type": "string"}, XML),
        path_parameter("layerId", "a layer (vector or raster) the caller may read", {"type": "string", "example": "roads"}),
        more={**NOT_MODIFIED, **NOT_FOUND}),
    "/catalog/dcat.jsonld": _get("the public layers as a DCAT-AP catalogue", "Metadata",
                                 _ok("the catalogue", JSON_OBJECT, "application/ld+json"),
                                 more={**NOT_MODIFIED, **NOT_FOUND}),
}

# -- viewer.py: styles (MapLibre, QGIS) and the map viewer with its files ---------------------------
STYLE_NAME = path_parameter("name", "a style (see /styles): a layer's or a map's, e.g. basemap",
                   {"type": "string", "example": "roads"})
FILE = {"description": "the file", "content": {"*/*": {"schema": BINARY}}}
FILE_PATH = path_parameter("path", "the file's path")
VIEWER = {
    "/styles": _get("the styles the caller may use", "Styles", _ok(
        "the styles", {"type": "object", "required": ["styles"], "properties": {
            "styles": {"type": "array", "items": JSON_OBJECT}}}, "application/json")),
    "/styles/{name}.json": _get("a MapLibre style", "Styles", _ok("the style", JSON_OBJECT, MAPBOX_STYLE),
                                STYLE_NAME, more=NOT_FOUND),
    "/styles/{name}.qml": _get("a QGIS style", "Styles", _ok("the QML", {"type": "string"}, QML), STYLE_NAME,
                               more=NOT_FOUND),
    "/map": _get("the map viewer (redirects to /map/)", "Viewer", _ok("the viewer", {"type": "string"}, "text/html"),
                 more={"307": {"description": "to /map/"}}),
    "/map/": _get("the map viewer", "Viewer", _ok("the viewer", {"type": "string"}, "text/html")),
    "/map/static/{path}": _get("the viewer's files", "Viewer", FILE, FILE_PATH, more=NOT_FOUND),
    "/map/static/maplibre-gl/{path}": _get("MapLibre GL JS (from the project's npm packages)", "Viewer", FILE,
                                           FILE_PATH, more=NOT_FOUND),
}

# -- app.py: pygeoapi's stylesheet and images for its HTML pages -----------------------------------
STATIC = {"/static/{path}": _get("pygeoapi's stylesheet and images", "Viewer", FILE, FILE_PATH, more=NOT_FOUND)}

# -- auth.py: short-lived tokens for tile URLs in web pages -----------------------------------------
AUTH = {
    "/auth/token": {"post": {
        "summary": "a short-lived token for tile URLs (?token=), for the caller's key or JWT",
        "tags": ["Access"],
        "security": [{"apiKey": []}, {"bearer": []}, {"basic": []}],
        "parameters": [
            query_parameter("expires_in", "seconds the token is valid", {"type": "integer", "minimum": 60, "maximum": 86400}),
            query_parameter("layers", "comma-separated layers to narrow the token to (of those the caller may read)",
                   {"type": "string"})],
        "responses": {"200": _ok("the token", {"type": "object", "required": ["token", "expires"], "properties": {
            "token": {"type": "string"}, "expires": {"type": "integer"}}}, "application/json"),
            "403": _ref("responses", "Forbidden")}}},
}

# -- health.py and metrics.py: for the load balancer and the monitoring ----------------------------
READY = {"type": "object", "required": ["status", "reads_from", "writes", "databases", "catalog"], "properties": {
    "status": {"type": "string", "enum": ["ready", "not ready"]},
    "reads_from": {"type": "string", "enum": ["replica", "primary"]},
    "writes": {"type": "string", "enum": ["available", "unavailable"]}, "databases": JSON_OBJECT,
    "catalog": {"type": "object", "nullable": True}}}
OPERATIONS = {
    "/health/live": _get("the process answers", "Health", _ok("live", JSON_OBJECT, "application/json")),
    "/health/ready": _get("the node can serve correctly: database roles, replica lag, catalog version", "Health",
                          _ok("ready", READY, "application/json"),
                          more={"503": {"description": "not ready (the body says why); see Retry-After",
                                        "content": {"application/json": {"schema": READY}}}}),
    "/metrics": _get("Prometheus metrics (GEOCLOUD_METRICS: off by default, then 404)", "Health",
                     _ok("the metrics", {"type": "string"}, "text/plain"),
                     more={**NOT_FOUND, "403": _ref("responses", "Forbidden")}),
}

OPENAPI_PATHS = {**FEATURES, **TILES, **WMTS, **GEOCODING, **DOWNLOADS, **CATALOG, **VIEWER, **STATIC, **AUTH,
                 **OPERATIONS}
