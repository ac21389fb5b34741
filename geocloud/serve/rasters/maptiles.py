"""OGC API - Tiles for the raster layers: map tilesets in WebMercatorQuad and TWD97TM2Quad.

``/collections/{id}/map/tiles`` lists the tilesets and ``/collections/{id}/map/tiles/{tms}``
describes one: its tile matrix set, the tile matrices that hold the layer (the catalog's zoom
range, with each matrix's row and column limits over the layer's extent) and templated ``item``
links in PNG, JPEG and WebP. The links point at the raster tile routes (``/rasters/{id}/tiles``),
so there is one tile route, one cache and one ETag per tile; OGC clients follow the template
(``{tileMatrix}``, ``{tileRow}``, ``{tileCol}``), never a URL pattern of their own.
"""

import morecantile
from pyproj import CRS
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from titiler.core.utils import tms_limits

from geocloud.catalog import Layer
from geocloud.serve import openapi30
from geocloud.serve.http import base_url
from geocloud.serve.ogcapi.pygeoapi_config import CRS84 as CRS84_URI
from geocloud.serve.rasters.tiler import raster_layer
from geocloud.serve.state import snapshot
from geocloud.serve.tiles.tiles import TILING_SCHEME, tms_or_404
from geocloud.serve.tiles.tms import SERVED, zoom_range

FORMATS = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
CRS84 = CRS.from_user_input("OGC:CRS84")


def tileset(request: Request, layer: Layer, tms: morecantile.TileMatrixSet) -> dict:
    base = base_url(request)
    here = f"{base}/collections/{layer.id}/map/tiles/{tms.id}"
    tiles = f"{base}/rasters/{layer.id}/tiles/{tms.id}/{{tileMatrix}}/{{tileCol}}/{{tileRow}}"
    extent = snapshot().layers[layer.id].extent
    low, high = zoom_range(layer.zooms, tms)
    doc = {
        "title": f"{layer.title.en} ({tms.id})", "dataType": "map", "crs": tms.crs.srs,
        "tileMatrixSetURI": tms.uri or f"{base}/tileMatrixSets/{tms.id}",
        "links": [
            {"rel": "self", "type": "application/json", "href": here},
            {"rel": TILING_SCHEME, "type": "application/json", "href": f"{base}/tileMatrixSets/{tms.id}"},
            *({"rel": "item", "type": media, "templated": True, "title": f"{layer.id} tiles ({ext.upper()})",
               "href": f"{tiles}.{ext}"} for ext, media in FORMATS.items()),
            {"rel": "describedby", "type": "application/json", "title": "TileJSON",
             "href": f"{base}/rasters/{layer.id}/{tms.id}/tilejson.json"},
        ],
    }
    if extent:
        doc["boundingBox"] = {"lowerLeft": list(extent[:2]), "upperRight": list(extent[2:]), "crs": CRS84_URI}
        doc["tileMatrixSetLimits"] = tms_limits(tms, extent, (low, high), geographic_crs=CRS84)
    return doc


async def tilesets(request: Request) -> JSONResponse:
    layer = raster_layer(request.path_params["collection_id"], "rasters")
    return JSONResponse({
        "links": [{"rel": "self", "type": "application/json",
                   "href": f"{base_url(request)}/collections/{layer.id}/map/tiles"}],
        "tilesets": [tileset(request, layer, tms) for tms in SERVED.values()]})


async def one_tileset(request: Request) -> JSONResponse:
    layer = raster_layer(request.path_params["collection_id"], "rasters")
    return JSONResponse(tileset(request, layer, tms_or_404(request.path_params["tms"])))


routes = [
    Route("/collections/{collection_id}/map/tiles", tilesets, methods=["GET"]),
    Route("/collections/{collection_id}/map/tiles/{tms}", one_tileset, methods=["GET"]),
]


_COLLECTION = openapi30.path_parameter("collectionId", "a raster layer's id (see /collections)")
_TILESET = {"description": "a tileset (OGC API - Tiles): its tile matrix set, limits and templated tile links",
            "content": openapi30.content("application/json")}
OPENAPI_PATHS = {
    "/collections/{collectionId}/map/tiles": {"get": {
        "tags": ["tiles"], "operationId": "getRasterTilesets", "summary": "a raster layer's map tilesets",
        "parameters": [_COLLECTION],
        "responses": openapi30.responses({"description": "the tilesets", "content": openapi30.content(
            "application/json")})}},
    "/collections/{collectionId}/map/tiles/{tileMatrixSetId}": {"get": {
        "tags": ["tiles"], "operationId": "getRasterTileset", "summary": "one map tileset of a raster layer",
        "parameters": [_COLLECTION, openapi30.path_parameter("tileMatrixSetId", "the tile matrix set",
                                                             {"type": "string", "enum": list(SERVED)})],
        "responses": openapi30.responses(_TILESET)}},
}
