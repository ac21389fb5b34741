"""Geocoding routes: ``/geocode``, ``/geocode/batch`` and ``/reverse`` over the live 門牌 layer."""

from collections import Counter

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from geocloud import geocode
from geocloud.catalog import get_catalog
from geocloud.db.pool import get_pool
from geocloud.geocode.match import LOCKS
from geocloud.geocode.service import CRS_CHOICES
from geocloud.serve import guard, openapi30
from geocloud.serve.http import HTTPError, bad_parameter
from geocloud.serve.ogcapi.provider import srid_and_flip
from geocloud.serve.ogcapi.pygeoapi_config import CRS84
from geocloud.serve.state import snapshot

MAX_UPLOAD = 64 * 2**20
MAX_METRES = 1e7  # beyond any TWD97 / TM2 coordinate; PROJ fails on infinite or huge ones


def _crs(value: str | None, name: str = "crs") -> str:
    uri = geocode.service.CRS_CHOICES.get(value or "CRS84")
    if uri is None:
        raise bad_parameter(name, f"unsupported CRS {value!r}; use CRS84, EPSG:4326 or EPSG:3826 (or their URIs)")
    return uri


def _options(request: Request) -> tuple[geocode.Options, str]:
    uri = _crs(request.query_params.get("crs"))
    srid, flip = srid_and_flip(uri, 3826)
    try:
        return geocode.service.options_from(request.query_params, srid, flip), uri
    except geocode.BadRequest as exc:
        name, _, problem = str(exc).partition(": ")
        raise bad_parameter(name, problem) from None


def _require_addresses() -> None:
    """Geocoding reads the address layer, so it is guarded like the layer."""
    if "addresses" not in snapshot().layers and "addresses" in get_catalog().layers:
        raise HTTPError(503, "ServiceUnavailable", "the 門牌 address layer is not loaded yet", {"Retry-After": "60"})
    guard.layer_for("addresses", "geocode")


async def geocode_address(request: Request):
    _require_addresses()
    options, uri = _options(request)
    text = request.query_params.get("address")
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "tgos"):
        raise bad_parameter("format", f"use json or tgos, got {fmt!r}")

    def run():
        with get_pool().connection() as conn:
            return geocode.geocode_one(conn, text, options, uri)
    try:
        result = await run_in_threadpool(run)
    except geocode.BadRequest as exc:
        name, _, problem = str(exc).partition(": ")
        raise bad_parameter(name, problem) from None
    return JSONResponse(geocode.as_tgos(result, uri) if fmt == "tgos" else result)


async def geocode_batch(request: Request):
    _require_addresses()
    options, _ = _options(request)
    column = request.query_params.get("column")
    if not column:
        raise bad_parameter("column", "name the CSV column holding the addresses, e.g. column=地址")
    body = await request.body()
    if len(body) > MAX_UPLOAD:
        raise HTTPError(413, "PayloadTooLarge", f"the CSV is larger than {MAX_UPLOAD // 2**20} MB; split it")
    try:
        header, rows = geocode.read_csv(body, column, "body")
    except geocode.BadRequest as exc:
        raise bad_parameter("body", str(exc).removeprefix("body: ")) from None
    counts: Counter = Counter()

    def lines():
        with get_pool().connection() as conn:
            yield from geocode.write_csv(header, geocode.geocode_rows(conn, rows, column, options), counts)
    return StreamingResponse(iterate_in_threadpool(lines()), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="geocoded.csv"'})


async def reverse_lookup(request: Request):
    q = request.query_params
    if q.get("lon") is not None or q.get("lat") is not None:
        names, uri = ("lon", "lat"), CRS84
    else:
        names, uri = ("x", "y"), _crs(q.get("crs"))
    values = []
    for name in names:
        try:
            values.append(float(q[name]))
        except KeyError:
            raise bad_parameter(name, "missing; give lon and lat, or x and y with crs") from None
        except ValueError:
            raise bad_parameter(name, f"must be a number, got {q[name]!r}") from None
    srid_in = 4326 if uri == CRS84 or uri.endswith("/4326") else 3826
    if srid_in == 4326 and not (-180 <= values[0] <= 180 and -90 <= values[1] <= 90):
        raise bad_parameter(names[0], "longitude/latitude out of range (x and y are east and north)")
    if srid_in == 3826 and not all(-MAX_METRES <= v <= MAX_METRES for v in values):  # also NaN
        raise bad_parameter(names[0], f"x and y must be finite EPSG:3826 metres within ±{MAX_METRES:.0f}, "
                                      f"got {values[0]}, {values[1]}")
    options, _ = _options(request)
    _require_addresses()
    live = set(snapshot().layers) & guard.visible_layers()

    def run():
        with get_pool().connection() as conn:
            return geocode.reverse(conn, values[0], values[1], srid_in, options, live)
    return JSONResponse(await run_in_threadpool(run))


routes = [
    Route("/geocode", geocode_address, methods=["GET"]),
    Route("/geocode/batch", geocode_batch, methods=["POST"]),
    Route("/reverse", reverse_lookup, methods=["GET"]),
]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
GEO_CRS = openapi30.query_parameter("crs", "the CRS of the coordinates answered (and of x/y in /reverse)",
                 {"type": "string", "enum": list(CRS_CHOICES)})
MATCHING = [
    GEO_CRS,
    openapi30.query_parameter("candidates", "how many candidates to answer", {"type": "integer", "minimum": 1, "maximum": 10}),
    openapi30.query_parameter("max_distance", "how many house numbers away a nearest-number match may be",
           {"type": "integer", "minimum": 0, "maximum": 500}),
    openapi30.query_parameter("same_parity", "a nearest-number match keeps the side of the street (odd/even)",
           {"type": "string", "enum": ["true", "false"]}),
    openapi30.query_parameter("fuzzy", "nearest (match the nearest house number) or none (exact matches only)",
           {"type": "string", "enum": ["nearest", "none"]}),
    openapi30.query_parameter("lock", f"comma-separated levels a match must agree on: {', '.join(LOCKS)}", {"type": "string"}),
]
RESULT = openapi30.ok("the match", openapi30.OBJECT, "application/json")
GEOCODING = {
    "/geocode": openapi30.get("geocode one address", "Geocoding", RESULT,
                     openapi30.query_parameter("address", "the address, e.g. 臺中市西屯區臺灣大道三段99號", {"type": "string"},
                            required=True),
                     openapi30.query_parameter("format", "json (the default) or tgos (TGOS's answer shape)",
                            {"type": "string", "enum": ["json", "tgos"]}), *MATCHING),
    "/geocode/batch": {"post": {
        "summary": "geocode a CSV of addresses (streamed back with the match columns appended)",
        "tags": ["Geocoding"],
        "parameters": [openapi30.query_parameter("column", "the CSV column holding the addresses, e.g. 地址", {"type": "string"}, required=True),
                       *MATCHING],
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
        "responses": {"200": openapi30.ok("the CSV with the match columns", {"type": "string"}, "text/csv"),
                      "413": openapi30.ref("responses", "PayloadTooLarge")}}},
    "/reverse": openapi30.get("the address (and what else is there) at a point", "Geocoding", RESULT,
                     openapi30.query_parameter("lon", "longitude (with lat)", {"type": "number", "minimum": -180, "maximum": 180}),
                     openapi30.query_parameter("lat", "latitude (with lon)", {"type": "number", "minimum": -90, "maximum": 90}),
                     openapi30.query_parameter("x", "easting in crs (with y)", {"type": "number"}),
                     openapi30.query_parameter("y", "northing in crs (with x)", {"type": "number"}), *MATCHING),
}

OPENAPI_PATHS = GEOCODING
