"""OGC API Features: pygeoapi's own handlers, driven by a configuration derived from the catalog.

geocloud keeps the parts pygeoapi leaves to the application: the URL the client reached, request
validation with precise messages, CQL2 (text and JSON) parsed once and handed to the provider as
SQL, next links only where a next page exists, ETag/Last-Modified from the live version, and the
exact conformance list.
"""

import asyncio
import json
import urllib.parse
from collections import OrderedDict
from pathlib import Path
from threading import Lock

import pygeoapi
from pygeoapi import api as core_api
from pygeoapi import l10n
from pygeoapi.api import API, F_JSON, APIRequest
from pygeoapi.api import itemtypes as items_api
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from geocloud.catalog import get_catalog
from geocloud.serve import guard, openapi30
from geocloud.serve.http import (
    HTTPError,
    bad_parameter,
    base_url,
    not_found,
    not_modified,
    validators,
)
from geocloud.serve.ogcapi import params, pygeoapi_config
from geocloud.serve.ogcapi.provider import JSON_TYPES, extras
from geocloud.serve.state import snapshot

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
]
# Parameters geocloud handles itself (parsed once, CRS work cached) and hides from pygeoapi; they
# are put back on the links pygeoapi builds.
PASSED_ON = ("filter", "filter-lang", "filter-crs", "bbox", "bbox-crs")
ROUTE_PARAMS = (*PASSED_ON, "cursor")

ZH_TW, ENGLISH = "zh-TW", "en-US"


class _NoConfigCache(dict):
    """pygeoapi caches the translated configuration of its HTML pages by locale alone, for every
    API object at once: the first caller's view (say, anonymous: no restricted layers) would be
    reused for everyone, and a restricted collection's page fails for an authorised key. Each
    page translates the configuration it renders instead (a small dict, once per HTML page)."""

    def get(self, key, default=None):
        return default

    def __setitem__(self, key, value):
        pass


l10n._cfg_cache = _NoConfigCache()

_apis: "OrderedDict[tuple, API]" = OrderedDict()
_apis_lock = Lock()


def api_for(request: Request) -> API:
    """pygeoapi's API for this base URL and the current live versions (a few kept per process)."""
    snap, base, visible = snapshot(), base_url(request), guard.visible_layers()
    key = (base, snap.token, snap.catalog_version, visible)
    with _apis_lock:
        api = _apis.get(key)
        if api is not None:
            _apis.move_to_end(key)
            return api
    config = pygeoapi_config.build(get_catalog(), snap, base, visible)
    api = API(config, pygeoapi_config.openapi(config, request.app.state.openapi_paths))
    with _apis_lock:
        _apis[key] = api
        while len(_apis) > 16:
            _apis.popitem(last=False)
    return api


def _run_in_thread(loop, fn, *args):
    asyncio.set_event_loop(loop)  # some pygeoapi handlers expect an event loop in their thread
    return fn(*args)


def _served_language(tag: str) -> str | None:
    """The served language for one requested language tag: Chinese of any region or script is
    given zh-TW, English is English, ``*`` is the server's default (zh-TW); others: None."""
    tag = tag.strip().lower()
    if tag == "*" or tag == "zh" or tag.startswith(("zh-", "zh_")):
        return ZH_TW
    if tag == "en" or tag.startswith(("en-", "en_")):
        return ENGLISH
    return None


def accepted_language(header: str) -> str:
    """The language to answer an ``Accept-Language`` header in: the most preferred of zh-TW and
    English it names (by q value), else English (a caller asking for, say, Japanese reads English
    more likely than Chinese). pygeoapi's own matching fails (500) on any other language."""
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _, q = part.partition(";")
        try:
            weight = float(q.strip().removeprefix("q=")) if q.strip() else 1.0
        except ValueError:
            weight = 0.0
        if weight > 0 and (served := _served_language(tag)) is not None:
            ranked.append((-weight, i, served))
    return min(ranked)[2] if ranked else ENGLISH


def requested_language(request: Request) -> str:
    """The language to answer in, as pygeoapi picks it for the collections: ``lang`` first, then
    ``Accept-Language``, else the server's default (zh-TW). For the routes pygeoapi does not answer
    (tiles, sortables), so they follow the same request as the collection's titles."""
    lang = request.query_params.get("lang")
    if lang is not None:
        return _served_language(lang) or ENGLISH
    header = request.headers.get("accept-language")
    return accepted_language(header) if header else ZH_TW


def _language_scope(scope: dict, query_string: str | None) -> dict:
    """The request as pygeoapi should see it: ``lang`` and ``Accept-Language`` reduced to one of
    the served languages (zh-TW or English)."""
    query = query_string if query_string is not None else scope.get("query_string", b"").decode("latin-1")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, encoding="latin-1")
    if any(k == "lang" for k, _ in pairs):
        query = urllib.parse.urlencode([(k, (_served_language(v) or ENGLISH) if k == "lang" else v)
                                        for k, v in pairs], encoding="latin-1")
    headers = [(k, accepted_language(v.decode("latin-1")).encode() if k == b"accept-language" else v)
               for k, v in scope["headers"]]
    return dict(scope, query_string=query.encode("latin-1"), headers=headers)


async def call(request: Request, fn, *args, query_string: str | None = None) -> tuple[dict, int, object]:
    params.choice("f", request.query_params.get("f"), pygeoapi_config.FORMATS)
    api = api_for(request)
    request = Request(_language_scope(request.scope, query_string), request.receive)
    api_request = await APIRequest.from_starlette(request, api.locales)
    if not api_request.is_valid():
        return api.get_format_exception(api_request)
    return await asyncio.to_thread(_run_in_thread, asyncio.get_running_loop(), fn, api, api_request, *args)


def to_response(headers: dict, status: int, content, extra: dict | None = None) -> Response:
    headers = {**(headers or {}), **(extra or {})}
    media = headers.get("Content-Type", "application/json")
    if media == "text/html":
        return HTMLResponse(content, status_code=status, headers=headers)
    if isinstance(content, dict):
        return JSONResponse(content, status_code=status, headers=headers)
    return Response(content, status_code=status, headers=headers, media_type=media)


def live_layer(collection_id: str, surface: str = "features", kind: str | None = "vector"):
    """A vector layer (or, kind None, any layer) the caller may read, with its live version (401/404 otherwise)."""
    try:
        layer = guard.layer_for(collection_id, surface, kind=kind)
    except HTTPError as exc:
        if exc.status == 400:  # a raster layer has no feature collection
            raise not_found(f"collection {collection_id!r} not found") from None
        raise
    return layer, snapshot().layers[collection_id]


def layer_validators(request: Request, layer, live) -> dict:
    return validators(request, f"{layer.id}:{live.version}", live.published_at, guard.cache_control([layer.id]))


def _catalog_validators(request: Request) -> dict:
    snap, visible = snapshot(), guard.visible_layers()
    newest = max((layer.published_at for layer in snap.layers.values()), default=None)
    return validators(request, f"catalog:{snap.token}.{snap.catalog_version}:{','.join(sorted(visible))}", newest,
                      guard.cache_control(visible))


async def openapi(request: Request) -> Response:
    params.choice("ui", request.query_params.get("ui"), ("swagger", "redoc"))
    return to_response(*await call(request, core_api.openapi_))


async def conformance(request: Request) -> Response:
    declared = request.app.state.conformance  # these and the other surfaces' (serve/app.py)
    body = {"conformsTo": declared}
    params.choice("f", request.query_params.get("f"), pygeoapi_config.FORMATS)
    if request.query_params.get("f") == "html" or (
            "text/html" in request.headers.get("accept", "") and request.query_params.get("f") != "json"):
        items = "".join(f"<li>{c}</li>" for c in declared)
        return HTMLResponse(f"<!doctype html><title>Conformance</title><h1>Conformance</h1><ul>{items}</ul>")
    return JSONResponse(body)


async def collections(request: Request) -> Response:
    hdrs = _catalog_validators(request)
    return not_modified(request, hdrs) or to_response(
        *pygeoapi_config.with_data_types(*await call(request, core_api.describe_collections)), hdrs)


async def collection(request: Request) -> Response:
    cid = request.path_params["collection_id"]
    layer, live = live_layer(cid, kind=None)  # raster layers are collections too (pygeoapi_config.raster_resource)
    hdrs = layer_validators(request, layer, live)
    return not_modified(request, hdrs) or to_response(
        *pygeoapi_config.with_data_types(*await call(request, core_api.describe_collections, cid)), hdrs)


async def queryables(request: Request) -> Response:
    """pygeoapi's queryables, with each field's zh-TW and English titles from the catalog."""
    cid = request.path_params["collection_id"]
    layer, _ = live_layer(cid)
    params.choice("profile", request.query_params.get("profile"), ("actual-domain", "valid-domain"))
    params.names("properties", request.query_params.get("properties"), layer)
    headers, status, content = await call(request, items_api.get_collection_queryables, cid)
    content = _titled(layer, headers, status, content)
    return to_response(headers, status, content)


def _sortable(field, lang: str) -> dict:
    jtype, fmt = JSON_TYPES[field.type]
    return {"title": field.title.get(lang), "type": jtype, **({"format": fmt} if fmt else {}),
            "x-title-zh-TW": field.title.zh_TW, "x-title-en": field.title.en}


async def sortables(request: Request) -> Response:
    """The properties ``sortby`` accepts (every field of the layer; see params.items), as a JSON
    schema shaped like the queryables, with each field's zh-TW and English titles."""
    cid = request.path_params["collection_id"]
    layer, live = live_layer(cid)
    params.choice("f", request.query_params.get("f"), ("json",))
    hdrs = layer_validators(request, layer, live)
    if (cached := not_modified(request, hdrs)) is not None:
        return cached
    lang = requested_language(request)
    body = {"$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{base_url(request)}/collections/{layer.id}/sortables",
            "type": "object", "title": layer.title.get(lang),
            "properties": {f.name: _sortable(f, lang) for f in layer.fields},
            "additionalProperties": False}
    return JSONResponse(body, media_type="application/schema+json",
                        headers={**hdrs, "Content-Language": lang, "Vary": "Accept-Language"})


def _with_filter(href: str, filter_params: list[tuple[str, str]]) -> str:
    if not filter_params:
        return href
    return href + "&" + urllib.parse.urlencode(filter_params, quote_via=urllib.parse.quote)


async def items(request: Request) -> Response:
    cid = request.path_params["collection_id"]
    layer, live = live_layer(cid, "items")
    query = params.items(request.query_params, layer)
    hdrs = layer_validators(request, layer, live)
    if (cached := not_modified(request, hdrs)) is not None:
        return cached
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ROUTE_PARAMS]
    filter_params = [(k, v) for k, v in request.query_params.multi_items() if k in PASSED_ON]
    token = extras.set(query)
    try:
        headers, status, content = await call(request, _items_page, cid, query_string=urllib.parse.urlencode(kept))
    finally:
        extras.reset(token)
    if status == 200 and isinstance(content, str) and headers.get("Content-Type", "").endswith("json"):
        content = _fix_links(content, query, request, filter_params)
        if query.features is not None:
            content = with_features(content, query.features)
        if headers["Content-Type"] == "application/json":  # a page of features is GeoJSON, as its links say
            headers["Content-Type"] = "application/geo+json"
    return to_response(headers, status, content, hdrs if status == 200 else None)


def _items_page(api: API, api_request: APIRequest, cid: str):
    """pygeoapi's items handler. A GeoJSON page (the handler then writes the document with its
    ``to_json``) leaves the provider's features as PostGIS wrote them, for ``with_features``; the
    other formats render decoded features."""
    extras.get().raw = api_request.format in (None, F_JSON) and not api.pretty_print
    return items_api.get_collection_items(api, api_request, cid)


PAGE_HEAD = '{"type":"FeatureCollection","features":['


def with_features(content: str, features: list[str]) -> str:
    """pygeoapi's compact GeoJSON page with the provider's placeholders (one ``null`` a feature)
    replaced by the features' GeoJSON text. A document that does not begin as expected (a pygeoapi
    that writes it otherwise) is an error, never a page with the placeholders left in."""
    placeholders = PAGE_HEAD + ",".join(["null"] * len(features)) + "]"
    if not content.startswith(placeholders):
        raise RuntimeError(f"pygeoapi's items page does not begin {placeholders[:60]!r}: {content[:60]!r}")
    return PAGE_HEAD + ",".join(features) + content[len(placeholders) - 1:]


def _fix_links(content: str, query, request: Request, filter_params: list) -> str:
    """Links as geocloud wants them: next only where a next page exists, with the keyset cursor,
    and the parameters pygeoapi did not see. Only the tail of the document (after the features)
    is parsed: a 1,000-feature page is not decoded and encoded a second time."""
    at = content.rfind('"links":')
    if at < 0:
        return content
    tail = json.loads("{" + content[at:])
    links = []
    for link in tail.get("links", []):
        if link.get("rel") == "next" and not query.has_more:
            continue
        if "/items" in link.get("href", ""):
            extra = list(filter_params)
            if link.get("rel") == "next" and query.last_key is not None:
                extra.append(("cursor", params.encode_cursor(query.last_key)))
            elif link.get("rel") in ("self", "alternate") and "cursor" in request.query_params:
                extra.append(("cursor", request.query_params["cursor"]))
            link["href"] = _with_filter(link["href"], extra)
        links.append(link)
    tail["links"] = links
    if query.estimated:
        tail["numberMatchedIsEstimate"] = True
    return content[:at] + json.dumps(tail, ensure_ascii=False)[1:]


async def item(request: Request) -> Response:
    cid, iid = request.path_params["collection_id"], request.path_params["item_id"]
    layer, live = live_layer(cid, "item")
    if "\x00" in iid:
        raise bad_parameter("featureId", "must not contain NUL (\\0) characters")
    params.no_nul(request.query_params)
    params._crs("crs", request.query_params.get("crs"))
    hdrs = layer_validators(request, layer, live)
    return not_modified(request, hdrs) or to_response(
        *await call(request, items_api.get_collection_item, cid, iid), hdrs)


def _titled(layer, headers: dict, status: int, content):
    """A JSON schema of a layer's properties (queryables, schema) with each field's zh-TW and
    English titles from the catalog, ``title`` in the language answered."""
    if status == 200 and isinstance(content, str) and headers.get("Content-Type", "").endswith("json"):
        data = json.loads(content)
        english = headers.get("Content-Language", "").startswith("en")
        for f in layer.fields:
            prop = data.get("properties", {}).get(f.name)
            if prop is not None:
                prop.update({"title": f.title.en if english else f.title.zh_TW,
                             "x-title-zh-TW": f.title.zh_TW, "x-title-en": f.title.en})
        content = json.dumps(data, ensure_ascii=False)
    return content


async def schema(request: Request) -> Response:
    """pygeoapi's collection schema (OGC API - Features Part 5), titled like the queryables."""
    cid = request.path_params["collection_id"]
    layer, live = live_layer(cid)
    hdrs = layer_validators(request, layer, live)
    if (cached := not_modified(request, hdrs)) is not None:
        return cached
    headers, status, content = await call(request, core_api.get_collection_schema, cid)
    return to_response(headers, status, _titled(layer, headers, status, content), hdrs if status == 200 else None)


async def options(request: Request) -> Response:
    """Read-only collections: QGIS reads editing rights from the Allow header."""
    live_layer(request.path_params["collection_id"])
    return Response(status_code=204, headers={"Allow": "GET, HEAD, OPTIONS"})


routes = [
    Route("/openapi", openapi, methods=["GET"]),
    Route("/conformance", conformance, methods=["GET"]),
    Route("/collections", collections, methods=["GET"]),
    Route("/collections/{collection_id}", collection, methods=["GET"]),
    Route("/collections/{collection_id}/queryables", queryables, methods=["GET"]),
    Route("/collections/{collection_id}/sortables", sortables, methods=["GET"]),
    Route("/collections/{collection_id}/items", items, methods=["GET"]),
    Route("/collections/{collection_id}/items", options, methods=["OPTIONS"]),
    Route("/collections/{collection_id}/items/{item_id}", item, methods=["GET"]),
    Route("/collections/{collection_id}/items/{item_id}", options, methods=["OPTIONS"]),
    Route("/collections/{collection_id}/schema", schema, methods=["GET"]),
    # pygeoapi's HTML pages load their stylesheet and images from /static, as pygeoapi's own app serves them
    Mount("/static", app=StaticFiles(directory=Path(pygeoapi.__file__).parent / "static"), name="static"),
]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
FEATURES = {
    "/collections/{collectionId}/sortables": openapi30.get(
        "the properties items can be sorted by (sortby), with zh-TW and English titles", "Features",
        openapi30.ok("the sortable properties as a JSON schema", {"type": "object", "properties": {"properties": openapi30.OBJECT}},
            "application/schema+json", "application/json", "text/html"),
        openapi30.COLLECTION, openapi30.ref("parameters", "f"), openapi30.LANG, more=openapi30.NOT_FOUND),
}

STATIC = {"/static/{path}": openapi30.get("pygeoapi's stylesheet and images", "Viewer", openapi30.FILE, openapi30.FILE_PATH, more=openapi30.NOT_FOUND)}

OPENAPI_PATHS = {**FEATURES, **STATIC}
