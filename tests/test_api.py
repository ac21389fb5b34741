"""One coherent API: every link reachable from the landing page answers, and the OpenAPI document
describes exactly the routes the application serves, self-contained.

The crawler starts at ``/`` (as JSON and as HTML) and follows every URL on the server's own host
that a page carries: JSON ``href``s and any other string naming a URL of the server (TileJSON
``tiles``, style sources, ``$id``), HTML ``href``/``src`` attributes, XML attributes and text
(WMTS resource templates, metadata records). Templated tile links are filled with the tile under
Taichung City Hall at a zoom the document allows. Downloads are asked with HEAD. A few pages of each
kind are visited (one items page per collection, no paging), so the crawl stays quick.
"""

import json
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter, deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest
from conftest import app_routes

from geocloud.serve.app import create_app
from geocloud.serve.tiles.tms import SERVED

HALL = (120.647296502, 24.1619892378)  # Taichung City Hall: inside every sample layer
PER_KIND = 2  # pages visited per kind of page (see _kind)
PAGING = re.compile(r"(?:^|&)(?:cursor|offset)=")  # next/prev pages of items: one page is enough
TEMPLATE = re.compile(r"\{(\w+)\}")
STREET_ZOOM = {"WebMercatorQuad": 16, "TWD97TM2Quad": 9}  # the same ground resolution in Taichung


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.assets: list[str] = []  # what the page loads (src, a stylesheet's href...), not where it links

    def handle_starttag(self, tag, attrs):
        found = [v for k, v in attrs if k in ("href", "src") and v]
        self.urls += found
        if tag != "a":
            self.assets += found


def outside_assets(response: httpx.Response, host: str) -> list[str]:
    """The scripts, stylesheets, images... an HTML page loads from another host than ``host``."""
    if not response.headers.get("content-type", "").startswith("text/html"):
        return []
    parser = _Refs()
    parser.feed(response.text)
    return [u for u in parser.assets if urlsplit(urljoin(str(response.url), u)).netloc not in ("", host)]


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _zoom_range(doc) -> tuple[int, int] | None:
    """The zooms a tile template of this document may be filled at (TileJSON, OGC tileset)."""
    if not isinstance(doc, dict):
        return None
    if "minzoom" in doc and "maxzoom" in doc:
        return int(doc["minzoom"]), int(doc["maxzoom"])
    layers = [x for x in doc.get("layers", []) if isinstance(x, dict) and "minTileMatrix" in x]
    if layers:  # a zoom every layer of the tileset has
        return max(int(x["minTileMatrix"]) for x in layers), min(int(x["maxTileMatrix"]) for x in layers)
    return None


def links_of(response: httpx.Response) -> tuple[list[str], tuple[int, int] | None]:
    """The URLs a page carries (as written, maybe relative or templated) and its tiles' zooms."""
    media = response.headers.get("content-type", "").split(";")[0].strip()
    text = response.text
    if media == "text/html":
        parser = _Refs()
        parser.feed(text)
        return parser.urls, None
    if media.endswith("json"):
        doc = json.loads(text)
        return [s for s in _strings(doc) if s.startswith(("http://", "https://"))], _zoom_range(doc)
    if media.endswith("xml"):
        root = ET.fromstring(response.content)
        found = []
        for el in root.iter():
            found += [v for v in el.attrib.values() if v.startswith(("http://", "https://"))]
            if el.text and el.text.strip().startswith(("http://", "https://")):
                found.append(el.text.strip())
        return found, None
    return [], None


def _tms_in(url: str) -> str:
    return next((name for name in SERVED if name in url), "WebMercatorQuad")


def expand(url: str, zooms: tuple[int, int] | None) -> str:
    """A templated link filled with the tile under City Hall (``{tileMatrix}``, ``{z}``, WMTS's
    ``{TileMatrix}``...) at a street-level zoom within ``zooms``; ``{TileMatrixSet}`` becomes
    WebMercatorQuad."""
    url = unquote(url) if "%7B" in url else url
    if "{" not in url:
        return url
    tms_name = "WebMercatorQuad" if "{TileMatrixSet}" in url else _tms_in(url)
    z = STREET_ZOOM[tms_name]
    if zooms is not None:
        z = min(max(z, zooms[0]), zooms[1])
    tile = SERVED[tms_name].tile(*HALL, z)
    values = {"tileMatrix": z, "z": z, "TileMatrix": z, "tileRow": tile.y, "y": tile.y, "TileRow": tile.y,
              "tileCol": tile.x, "x": tile.x, "TileCol": tile.x, "TileMatrixSet": tms_name}
    return TEMPLATE.sub(lambda m: str(values.get(m.group(1), m.group(0))), url)


def _kind(path: str, query: str) -> str:
    """Pages of one kind: the path with ids and tile numbers generalised (the collection kept, so
    every collection is visited), plus the format asked for."""
    path = re.sub(r"/items/[^/]+$", "/items/{id}", path)
    path = re.sub(r"/\d+/\d+/\d+(\.\w+)?$", "/{z}/{y}/{x}", path)
    fmt = re.search(r"(?:^|&)f=([^&]*)", query)
    return path + (f"?f={fmt.group(1)}" if fmt else "")


@dataclass
class Crawl:
    base: str
    headers: dict
    visited: Counter = field(default_factory=Counter)  # kind -> pages
    failures: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    outside: list[str] = field(default_factory=list)  # assets pages load from other hosts

    def run(self, client: httpx.Client) -> "Crawl":
        host = urlsplit(self.base).netloc
        seen: set[str] = set()
        queue = deque([(self.base + "/?f=json", "(start)"), (self.base + "/?f=html", "(start)")])
        while queue:
            url, referrer = queue.popleft()
            parts = urlsplit(url)
            if parts.netloc != host or url in seen:
                continue
            seen.add(url)
            if "{" in url:
                self.failures.append(f"{url}: a template the crawler cannot fill (from {referrer})")
                continue
            kind = _kind(parts.path, parts.query)
            if self.visited[kind] >= PER_KIND or PAGING.search(parts.query):
                self.skipped[kind] += 1
                continue
            self.visited[kind] += 1
            download = parts.path.endswith("/download")
            response = client.request("HEAD" if download else "GET", url, headers=self.headers)
            self.statuses[response.status_code] += 1
            if response.status_code == 404 or response.status_code >= 500:
                self.failures.append(f"{url}: {response.status_code} (a link on {referrer})")
                continue
            self.outside += [f"{url} loads {u}" for u in outside_assets(response, host)]
            if download or response.status_code != 200:
                continue
            urls, zooms = links_of(response)
            for found in urls:
                if found.startswith(("mailto:", "tel:", "#", "javascript:")):
                    continue
                target = expand(urljoin(url, found), zooms).split("#")[0]
                queue.append((target, url))
        return self


def crawl(url: str, headers: dict) -> Crawl:
    with httpx.Client(timeout=60) as client:
        return Crawl(url, headers).run(client)


# -- the crawl --------------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["anonymous", "key"])
def test_every_link_from_the_landing_page_answers(served, who, record_property):
    headers = {"X-API-Key": served.keys["fire"]} if who == "key" else {}
    started = time.monotonic()
    result = crawl(served.url, headers)
    pages = sum(result.visited.values())
    print(f"crawl figures: {who}: {pages} pages of {len(result.visited)} kinds in {time.monotonic() - started:.1f} s, "
          f"{sum(result.skipped.values())} more of the same kinds left, answers {dict(result.statuses)}")
    record_property("crawl_pages", pages)
    assert not result.failures, "\n".join(result.failures)
    assert not result.outside, "\n".join(result.outside)  # every asset served by geocloud, none from a CDN
    # the crawl reached every surface (it would pass vacuously if the landing page linked nothing)
    kinds = " ".join(result.visited)
    for reached in ("/collections/roads/items/{id}", "/collections/roads/schema", "/collections/roads/queryables",
                    "/tileMatrixSets/TWD97TM2Quad", "/tiles/WebMercatorQuad/{z}/{y}/{x}", "tilejson.json",
                    "/styles/roads.json", "/styles/roads.qml", "/wmts/1.0.0/WMTSCapabilities.xml",
                    "/metadata/roads.xml", "/metadata/services/ogcapi.xml", "/catalog/dcat.jsonld",
                    "/collections/roads/download", "/map/static/maplibre-gl/maplibre-gl.js",
                    "/portal/swagger-ui/swagger-ui-bundle.js", "/portal/static/items.js"):
        assert reached in kinds, f"the crawl never reached {reached}"
    restricted = "/collections/inspection_sites/items/{id}" in kinds
    assert restricted == (who == "key"), "only the key reads the restricted layer"


def test_landing_page_links_only_what_is_served(served):
    for f in ("json", "html"):
        r = served.get(f"/?f={f}")
        assert r.status_code == 200
        for unserved in ("/processes", "/jobs", "/TileMatrixSets"):
            assert f"{served.url}{unserved}" not in r.text, f"the {f} landing page links {unserved}"
    links = {x["href"].removeprefix(served.url): x for x in served.get("/?f=json").json()["links"]}
    assert links["/tileMatrixSets"]["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"
    assert {"/tiles", "/styles", "/wmts/1.0.0/WMTSCapabilities.xml", "/catalog/dcat.jsonld"} <= links.keys()
    assert links["?f=json"]["rel"] == "self" and links["?f=html"]["rel"] == "alternate"
    english = {x["href"]: x["title"] for x in served.get("/?f=json&lang=en").json()["links"]}
    assert english[f"{served.url}/styles"] == "The map styles"
    chinese = {x["href"]: x["title"] for x in served.get("/?f=json").json()["links"]}
    assert chinese[f"{served.url}/styles"] == "圖層樣式"


def test_collection_schema_is_served_with_titles_in_both_languages(served):
    zh = served.get("/collections/roads/schema?f=json")
    assert zh.status_code == 200 and zh.headers["content-type"].startswith("application/schema+json")
    name = zh.json()["properties"]["name"]
    assert name["title"] == name["x-title-zh-TW"] == "道路名稱" and name["x-title-en"] == "Road name"
    assert zh.json()["properties"]["road_id"]["x-ogc-role"] == "id"
    en = served.get("/collections/roads/schema?f=json&lang=en").json()["properties"]["name"]
    assert en["title"] == "Road name"
    assert served.get("/collections/roads/schema?f=html").status_code == 200
    assert served.get("/collections/inspection_sites/schema").status_code == 401  # restricted: as the items
    assert served.get("/collections/nowhere/schema", headers={"X-API-Key": served.keys["fire"]}).status_code == 404


# -- the OpenAPI document ---------------------------------------------------------------------------

def _template(path: str) -> str:
    """A path with its parameters anonymised ({collection_id}, {z:int} and {tileMatrix} alike)."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def _document_routes(doc: dict, collections: list[str]) -> set[tuple[str, str]]:
    """(path template, METHOD) of the document; pygeoapi's per-collection paths as one template."""
    named = re.compile(rf"^/collections/(?:{'|'.join(map(re.escape, collections))})(?=/|$)")
    return {(_template(named.sub("/collections/{}", path)), method.upper())
            for path, item in doc["paths"].items() for method in item if method not in ("parameters", "summary")}


@pytest.mark.parametrize("who", ["anonymous", "key"])
def test_openapi_describes_every_route_and_only_those(served, who):
    headers = {"X-API-Key": served.keys["fire"]} if who == "key" else {}
    doc = served.get("/openapi?f=json", headers=headers).json()
    collections = [c["id"] for c in served.get("/collections?f=json", headers=headers).json()["collections"]]
    described = _document_routes(doc, collections)
    routed = {(_template(path), method) for path, methods in app_routes(create_app().routes)
              for method in methods if method != "HEAD"}  # HEAD: answered wherever GET is
    assert not routed - described, f"routes the document does not describe: {sorted(routed - described)}"
    assert not described - routed, f"the document describes routes that do not exist: {sorted(described - routed)}"


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_document_is_self_contained(served):
    doc = served.get("/openapi?f=json").json()
    refs = set(_refs(doc))
    assert refs and all(r.startswith("#/") for r in refs), [r for r in refs if not r.startswith("#/")]
    for ref in refs:
        node = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve in the document"
            node = node[part]


def test_openapi_lists_every_items_parameter(served):
    doc = served.get("/openapi?f=json").json()

    def names(op):
        return {doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"]
                for p in op["parameters"]}
    items = names(doc["paths"]["/collections/roads/items"]["get"])
    assert {"filter", "filter-lang", "filter-crs", "cursor", "crs", "bbox", "bbox-crs", "sortby", "properties",
            "limit", "offset"} <= items
    download = names(doc["paths"]["/collections/{collectionId}/download"]["get"])
    assert {"f", "bbox", "bbox-crs", "filter", "filter-lang", "filter-crs", "accept_terms"} <= download
    assert doc["components"]["parameters"]["collectionId"]["schema"]["enum"] == sorted(
        c["id"] for c in served.get("/collections?f=json").json()["collections"])
    assert doc["paths"]["/auth/token"]["post"]["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
