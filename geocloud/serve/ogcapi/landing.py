"""The landing page: pygeoapi's, with links to what this server offers and only that.

pygeoapi's landing page links processes, jobs and ``/TileMatrixSets`` (which geocloud does not
serve: the OGC API - Tiles path is ``/tileMatrixSets``) and nothing of geocloud's own surfaces.
Here the unserved links are dropped and every surface a client can discover by links is added: the
tile matrix sets, the base map tilesets, the styles, the WMTS capabilities, the map viewer, the
metadata records and the DCAT feed. A browser gets the portal's home page instead (serve/portal/pages.py).
"""

import json

from pygeoapi import api as core_api
from pygeoapi.api import API, F_HTML, F_JSON, APIRequest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geocloud.catalog import get_catalog
from geocloud.publish import metadata
from geocloud.serve import guard
from geocloud.serve.http import base_url
from geocloud.serve.ogcapi.features import call, to_response
from geocloud.serve.state import snapshot

OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
UNSERVED = ("/processes", "/jobs", "/TileMatrixSets")  # pygeoapi's links to routes geocloud does not have


def _link(rel: str, media: str, href: str, zh_tw: str, en: str, english: bool) -> dict:
    return {"rel": rel, "type": media, "title": en if english else zh_tw, "href": href}


def surfaces(base: str, english: bool) -> list[dict]:
    """Links to geocloud's own surfaces, for this caller (metadata only of what they may read)."""
    links = [
        _link(OGC_REL + "tiling-schemes", "application/json", f"{base}/tileMatrixSets",
              "圖磚矩陣集", "The tile matrix sets", english),
        _link(OGC_REL + "tilesets-vector", "application/json", f"{base}/tiles",
              "底圖向量圖磚集", "The base map's vector tilesets", english),
        _link(OGC_REL + "styles", "application/json", f"{base}/styles", "圖層樣式", "The map styles", english),
        _link("related", "application/xml", f"{base}/wmts/1.0.0/WMTSCapabilities.xml",
              "影像圖磚 WMTS 服務說明", "WMTS capabilities of the raster layers", english),
        _link("related", "text/html", f"{base}/map/", "地圖檢視器", "The map viewer", english),
    ]
    catalog, live, visible = get_catalog(), snapshot().layers, guard.visible_layers()
    if catalog.publisher is None:
        return links
    kinds = {catalog.layers[i].kind for i in visible if i in live and i in catalog.layers}
    for service, (title, _, _, kind) in metadata.SERVICES.items():
        if kind in kinds:
            links.append(_link("describedby", "application/xml", f"{base}/metadata/services/{service}.xml",
                               f"{title} 服務詮釋資料", f"{title} service metadata record", english))
    links.append(_link("describedby", "application/ld+json", f"{base}/catalog/dcat.jsonld",
                       "開放資料目錄 (DCAT-AP)", "Open data catalogue (DCAT-AP)", english))
    return links


def landing_page(api: API, request: APIRequest, base: str) -> tuple[dict, int, str]:
    """pygeoapi's landing document with geocloud's links, as JSON (a client that prefers HTML gets the
    portal's home instead, serve/portal/pages.py: one that names HTML only after JSON gets the JSON)."""
    wanted = F_JSON if request.format == F_HTML else request.format
    if wanted not in (None, F_JSON):  # JSON-LD: pygeoapi's schema.org document, no links
        return core_api.landing_page(api, request)
    request._format = F_JSON  # pygeoapi builds the links of the JSON document
    try:
        _, status, content = core_api.landing_page(api, request)
    finally:
        request._format = wanted
    doc = json.loads(content)
    english = request.locale.language == "en"
    links = [x for x in doc["links"] if not x["href"].startswith(tuple(base + p for p in UNSERVED))]
    for link in links:
        if link["rel"] in ("self", "alternate") and link["href"].startswith(f"{base}?f="):
            link["rel"] = request.get_linkrel(link["href"].rsplit("=", 1)[1])
    doc["links"] = links + surfaces(base, english)
    return request.get_response_headers(**api.api_headers), status, json.dumps(doc, ensure_ascii=False)


async def landing(request: Request) -> Response:
    return to_response(*await call(request, landing_page, base_url(request)))


routes = [Route("/", landing, methods=["GET"])]
