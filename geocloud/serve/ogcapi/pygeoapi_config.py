"""pygeoapi's configuration, derived from the layer catalog and what is live.

``pygeoapi-config.yml`` holds only the server-level settings; every resource is generated here from
``layers/*.yml`` (titles, descriptions and keywords in zh-TW and English, extents from the live
version, CRS lists, limits), so a layer is described once.
"""

import json
from copy import deepcopy
from functools import lru_cache
from pathlib import Path

import yaml
from pygeoapi.openapi import get_oas
from pygeoapi.util import to_json

from geocloud.catalog import Catalog, Layer, get_catalog
from geocloud.config import get_settings
from geocloud.serve.ogcapi.cql import INTEGER_RANGES
from geocloud.serve.ogcapi.links import collection_links, raster_links
from geocloud.serve.state import Snapshot

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{}"
OUTPUT_CRS = [CRS84, EPSG_URI.format(4326), EPSG_URI.format(3826), EPSG_URI.format(3857)]
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 100_000_000  # beyond any layer's feature count; keeps OFFSET within PostgreSQL's bigint
PROVIDER = "geocloud.serve.ogcapi.provider.GeocloudProvider"
TAICHUNG_CRS84 = [120.45, 23.99, 121.46, 24.45]
TEMPLATES = Path(__file__).parent / "templates"  # geocloud's fixes of pygeoapi templates; the rest are pygeoapi's


@lru_cache
def server_settings() -> dict:
    path = get_settings().project_dir / "pygeoapi-config.yml"
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _i18n(text) -> dict:
    return {"zh-TW": text.zh_TW, "en": text.en}


def _described(layer: Layer, snap: Snapshot, links: list[dict]) -> dict:
    """What every collection has: titles, description and keywords in both languages, the license
    and ``links``, and the live extent."""
    live = snap.layers.get(layer.id)
    return {
        "type": "collection",
        "title": _i18n(layer.title),
        "description": _i18n(layer.description),
        "keywords": {"zh-TW": layer.keywords, "en": layer.keywords},
        "links": [{"type": "text/html", "rel": "license", "title": layer.license, "href": layer.license_url}, *links],
        "extents": {"spatial": {"bbox": list(live.extent) if live and live.extent else TAICHUNG_CRS84, "crs": CRS84}},
    }


def resource(layer: Layer, snap: Snapshot, base_url: str) -> dict:
    """A vector layer as a pygeoapi collection; its links (tilesets, styles, downloads, metadata,
    sortables) as absolute URLs under ``base_url``, the URL the caller reached."""
    return {
        **_described(layer, snap, collection_links(layer, base_url)),
        "limits": {"default_items": DEFAULT_LIMIT, "max_items": MAX_LIMIT, "on_exceed": "error"},
        "providers": [{
            "type": "feature",
            "name": PROVIDER,
            "data": layer.id,
            "id_field": layer.key,
            "time_field": layer.time_field,
            "storage_crs": EPSG_URI.format(layer.srid),
            "crs": OUTPUT_CRS,
        }],
    }


RASTER = "geocloud-raster"  # a provider type pygeoapi does not know: it describes the collection, loads nothing


def raster_resource(layer: Layer, snap: Snapshot, base_url: str) -> dict:
    """A raster layer as a collection: pygeoapi lists and describes it (extent, HTML and JSON-LD
    pages); its links (links.py) lead to what geocloud serves for it."""
    return {**_described(layer, snap, raster_links(layer, base_url)),
            "providers": [{"type": RASTER, "name": RASTER, "data": layer.id}]}


def with_data_types(headers: dict, status: int, content):
    """pygeoapi's collection document(s) with ``layerDataType: Coverage`` on the raster layers:
    GDAL's OAPIF driver (and so QGIS through GDAL) then leaves them out of the feature layers it
    lists, and its OGCAPI driver lists them as rasters. Other documents pass unchanged."""
    if status != 200 or not isinstance(content, str) or not headers.get("Content-Type", "").endswith("json"):
        return headers, status, content
    data = json.loads(content)
    rasters = {layer.id for layer in get_catalog().layers.values() if layer.kind == "raster"}
    marked = [c for c in data.get("collections", [data]) if c.get("id") in rasters]
    if not marked:
        return headers, status, content
    for collection in marked:
        collection["layerDataType"] = "Coverage"
    return headers, status, to_json(data, server_settings()["server"].get("pretty_print", False))


def build(catalog: Catalog, snap: Snapshot, base_url: str, visible: frozenset[str]) -> dict:
    """The configuration for one caller's view: only the live layers they may read (rasters after
    the vector layers)."""
    config = deepcopy(server_settings())
    config["server"]["url"] = base_url
    config["server"]["templates"] = {"path": str(TEMPLATES)}
    config["server"].pop("limit", None)
    config["server"]["limits"] = {"default_items": DEFAULT_LIMIT, "max_items": MAX_LIMIT, "on_exceed": "error"}
    config["resources"] = {layer.id: resource(layer, snap, base_url) for layer in catalog.vector_layers()
                           if layer.id in snap.layers and layer.id in visible}
    config["resources"].update({layer.id: raster_resource(layer, snap, base_url)
                                for layer in catalog.layers.values()
                                if layer.kind == "raster" and layer.id in snap.layers and layer.id in visible})
    return config


def openapi(config: dict, paths: dict) -> dict:
    """pygeoapi's OpenAPI document of the features, with ``paths`` (geocloud's other surfaces: the
    ``OPENAPI_PATHS`` of the app's modules), made to say what this server does (a fuzzer holds
    it to that)."""
    return _as_served(get_oas(config, fail_on_invalid_collection=False), paths, sorted(config["resources"]))


# -- the OpenAPI document as served -----------------------------------------------------------------
# pygeoapi's document refers to the OGC's remote YAML files (a client offline, or a city network
# without Internet access, cannot resolve them), lists routes geocloud does not serve (processes,
# jobs), leaves out the parameters geocloud handles itself (filter, cursor) and answers every
# route can give (401 for a bad credential, 429, 503), and knows nothing of geocloud's other
# surfaces. It is rewritten here into a self-contained document of what is served, merged with
# the path items the app's modules declare (OPENAPI_PATHS; tests/test_api.py holds the document
# to the app's routes, both ways).

_JSON_OBJECT = {"type": "object"}
_ERROR = {"type": "object", "required": ["code", "description"],
          "properties": {"code": {"type": "string"}, "description": {"type": "string"}}}
_LINKS = {"type": "array", "items": {"$ref": "#/components/schemas/link"}}


def _content(schema: dict, *media: str) -> dict:
    """``schema`` for the JSON media types; a JSON-LD rendering is another object, HTML a text."""
    return {m: {"schema": schema if m in ("application/json", "application/geo+json") else
                _JSON_OBJECT if "json" in m else {"type": "string"}} for m in media}


def _response(description: str, schema: dict, *media: str) -> dict:
    return {"description": description, "content": _content(schema, *media)}


_PAGES = ("application/json", "text/html", "application/ld+json")  # pages and errors alike
FORMATS = ("json", "html", "jsonld", "")  # f= (empty) is the default, as in pygeoapi
_COMPONENTS = {
    "schemas": {
        "exception": _ERROR,
        "link": {"type": "object", "required": ["href"], "properties": {
            "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
            "title": {"type": "string"}}},
    },
    "responses": {
        "LandingPage": _response("the landing page, conformance or collections document",
                                 {"type": "object", "properties": {"links": _LINKS}}, *_PAGES),
        "Collection": _response("a collection", {"type": "object", "required": ["id", "links"], "properties": {
            "id": {"type": "string"}, "links": _LINKS}}, *_PAGES),
        "Features": _response("a page of features", {"type": "object", "required": ["type", "features"], "properties": {
            "type": {"const": "FeatureCollection"}, "features": {"type": "array", "items": _JSON_OBJECT},
            "numberMatched": {"type": "integer", "minimum": 0}, "numberReturned": {"type": "integer", "minimum": 0},
            "links": _LINKS}}, "application/json", "application/geo+json", "text/html", "application/ld+json"),
        "Feature": _response("one feature", {"type": "object", "required": ["type", "geometry", "properties"],
                                             "properties": {"type": {"const": "Feature"}}},
                             "application/json", "application/geo+json", "text/html", "application/ld+json"),
        "Queryables": _response("the queryable properties", {"type": "object", "properties": {
            "properties": _JSON_OBJECT}}, "application/schema+json", "text/html"),
        "OpenAPI": _response("this document", _JSON_OBJECT, "application/vnd.oai.openapi+json;version=3.0",
                             "text/html"),
        # text/plain: a request the HTTP server itself cannot parse (uvicorn's "Invalid HTTP request")
        "InvalidParameter": _response("a parameter is not valid; the description names it",
                                      {"$ref": "#/components/schemas/exception"}, *_PAGES, "text/plain"),
        "Unauthorized": {**_response("the credential is not valid, or (anonymous callers) the collection is "
                                     "not public or does not exist (a browser's page: the portal's)",
                                     {"$ref": "#/components/schemas/exception"}, "application/json", "text/html"),
                         "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
        "NotFound": _response("no such collection or feature", {"$ref": "#/components/schemas/exception"}, *_PAGES),
        "TooManyRequests": _response("the caller's request rate limit is exceeded; see Retry-After",
                                     {"$ref": "#/components/schemas/exception"}, "application/json"),
        "ServerError": _response("an error on the server (logged)", {"$ref": "#/components/schemas/exception"},
                                 *_PAGES),
        "ServiceUnavailable": _response("the database is unavailable; see Retry-After",
                                        {"$ref": "#/components/schemas/exception"}, "application/json"),
        "Options": {"description": "the methods allowed (read-only collections)",
                    "headers": {"Allow": {"schema": {"type": "string"}}}},
        "NotModified": {"description": "the caller's copy (If-None-Match) is current"},
        "Forbidden": _response("the credential may not do this; the description says why",
                               {"$ref": "#/components/schemas/exception"}, "application/json"),
        "PayloadTooLarge": _response("the request body is too large; the description gives the limit",
                                     {"$ref": "#/components/schemas/exception"}, "application/json"),
    },
    "securitySchemes": {  # anonymous callers read the public layers; a credential reads more
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer", "description": "an API key, a JWT or a token"},
        "basic": {"type": "http", "scheme": "basic", "description": "the API key as the password"},
        "token": {"type": "apiKey", "in": "query", "name": "token", "description": "a token from /auth/token"},
    },
    "parameters": {
        "filter": {"name": "filter", "in": "query", "required": False, "schema": {"type": "string"},
                   "description": "a CQL2 filter (text, or JSON with filter-lang=cql2-json) on the queryables"},
        "filter-lang": {"name": "filter-lang", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["cql2-text", "cql2-json"]},
                        "description": "the language of filter (cql2-text by default)"},
        "filter-crs": {"name": "filter-crs", "in": "query", "required": False,
                       "schema": {"type": "string", "enum": OUTPUT_CRS},
                       "description": "the CRS of the geometries in filter (CRS84 by default)"},
        "cursor": {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                   "description": "the position in the collection, as the next link gives it (follow the links)"},
        "featureId": {"name": "featureId", "in": "path", "required": True, "description": "the feature's id",
                      "schema": {"type": "string"}},
        "sortby": {"name": "sortby", "in": "query", "required": False, "style": "form", "explode": False,
                   "description": "comma-separated property names, each optionally prefixed by + or -",
                   "schema": {"type": "string"}},
    },
}
_EXTERNAL = {  # pygeoapi's remote references -> the local components above
    "ogcapi-records/master/core/openapi/parameters/sortby.yaml": "#/components/parameters/sortby",
    "processes/part1/1.0/openapi/schemas/exception.yaml": "#/components/schemas/exception",
    "processes/part1/1.0/openapi/responses/NotFound.yaml": "#/components/responses/NotFound",
    "ogcapi-tiles-1.yaml#/components/schemas/link": "#/components/schemas/link",
}
_EVERY = {"401": "Unauthorized", "429": "TooManyRequests", "500": "ServerError", "503": "ServiceUnavailable"}
_UNSERVED = ("/jobs", "/processes")  # pygeoapi's processes routes: not routed here
_ITEMS_PARAMETERS = ("filter", "filter-lang", "filter-crs", "cursor")  # geocloud's own (params.py)


def _local(ref: str) -> str:
    for tail, local in _EXTERNAL.items():
        if ref.endswith(tail):
            return local
    if ref.startswith("http") and "#/components/" in ref:
        return "#/components/" + ref.split("#/components/", 1)[1]
    return ref


def _localised(node):
    if isinstance(node, dict):
        return {k: _local(v) if k == "$ref" and isinstance(v, str) else _localised(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_localised(v) for v in node]
    return node


def _bounded(parameter: dict, fields: dict) -> dict:
    """A property's query parameter with the range its column holds (a bigger number is refused)."""
    ftype = fields.get(parameter.get("name"))
    if ftype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[ftype]
        parameter = {**parameter, "schema": {**parameter["schema"], "minimum": low, "maximum": high}}
    return parameter


def merged(paths: dict, more: dict) -> dict:
    if clash := paths.keys() & more.keys():
        raise ValueError(f"OpenAPI paths described twice: {', '.join(sorted(clash))}")
    return {**paths, **more}


def _as_served(doc: dict, more_paths: dict, collections: list[str]) -> dict:
    fields = {f.name: f.type for layer in get_catalog().vector_layers() for f in layer.fields}
    doc = _localised(doc)
    components = doc.setdefault("components", {})
    for kind, items in deepcopy(_COMPONENTS).items():
        components.setdefault(kind, {}).update(items)
    params = components["parameters"]
    params["collectionId"] = {"name": "collectionId", "in": "path", "required": True,
                              "description": "a vector collection the caller may read (see /collections)",
                              "schema": {"type": "string", "enum": collections or ["none"]}}
    params["lang"] = {**params["lang"], "schema": {"type": "string"}, "description":
                      "zh-TW (the default) or en; any other language is answered in English (zh-* in zh-TW)"}
    params["f"] = {**params["f"], "schema": {**params["f"]["schema"], "enum": list(FORMATS)}}
    params["offset"] = {**params["offset"], "schema": {**params["offset"]["schema"], "maximum": MAX_OFFSET}}
    components["responses"].pop("default", None)
    paths = {}
    for path, item in merged(doc["paths"], deepcopy(more_paths)).items():
        if any(path.startswith(part) for part in _UNSERVED):
            continue
        for method, op in item.items():
            if path.endswith("/items") and method == "get":
                op["parameters"] += [{"$ref": f"#/components/parameters/{name}"} for name in _ITEMS_PARAMETERS]
            responses = op.setdefault("responses", {})
            responses.pop("default", None)
            if method == "options":
                op["responses"] = {"204": {"$ref": "#/components/responses/Options"}}
                responses = op["responses"]
            elif path == "/openapi":
                responses["200"] = {"$ref": "#/components/responses/OpenAPI"}
            responses.setdefault("400", {"$ref": "#/components/responses/InvalidParameter"})
            if path.startswith("/collections/"):
                responses.setdefault("404", {"$ref": "#/components/responses/NotFound"})
            for status, name in _EVERY.items():  # unless the route says otherwise (a portal page's 401 is a page)
                responses.setdefault(status, {"$ref": f"#/components/responses/{name}"})
            op["parameters"] = [_bounded(p, fields) if "name" in p else p for p in op.get("parameters", [])]
        paths[path] = item
    doc["paths"] = paths
    used = {tag for item in paths.values() for op in item.values() for tag in op.get("tags", [])}
    doc["tags"] = [t for t in doc.get("tags", []) if t["name"] in used] + [
        {"name": t} for t in sorted(used - {t["name"] for t in doc.get("tags", [])})]
    doc["security"] = [{}, *({name: []} for name in _COMPONENTS["securitySchemes"])]
    return doc
