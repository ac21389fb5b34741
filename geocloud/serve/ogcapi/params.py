"""Validate the items query parameters before anything runs, with messages that name the parameter.

pygeoapi checks some of these too, but with terse messages ("Bad CQL text") and, for a few
inputs, a 500; checking here gives every client mistake a clear 400.
"""

import base64
import binascii
import math
from functools import lru_cache

from pygeoapi.util import modify_pygeofilter
from pyproj import CRS, Transformer

from geocloud.catalog import Layer
from geocloud.serve.http import bad_parameter
from geocloud.serve.ogcapi import cql
from geocloud.serve.ogcapi.provider import QueryExtras
from geocloud.serve.ogcapi.pygeoapi_config import (
    CRS84,
    EPSG_URI,
    MAX_LIMIT,
    MAX_OFFSET,
    OUTPUT_CRS,
)


def _crs(name: str, value: str | None) -> str | None:
    if value is not None and value not in OUTPUT_CRS:
        raise bad_parameter(name, f"unsupported CRS {value!r}; use one of {', '.join(OUTPUT_CRS)}")
    return value


def _int(name: str, value: str | None, low: int, high: int | None) -> None:
    if value is None:
        return
    try:
        number = int(value)
    except ValueError:
        raise bad_parameter(name, f"must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        raise bad_parameter(name, f"must be between {low} and {high}, got {number}" if high else
                            f"must be at least {low}, got {number}")


def _bbox(value: str | None, crs_uri: str) -> None:
    if value is None:
        return
    parts = value.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise bad_parameter("bbox", f"expected 4 (or 6) comma-separated numbers, got {value!r}") from None
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise bad_parameter("bbox", f"expected 4 (or 6) comma-separated finite numbers, got {value!r}")
    half = len(numbers) // 2
    lo, hi = numbers[:half], numbers[half:]
    if lo[1] > hi[1] or (lo[0] > hi[0] and not crs_uri.endswith("CRS84")):
        raise bad_parameter("bbox", f"the lower corner must come first (min before max), got {value!r}")
    crs = CRS.from_user_input(crs_uri)
    if crs.is_geographic:
        lat_first = crs_uri != CRS84 and crs.axis_info[0].direction.lower() == "north"
        lats = (lo[0], hi[0]) if lat_first else (lo[1], hi[1])
        lons = (lo[1], hi[1]) if lat_first else (lo[0], hi[0])
        if any(abs(v) > 90 for v in lats) or any(abs(v) > 180 for v in lons):
            raise bad_parameter("bbox", f"coordinates out of range for {crs_uri} "
                                        f"({'lat,lon' if lat_first else 'lon,lat'} order), got {value!r}")
        if lo[0] > hi[0] and crs_uri.endswith("CRS84"):
            raise bad_parameter("bbox", "boxes crossing the antimeridian are not supported")


@lru_cache(maxsize=32)
def _transformer(src_uri: str, dst_uri: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src_uri), CRS.from_user_input(dst_uri))


def bbox_in(layer: Layer, value: str, crs_uri: str) -> list[float]:
    """A checked bbox moved into the layer's storage CRS (edges densified, authority axis order)."""
    numbers = [float(v) for v in value.split(",")]
    half = len(numbers) // 2
    box = [numbers[0], numbers[1], numbers[half], numbers[half + 1]]
    target = EPSG_URI.format(layer.srid)
    if crs_uri == target:
        return box
    return list(_transformer(crs_uri, target).transform_bounds(*box, densify_pts=21))


def names(name: str, value: str | None, layer: Layer, signed: bool = False) -> None:
    if value is None:
        return
    known = {f.name for f in layer.fields}
    for item in value.split(","):
        prop = item.strip().lstrip("+-") if signed else item.strip()
        if prop not in known:
            raise bad_parameter(name, f"unknown property {prop!r}; use one of {', '.join(sorted(known))}")


def no_nul(params) -> None:
    """PostgreSQL text cannot hold NUL: a parameter carrying one is refused, by name."""
    for name, value in params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise bad_parameter(name.replace("\x00", "\\0"), "must not contain NUL (\\0) characters")


def choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise bad_parameter(name, f"use one of {', '.join(allowed)}, got {value!r}")


def _property_values(params, layer: Layer) -> None:
    """``?<field>=<value>`` selects features by equality (pygeoapi): the value must be of the
    field's type, within the column's range."""
    for f in layer.fields:
        for value in params.getlist(f.name):
            try:
                cql.parse_value(f.type, value)
            except ValueError as exc:
                raise bad_parameter(f.name, f"{exc} (the {f.name!r} property is {f.type})") from None


def items(params, layer: Layer) -> QueryExtras:
    """Check an items request; return the filter translated to SQL for the provider."""
    no_nul(params)
    _int("limit", params.get("limit"), 1, MAX_LIMIT)
    _int("offset", params.get("offset"), 0, MAX_OFFSET)
    _property_values(params, layer)
    skip = params.get("skipGeometry")
    choice("skipGeometry", skip.lower() if skip is not None else None, ("true", "false"))
    _crs("crs", params.get("crs"))
    bbox_crs = _crs("bbox-crs", params.get("bbox-crs"))
    if bbox_crs and params.get("bbox") is None:
        raise bad_parameter("bbox-crs", "given without bbox")
    _bbox(params.get("bbox"), bbox_crs or CRS84)
    names("properties", params.get("properties"), layer)
    names("sortby", params.get("sortby"), layer, signed=True)
    if params.get("q") is not None:
        raise bad_parameter("q", "free-text search is not supported; use filter (CQL2)")
    extras = QueryExtras()
    if params.get("bbox") is not None:
        extras.bbox = bbox_in(layer, params["bbox"], bbox_crs or CRS84)
    if (cursor := params.get("cursor")) is not None:
        extras.after = decode_cursor(cursor)
    text = params.get("filter")
    filter_crs = _crs("filter-crs", params.get("filter-crs")) or CRS84
    if text is None and (lang := params.get("filter-lang")) is not None:  # with a filter, cql.parse checks it
        choice("filter-lang", lang.lower(), ("cql2-text", "cql2-json"))
    if text is not None:
        try:
            node = cql.parse(text, params.get("filter-lang"))
            try:
                node = modify_pygeofilter(node, filter_crs_uri=filter_crs, storage_crs_uri=EPSG_URI.format(layer.srid))
            except (ValueError, TypeError) as exc:  # shapely and pyproj on a geometry they cannot move
                raise cql.FilterError(f"filter: a geometry cannot be moved from {filter_crs}: {exc}") from None
            extras.where, extras.params = cql.to_sql(node, layer)
        except cql.FilterError as exc:
            raise bad_parameter("filter", str(exc).removeprefix("filter: ").removeprefix("filter ")) from None
    return extras


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> str:
    """The key a ``cursor`` parameter (from a next link) carries."""
    try:
        key = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = ""
    if not key or "\x00" in key:
        raise bad_parameter("cursor", "not a cursor from a next link; follow the links as given")
    return key
