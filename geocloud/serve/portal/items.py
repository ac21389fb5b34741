"""The pages of a layer's features (``/collections/{id}/items`` and ``.../items/{fid}`` when a
browser asks): a table with the catalog's field titles, previous/next links and a map of the page's
features; one feature's attributes and a small map; the properties one may query (``queryables``)
or a feature has (``schema``) with their titles and types. They replace pygeoapi's pages, which
load Leaflet and Bootstrap from CDNs.

There is one implementation of each answer: each page asks the OGC API's own handler, in-process, for
its GeoJSON answer with the same query parameters (limit, offset, bbox, filter, properties, sortby,
cursor...), so what a page lists is what an API client gets, with the same checks and errors.
"""

import json
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from geocloud.serve.http import HTTPError, base_url
from geocloud.serve.ogcapi import features
from geocloud.serve.portal.i18n import page_language
from geocloud.serve.portal.render import portal_page, render

PORTAL_PARAMS = ("f", "lang")  # the page's own: the format asked and the language switch
CONDITIONAL = (b"if-none-match", b"if-modified-since")  # the page is not the document: never a 304 for it


async def _answer(request: Request, handler) -> dict:
    """The OGC API handler's JSON answer to this request's query (an HTTPError as the API raises it)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in PORTAL_PARAMS] + [("f", "json")]
    headers = [(k, v) for k, v in request.scope["headers"] if k not in CONDITIONAL and k != b"accept"]
    scope = dict(request.scope, query_string=urllib.parse.urlencode(kept).encode("latin-1"),
                 headers=[*headers, (b"accept", b"application/geo+json")])
    response = await handler(Request(scope, request.receive))
    body = json.loads(response.body)
    if response.status_code != 200:
        raise HTTPError(response.status_code, body.get("code", "Error"), body.get("description", ""),
                        {k: v for k, v in response.headers.items() if k.lower() == "www-authenticate"})
    return body


def _page_link(document: dict, rel: str, base: str, collection: str) -> str | None:
    """The API's ``rel`` link (next, prev) as a link to the page: same query, ``f=html``."""
    for link in document.get("links", []):
        if link.get("rel") == rel and "/items" in link.get("href", ""):
            query = [(k, v) for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(link["href"]).query)
                     if k != "f"]
            return f"{base}/collections/{collection}/items?" + urllib.parse.urlencode(query + [("f", "html")])
    return None


def _columns(layer, document: dict, lang: str) -> list[tuple[str, str]]:
    """(property, title) of the columns: the catalog's fields the page's features carry, in its order."""
    present = {name for f in document.get("features", []) for name in (f.get("properties") or {})}
    return [(f.name, f.title.get(lang)) for f in layer.fields if f.name in present]


def _map(document: dict, layer, lang: str) -> str:
    """What the map script needs, as one JSON attribute (the page's policy runs no inline script)."""
    return json.dumps({"id": layer.id, "lang": lang, "data": {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f.get("id"), "geometry": f.get("geometry"), "properties": {}}
        for f in document.get("features", [])]}}, ensure_ascii=False)


@portal_page
async def items_page(request: Request) -> Response:
    cid = request.path_params["collection_id"]
    layer, _ = features.live_layer(cid, "items")
    document = await _answer(request, features.items)
    lang, base = page_language(request), base_url(request)
    rows = document.get("features", [])
    return render(request, "items.html", layer=layer, features=rows, columns=_columns(layer, document, lang),
                  matched=document.get("numberMatched"), offset=int(request.query_params.get("offset") or 0),
                  next_href=_page_link(document, "next", base, cid), prev_href=_page_link(document, "prev", base, cid),
                  preview=_map(document, layer, lang))


@portal_page
async def item_page(request: Request) -> Response:
    cid = request.path_params["collection_id"]
    layer, _ = features.live_layer(cid, "item")
    feature = await _answer(request, features.item)
    lang = page_language(request)
    document = {"features": [feature]}
    return render(request, "item.html", layer=layer, feature=feature, columns=_columns(layer, document, lang),
                  preview=_map(document, layer, lang))


def _type(prop: dict) -> str:
    """A JSON schema property's type as the table shows it (a geometry is a ``$ref`` or a ``format``)."""
    if prop.get("x-ogc-role") == "primary-geometry" or "$ref" in prop or "oneOf" in prop:
        return prop.get("format") or "geometry"
    return " / ".join(filter(None, (prop.get("type"), prop.get("format"))))


@portal_page
async def properties_page(request: Request) -> Response:
    cid = request.path_params["collection_id"]
    layer, _ = features.live_layer(cid)
    queryables = request.url.path.endswith("/queryables")
    schema = await _answer(request, features.queryables if queryables else features.schema)
    rows = [{"name": name, "zh": prop.get("x-title-zh-TW", ""), "en": prop.get("x-title-en", ""), "type": _type(prop),
             "role": prop.get("x-ogc-role", "")} for name, prop in schema.get("properties", {}).items()]
    return render(request, "properties.html", layer=layer, rows=rows, queryables=queryables,
                  document=f"{request.url.path}?f=json")
