"""OGC API - Coverages for the raster layers: the live COG, whole or a part of it, as GeoTIFF.

GDAL's OGCAPI driver (``OGCAPI:<base>/collections/satellite``) finds the coverage by its link
in the collection document, reads the grid from the ``coverage-domainset`` link and the bands from
the ``coverage-rangetype`` link, then asks for 256-pixel blocks as
``subset=Lon(a:b),Lat(c:d)&scaleSize=Lon(256),Lat(256)``. The driver labels whatever it reads
EPSG:4326, so the domain is offered on a CRS84 grid (the COG's own grid warped to longitude and
latitude, as ``gdalwarp`` would make it), and every answer is a grid in the CRS its area was given
in: a Lon/Lat subset or a CRS84 ``bbox`` gives a longitude/latitude grid, an E/N subset or
``bbox-crs`` of EPSG:3826 the layer's own; no area gives the whole image in its own CRS.
rio-tiler reads (``part``/``preview``) and writes the GeoTIFF.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

import rasterio
from pyproj import CRS, Transformer
from rasterio.warp import calculate_default_transform
from rio_tiler.io import Reader
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geocloud.serve import guard, openapi30
from geocloud.serve.http import bad_parameter, not_modified, validators
from geocloud.serve.ogcapi import params
from geocloud.serve.ogcapi.pygeoapi_config import CRS84, EPSG_URI, OUTPUT_CRS
from geocloud.serve.rasters.tiler import LIMITS, cog_path, number, raster_layer
from geocloud.serve.state import snapshot

GEOTIFF = "image/tiff; application=geotiff"
FORMATS = ("tif", "tiff", "geotiff", "gtiff")  # f=, any case; GeoTIFF is the only encoding
MAX_SIDE = LIMITS["width"][1]
LONLAT, NATIVE = "lonlat", "native"
AXES = {"lon": (LONLAT, 0), "long": (LONLAT, 0), "lat": (LONLAT, 1),  # subset/scale-size axis -> (grid, 0=x 1=y)
        "e": (NATIVE, 0), "x": (NATIVE, 0), "n": (NATIVE, 1), "y": (NATIVE, 1)}
AXIS_CALL = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$")
DATA_TYPES = {"uint8": "unsignedByte", "int8": "signedByte", "uint16": "unsignedShort", "int16": "signedShort",
              "uint32": "unsignedInt", "int32": "signedInt", "float32": "float32", "float64": "float64"}
INDEX_2D = "http://www.opengis.net/def/crs/OGC/0/Index2D"
# Each pixel's source found by the exact transformation, not GDAL's default approximation (an error
# of up to 1/8 pixel that depends on the window): a client that reads the coverage in blocks (GDAL:
# 256 pixels) gets the same pixels as one that reads it whole. (rasterio's WarpedVRT refuses 0.)
# It costs about 1 s of a worker for 2048 x 2048 pixels.
EXACT = {"tolerance": 1e-9}


@dataclass(frozen=True)
class Grid:
    """What a client needs to know of a COG: its CRS84 grid (bounds, cell size, cells) and bands."""
    lonlat: tuple[float, float, float, float]
    resolution: tuple[float, float]
    size: tuple[int, int]
    native: tuple[float, float, float, float]
    bands: tuple[str, ...]
    dtype: str


@lru_cache(maxsize=64)
def grid_of(path: str) -> Grid:
    """A published COG does not change under its path, so its grid is read once."""
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                                                *src.bounds)
        names = tuple(src.descriptions[i] or (c.name if c.name not in ("undefined", "gray") else f"b{i + 1}")
                      for i, c in enumerate(src.colorinterp))
        return Grid((transform.c, transform.f + height * transform.e, transform.c + width * transform.a, transform.f),
                    (transform.a, -transform.e), (width, height), tuple(src.bounds), names, src.dtypes[0])


@dataclass(frozen=True)
class Ask:
    """One coverage request: an area (None: the whole image) in ``crs``, and the output size."""
    bbox: tuple[float, float, float, float] | None
    crs: str | None
    width: int | None
    height: int | None


def _axis_calls(name: str, query) -> list[tuple[str, str]]:
    """``Lon(120.6:120.7),Lat(24.1:24.2)`` (one parameter, or repeated) as (axis, argument) pairs."""
    calls = []
    for value in query.getlist(name):
        for part in re.split(r",(?![^()]*\))", value):
            match = AXIS_CALL.match(part)
            if match is None or match.group(1).lower() not in AXES:
                raise bad_parameter(name, f"expected Axis(...) with an axis of Lon, Lat (CRS84) or E, N (the "
                                          f"layer's CRS), e.g. Lon(120.6:120.7),Lat(24.1:24.2); got {part!r}")
            calls.append((match.group(1).lower(), match.group(2)))
    return calls


def _one_grid(name: str, calls) -> str | None:
    grids = {AXES[axis][0] for axis, _ in calls}
    if len(grids) > 1:
        raise bad_parameter(name, "do not mix Lon/Lat (CRS84) and E/N (the layer's CRS) axes")
    return grids.pop() if grids else None


def _subset(query, grid: Grid) -> tuple[tuple[float, float, float, float], str] | None:
    calls = _axis_calls("subset", query)
    kind = _one_grid("subset", calls)
    if kind is None:
        return None
    full = grid.lonlat if kind == LONLAT else grid.native
    box = list(full)
    for axis, argument in calls:
        low, sep, high = argument.partition(":")
        if not sep:
            raise bad_parameter("subset", f"expected {axis}(low:high), got {axis}({argument})")
        i = AXES[axis][1]
        box[i] = full[i] if low.strip() == "*" else number("subset", low)
        box[i + 2] = full[i + 2] if high.strip() == "*" else number("subset", high)
    return tuple(box), kind


def _bbox(query) -> tuple[tuple[float, float, float, float], str] | None:
    value, crs_uri = query.get("bbox"), query.get("bbox-crs") or CRS84
    params._crs("bbox-crs", crs_uri)
    if value is None:
        return None
    params._bbox(value, crs_uri)
    numbers = [float(v) for v in value.split(",")]
    half = len(numbers) // 2
    box = (numbers[0], numbers[1], numbers[half], numbers[half + 1])
    if crs_uri == EPSG_URI.format(4326):  # lat,lon in the authority's order; rasterio reads lon,lat
        box = (box[1], box[0], box[3], box[2])
    return box, crs_uri


def _size(query, ratio: float) -> tuple[int | None, int | None]:
    """The output width and height: ``width``/``height`` or ``scale-size`` (``scaleSize``), each
    within LIMITS; one of them alone keeps the area's aspect ``ratio`` (height / width)."""
    sizes: dict[str, str] = {}
    for name in ("scale-size", "scaleSize"):
        calls = _axis_calls(name, query)
        _one_grid(name, calls)
        for axis, argument in calls:
            sizes["width" if AXES[axis][1] == 0 else "height"] = argument
    for name in ("width", "height"):
        if name in query:
            sizes[name] = query[name]
    out = {}
    for name, text in sizes.items():
        value = number(name, text)
        low, high = LIMITS[name]
        if not (value.is_integer() and low <= value <= high):
            raise bad_parameter(name, f"must be an integer from {low} to {high}, got {text!r}")
        out[name] = int(value)
    if len(out) == 1:
        name, value = next(iter(out.items()))
        other, derived = ("height", round(value * ratio)) if name == "width" else ("width", round(value / ratio))
        if not 1 <= derived <= MAX_SIDE:
            raise bad_parameter(name, f"{name}={value} makes the {other} {derived} pixels for this area's aspect; "
                                      f"give both width and height, each at most {MAX_SIDE}")
        out[other] = derived
    return out.get("width"), out.get("height")


def ask(query, grid: Grid, srid: int) -> Ask:
    """The area and size a coverage request asks for; 400 naming the parameter otherwise."""
    params.no_nul(query)
    f = query.get("f")
    if f is not None and f.lower() not in FORMATS:
        raise bad_parameter("f", f"coverages are GeoTIFF (f=tif), not {f!r}")
    subset, bbox = _subset(query, grid), _bbox(query)
    if subset and bbox:
        raise bad_parameter("bbox", "give the area as bbox or as subset, not both")
    if subset or bbox:
        box, where = subset or bbox
        crs = {LONLAT: "EPSG:4326", CRS84: "EPSG:4326", NATIVE: f"EPSG:{srid}"}.get(where) or \
            f"EPSG:{CRS.from_user_input(where).to_epsg()}"
        name = "subset" if subset else "bbox"
        if not (box[0] < box[2] and box[1] < box[3]):
            raise bad_parameter(name, f"the area is empty or inverted (min must be below max), got {box}")
        low_x, low_y, high_x, high_y = area_of_use(crs)
        if not (low_x <= box[0] and low_y <= box[1] and box[2] <= high_x and box[3] <= high_y):
            raise bad_parameter(name, f"the area {box} is outside where {crs} is defined ("
                                      f"{low_x:.6g},{low_y:.6g} to {high_x:.6g},{high_y:.6g}, x,y order)")
    else:
        box, crs = None, None
        x0, y0, x1, y1 = grid.native
    ratio = (box[3] - box[1]) / (box[2] - box[0]) if box else (y1 - y0) / (x1 - x0)
    width, height = _size(query, ratio)
    return Ask(box, crs, width, height)


@lru_cache(maxsize=8)
def area_of_use(crs: str) -> tuple[float, float, float, float]:
    """Where coordinates in ``crs`` name a place (its EPSG area of use, in its own units, x,y order).
    An area beyond it is a client's mistake, not an image (and one far beyond it, such as
    Lon(-1e300:1e300), overflows GDAL's window arithmetic)."""
    found = CRS.from_user_input(crs)
    bounds = found.area_of_use.bounds
    if found.is_geographic:
        return bounds
    return Transformer.from_crs("EPSG:4326", found, always_xy=True).transform_bounds(*bounds)


def render(path: str, area: Ask) -> bytes:
    """The GeoTIFF of ``area``: rio-tiler warps the COG (nearest neighbour, EXACT) to the asked grid,
    so at the COG's resolution (GDAL's full-resolution blocks) the pixels are the COG's own; a
    coarser size reads its overviews (as rio-tiler does for tiles). With no size given: the native
    resolution, at most MAX_SIDE pixels a side."""
    sized = {"width": area.width, "height": area.height} if area.width else {"max_size": MAX_SIDE}
    with Reader(path) as src:
        if area.bbox is None:
            image = src.preview(**{"max_size": None, **sized})
        else:
            image = src.part(area.bbox, dst_crs=area.crs, bounds_crs=area.crs, vrt_options=EXACT, **sized)
    return image.render(add_mask=False, img_format="GTiff", compress="deflate")


async def coverage(request: Request) -> Response:
    layer = raster_layer(request.path_params["collection_id"], "coverage")
    live = snapshot().layers[layer.id]
    path = cog_path(layer.id)
    grid = await run_in_threadpool(grid_of, path)
    area = ask(request.query_params, grid, layer.srid)
    headers = validators(request, f"coverage:{layer.id}:{live.version}", live.published_at,
                         guard.cache_control([layer.id]))
    if (cached := not_modified(request, headers)) is not None:
        return cached
    body = await run_in_threadpool(render, path, area)
    crs = CRS84 if area.crs == "EPSG:4326" else EPSG_URI.format((area.crs or f"EPSG:{layer.srid}").split(":")[1])
    return Response(body, media_type=GEOTIFF, headers={
        **headers, "Content-Crs": f"<{crs}>", "Content-Disposition": f'inline; filename="{layer.id}.tif"'})


def domainset_of(grid: Grid) -> dict:
    """The coverage's domain (OGC CIS 1.1 JSON) on its CRS84 grid, as GDAL's OGCAPI driver reads it."""
    (x0, y0, x1, y1), (rx, ry), (w, h) = grid.lonlat, grid.resolution, grid.size
    return {"type": "DomainSet", "generalGrid": {
        "type": "GeneralGridCoverage", "srsName": CRS84, "axisLabels": ["Lon", "Lat"],
        "axis": [{"type": "RegularAxis", "axisLabel": "Lon", "lowerBound": x0, "upperBound": x1, "uomLabel": "deg",
                  "resolution": rx},
                 {"type": "RegularAxis", "axisLabel": "Lat", "lowerBound": y0, "upperBound": y1, "uomLabel": "deg",
                  "resolution": ry}],
        "gridLimits": {"type": "GridLimits", "srsName": INDEX_2D, "axisLabels": ["i", "j"], "axis": [
            {"type": "IndexAxis", "axisLabel": "i", "lowerBound": 0, "upperBound": w - 1},
            {"type": "IndexAxis", "axisLabel": "j", "lowerBound": 0, "upperBound": h - 1}]}}}


def rangetype_of(grid: Grid) -> dict:
    """The bands (SWE Common DataRecord); ``ogcType:`` data types are the ones GDAL maps to its own."""
    return {"type": "DataRecord", "field": [
        {"type": "Quantity", "name": name, "definition": f"ogcType:{DATA_TYPES.get(grid.dtype, grid.dtype)}"}
        for name in grid.bands]}


def _document(build):
    async def handler(request: Request) -> Response:
        layer = raster_layer(request.path_params["collection_id"], "coverage")
        live = snapshot().layers[layer.id]
        headers = validators(request, f"{request.url.path}:{live.version}", live.published_at,
                             guard.cache_control([layer.id]))
        if (cached := not_modified(request, headers)) is not None:
            return cached
        return JSONResponse(build(await run_in_threadpool(grid_of, cog_path(layer.id))), headers=headers)
    return handler


routes = [
    Route("/collections/{collection_id}/coverage", coverage, methods=["GET"]),
    Route("/collections/{collection_id}/coverage/domainset", _document(domainset_of), methods=["GET"]),
    Route("/collections/{collection_id}/coverage/rangetype", _document(rangetype_of), methods=["GET"]),
]


_COLLECTION = openapi30.path_parameter("collectionId", "a raster layer's id (see /collections)")
_AXES = "Lon, Lat (CRS84) or E, N (the layer's CRS, EPSG:3826)"
_COVERAGE_PARAMETERS = [
    _COLLECTION,
    openapi30.query_parameter("bbox", "the area: minx,miny,maxx,maxy in bbox-crs (CRS84 by default); the answer is a "
                                      "grid in that CRS", {"type": "array", "items": {"type": "number"},
                                                           "minItems": 4, "maxItems": 6}, style="form", explode=False),
    openapi30.query_parameter("bbox-crs", "the CRS of bbox", {"type": "string", "enum": OUTPUT_CRS, "default": CRS84}),
    openapi30.query_parameter("subset", f"the area by axis, e.g. Lon(120.6:120.7),Lat(24.1:24.2); axes {_AXES}; "
                                        "* for the coverage's own bound", {"type": "string"}),
    openapi30.query_parameter("scale-size", "the output size by axis, e.g. Lon(512),Lat(256) (also scaleSize)",
                              {"type": "string"}),
    openapi30.query_parameter("scaleSize", "as scale-size (GDAL's OGCAPI driver sends this name)", {"type": "string"}),
    *(openapi30.query_parameter(name, f"output {name} in pixels (one alone keeps the area's aspect)",
                                {"type": "integer", "minimum": LIMITS[name][0], "maximum": LIMITS[name][1]})
      for name in ("width", "height")),
    openapi30.query_parameter("f", "the encoding: GeoTIFF only", {"type": "string", "enum": list(FORMATS)}),
]
OPENAPI_PATHS = {
    "/collections/{collectionId}/coverage": {"get": {
        "tags": ["coverages"], "operationId": "getCoverage", "summary": "the coverage, or a part of it, as GeoTIFF",
        "description": __doc__, "parameters": _COVERAGE_PARAMETERS,
        "responses": openapi30.responses({"description": "a GeoTIFF (Content-Crs names its CRS)",
                                          "content": openapi30.content(GEOTIFF)})}},
    "/collections/{collectionId}/coverage/domainset": {"get": {
        "tags": ["coverages"], "operationId": "getCoverageDomainSet", "summary": "the coverage's grid (CIS 1.1 JSON)",
        "parameters": [_COLLECTION],
        "responses": openapi30.responses({"description": "the domain set", "content": openapi30.content(
            "application/json")})}},
    "/collections/{collectionId}/coverage/rangetype": {"get": {
        "tags": ["coverages"], "operationId": "getCoverageRangeType", "summary": "the coverage's bands (SWE DataRecord)",
        "parameters": [_COLLECTION],
        "responses": openapi30.responses({"description": "the range type", "content": openapi30.content(
            "application/json")})}},
}
