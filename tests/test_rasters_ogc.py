"""Raster layers as OGC API collections, over a real server and real clients.

GDAL's OGCAPI driver reads a coverage subset (Debian's GDAL: rasterio's bundled GDAL is built
without the OGCAPI driver), OWSLib lists the coverages and reads one by subset and scale-size, the
map tilesets are followed link by link to a tile, and a restricted raster answers every surface
as an unknown one. Also the raster tile fixes: a Content-Type that matches the bytes, and ETags
(and cache keys) that cover the query.

The server here loads only the two rasters and the roads, with the scanned sheets made restricted
(the fire bureau's inspectors may read them).
"""

import json
import os
import shutil
import subprocess
import time
import uuid

import httpx
import morecantile
import numpy as np
import psycopg
import pyogrio
import pytest
import rasterio
import yaml
from conftest import ROOT, _admin, _drop, _url_for, make_keys, source_of, start_server, stop_server
from owslib.ogcapi.coverages import Coverages
from owslib.util import Authentication
from psycopg import sql
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window
from starlette.routing import Mount
from titiler.core.models.OGC import TileSet

from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.serve.app import create_app
from geocloud.serve.rasters import coverages, maptiles
from geocloud.serve.rasters import tiler as rasters

OGC = "http://www.opengis.net/def/rel/ogc/1.0/"
EXACT = 1e-9  # the coverage's warp tolerance (serve/rasters/coverages.py EXACT)
HALL = (120.647296502, 24.1619892378)


class Server:
    def __init__(self, url, db_url, data_dir, keys):
        self.url, self.db_url, self.data_dir, self.keys = url, db_url, data_dir, keys
        self.fire = {"Authorization": f"Bearer {keys['fire']}"}
        self.outsider = {"X-API-Key": keys["external"]}

    def get(self, path, **kwargs):
        return httpx.get(path if path.startswith("http") else self.url + path, timeout=60, **kwargs)

    def cog(self, layer: str) -> str:
        with psycopg.connect(self.db_url) as conn:
            storage = conn.execute("SELECT storage FROM geocloud.layer_versions WHERE layer = %s AND state = 'live'",
                                   (layer,)).fetchone()[0]
        return str(self.data_dir / storage / f"{layer}.tif")


@pytest.fixture(scope="module")
def server(template_db, city, tmp_path_factory):
    """satellite (public), topo_sheets (restricted to the fire bureau) and roads, served."""
    from geocloud.etl import run_pipeline

    project = tmp_path_factory.mktemp("project")
    for name in ("layers", "etl"):
        shutil.copytree(ROOT / name, project / name)
    for name in ("agencies.yml", "pygeoapi-config.yml"):
        shutil.copy(ROOT / name, project / name)
    (project / "styles").symlink_to(ROOT / "styles")
    sheets = project / "layers" / "topo_sheets.yml"
    doc = yaml.safe_load(sheets.read_text(encoding="utf-8"))
    doc["access"] = {"level": "restricted", "grants": [{"agency": "TCG-FIRE", "roles": ["inspector"]}]}
    sheets.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    name = f"geocloud_srv_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    db_url, data_dir = _url_for(name), tmp_path_factory.mktemp("rasters-data")
    env = {"GEOCLOUD_DATABASE_URL": db_url, "GEOCLOUD_DATA_DIR": str(data_dir), "GEOCLOUD_OPERATOR": "tester",
           "GEOCLOUD_PROJECT_DIR": str(project)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        get_catalog.cache_clear()
        for pipeline in ("satellite", "topo-sheets", "roads"):
            run_pipeline(pipeline, source_of(city, pipeline))
        keys = make_keys(db_url)
    get_settings.cache_clear()
    get_catalog.cache_clear()
    proc, url = start_server(db_url, data_dir, {"GEOCLOUD_PROJECT_DIR": str(project)})
    served = Server(url, db_url, data_dir, keys)
    served.env = env  # for calls in this process configured as the server is
    yield served
    stop_server(proc)
    _drop(name)


def links(doc: dict, rel: str) -> list[dict]:
    return [link for link in doc["links"] if link["rel"] == rel]


def tracebacks(server) -> int:
    return (server.data_dir / "server.log").read_text(encoding="utf-8", errors="replace").count("Traceback")


# -- collections -------------------------------------------------------------------------------------

def test_rasters_are_collections_whose_links_all_answer(server):
    listed = {c["id"]: c for c in server.get("/collections").json()["collections"]}
    assert {"satellite", "roads"} <= set(listed) and "topo_sheets" not in listed  # restricted
    assert listed["satellite"]["layerDataType"] == "Coverage" and "layerDataType" not in listed["roads"]
    sat = server.get("/collections/satellite", params={"lang": "en"}).json()
    assert sat["title"] == "Satellite imagery" and len(sat["extent"]["spatial"]["bbox"]) == 1
    expected = {  # rel -> media types a client finds there
        OGC + "coverage": {"image/tiff; application=geotiff"},
        OGC + "coverage-domainset": {"application/json"}, OGC + "coverage-rangetype": {"application/json"},
        OGC + "tilesets-map": {"application/json"},
        "describedby": {"application/json", "application/xml"},  # TileJSON (x2), the metadata record
        "related": {"application/xml"}}  # WMTS capabilities
    for rel, media in expected.items():
        found = links(sat, rel)
        assert {link["type"] for link in found} == media, rel
        for link in found:
            r = server.get(link["href"])
            assert r.status_code == 200 and r.headers["content-type"].split(";")[0] in \
                {m.split(";")[0] for m in media}, (link, r.text[:200])
    # the vector collections are as they were, and feature clients still see only them
    roads = server.get("/collections/roads").json()
    assert links(roads, "items") and not links(roads, OGC + "coverage")
    assert {name for name, _ in pyogrio.list_layers("OAPIF:" + server.url)} == {"roads"}
    assert server.get("/collections/satellite?f=html").status_code == 200
    declared = set(server.get("/conformance").json()["conformsTo"])
    assert set(rasters.CONFORMANCE) <= declared


# -- coverages ---------------------------------------------------------------------------------------

def test_gdal_ogcapi_reads_a_coverage_subset_with_the_right_pixels_and_georeferencing(server, tmp_path):
    out = tmp_path / "subset.tif"
    done = subprocess.run(["gdal_translate", "-q", "-oo", "CACHE=NO", "-srcwin", "200", "300", "300", "200",
                           f"OGCAPI:{server.url}/collections/satellite", str(out)], check=False, capture_output=True,
                          text=True, env={**os.environ, "GDAL_HTTP_TIMEOUT": "60"})
    assert done.returncode == 0, done.stderr
    with rasterio.open(server.cog("satellite")) as src:
        grid, _, _ = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        with rasterio.open(out) as got:
            assert got.crs.to_epsg() == 4326 and got.count == 3 and got.dtypes[0] == "uint8"
            assert got.transform.almost_equals(grid * rasterio.Affine.translation(200, 300), precision=1e-9)
            with WarpedVRT(src, crs="EPSG:4326", transform=got.transform, width=300, height=200,
                           resampling=rasterio.enums.Resampling.nearest, tolerance=EXACT) as truth:
                assert np.array_equal(got.read(), truth.read())


def test_owslib_lists_the_coverages_and_reads_one_by_subset_and_scale_size(server):
    """A subset on the domain's grid at its resolution, as GDAL asks for its blocks, is the COG's
    pixels warped exactly; a coarser scale-size keeps the area and georeferencing."""
    assert Coverages(server.url).coverages() == ["satellite"]
    # the key as a Basic password, as QGIS sends it (OWSLib keeps headers= for every later client)
    inspector = Authentication(username="owslib", password=server.keys["fire"])
    assert set(Coverages(server.url, auth=inspector).coverages()) == {"satellite", "topo_sheets"}
    lon, lat = server.get("/collections/satellite/coverage/domainset").json()["generalGrid"]["axis"]
    x0, y1, rx, ry = lon["lowerBound"], lat["upperBound"], lon["resolution"], lat["resolution"]
    box = (x0 + 100 * rx, y1 - 232 * ry, x0 + 164 * rx, y1 - 200 * ry)  # columns 100-163, rows 200-231
    for size in ((64, 32), (16, 8)):
        data = Coverages(server.url).coverage("satellite", subset=[("Lon", box[0], box[2]), ("Lat", box[1], box[3])],
                                              scale_size=[("Lon", size[0]), ("Lat", size[1])])
        with rasterio.open(data) as got, rasterio.open(server.cog("satellite")) as src:
            assert got.crs.to_epsg() == 4326 and (got.width, got.height) == size
            assert np.allclose(tuple(got.bounds), box, atol=1e-12)
            if size == (64, 32):
                with WarpedVRT(src, crs="EPSG:4326", transform=got.transform, width=64, height=32,
                               tolerance=EXACT) as truth:
                    assert np.array_equal(got.read(), truth.read())


def test_a_coverage_in_the_layers_own_crs_is_the_cogs_pixels(server):
    with rasterio.open(server.cog("satellite")) as src:
        window = Window(100, 200, 40, 30)
        x0, y1 = src.transform * (window.col_off, window.row_off)
        x1, y0 = src.transform * (window.col_off + window.width, window.row_off + window.height)
        truth = src.read(window=window)
        for params in ({"subset": f"E({x0}:{x1}),N({y0}:{y1})"},
                       {"bbox": f"{x0},{y0},{x1},{y1}", "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/3826"}):
            r = server.get("/collections/satellite/coverage", params=params)
            assert r.status_code == 200 and r.headers["content-type"] == "image/tiff; application=geotiff"
            assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3826>"
            with rasterio.MemoryFile(r.content) as mem, mem.open() as got:
                assert got.crs.to_epsg() == 3826 and got.transform.almost_equals(src.window_transform(window))
                assert np.array_equal(got.read(), truth)
        whole = server.get("/collections/satellite/coverage")
        with rasterio.MemoryFile(whole.content) as mem, mem.open() as got:
            assert got.transform.almost_equals(src.transform) and np.array_equal(got.read(), src.read())
    domain = server.get("/collections/satellite/coverage/domainset").json()["generalGrid"]
    assert domain["axisLabels"] == ["Lon", "Lat"] and domain["srsName"].endswith("CRS84")
    assert [f["definition"] for f in server.get("/collections/satellite/coverage/rangetype").json()["field"]] == \
        ["ogcType:unsignedByte"] * 3


@pytest.mark.parametrize("query, name", [
    ("bbox=1,2,3", "bbox"),
    ("bbox=120.7,24.1,120.6,24.2&bbox-crs=http://www.opengis.net/def/crs/EPSG/0/3857", "bbox"),
    ("bbox=120.6,24.1,120.7,24.1", "bbox"),
    ("bbox=120.6,24.1,120.7,24.2&bbox-crs=EPSG:9999", "bbox-crs"),
    ("bbox=120.6,24.1,120.7,24.2&width=5000&height=10", "width"),
    ("width=100&height=0", "height"),
    ("width=2.5&height=10", "width"),
    ("subset=Lon(120.6:120.7),Lat(24.2:24.1)", "subset"),
    ("subset=Lon(120.6:120.7),N(1:2)", "subset"),
    ("subset=Time(1:2)", "subset"),
    ("subset=Lon(120.6)", "subset"),
    ("subset=Lon(a:b)", "subset"),
    ("subset=Lon(120.6:120.7)&bbox=120.6,24.1,120.7,24.2", "bbox"),
    ("scale-size=Lon(abc)", "width"),
    ("subset=Lon(120.6:120.6001),Lat(24.1:24.2)&width=2048", "width"),
    ("f=png", "f"),
    ("subset=Lon(nan:1)", "subset"),
    ("subset=Lon(-1e300:1e300)", "subset"),  # was a 500 (OverflowError in the read window)
    ("subset=E(-1e300:1e300),N(2660000:2680000)", "subset"),
    ("subset=Lat(-91:91)", "subset"),
    ("bbox=-1e300,-1e300,1e300,1e300&bbox-crs=http://www.opengis.net/def/crs/EPSG/0/3826", "bbox"),
])
def test_bad_coverage_requests_are_400_naming_the_parameter(server, query, name):
    before = tracebacks(server)
    r = server.get(f"/collections/satellite/coverage?{query}")
    assert r.status_code == 400 and r.json()["description"].startswith(f"{name}:"), r.text
    assert tracebacks(server) == before


# -- map tiles ---------------------------------------------------------------------------------------

def test_map_tilesets_lead_from_the_collection_to_the_right_tile(server):
    """What an OGC API - Tiles client does: collection -> tilesets -> tileset (titiler's OGC TileSet
    model) -> tiling scheme (morecantile) -> templated tile link, for a tile the limits list. The tile
    holds the COG's pixels at that tile's place (so row and column are not swapped)."""
    collection = server.get("/collections/satellite").json()
    tilesets = server.get(links(collection, OGC + "tilesets-map")[0]["href"]).json()["tilesets"]
    assert {t["tileMatrixSetURI"].rsplit("/", 1)[-1] for t in tilesets} == {"WebMercatorQuad", "TWD97TM2Quad"}
    for summary in tilesets:
        tileset = TileSet.model_validate(server.get(links(summary, "self")[0]["href"]).json())
        assert tileset.dataType == "map"
        scheme = next(link for link in tileset.links if link.rel == OGC + "tiling-scheme")
        tms = morecantile.TileMatrixSet.model_validate(server.get(str(scheme.href)).json())
        deepest = tileset.tileMatrixSetLimits[-1]
        tile = tms.tile(*HALL, int(deepest.tileMatrix))
        assert deepest.minTileRow <= tile.y <= deepest.maxTileRow and deepest.minTileCol <= tile.x <= deepest.maxTileCol
        template = next(link for link in tileset.links if link.rel == "item" and link.type == "image/png")
        href = str(template.href).replace("%7B", "{").replace("%7D", "}")
        r = server.get(href.format(tileMatrix=deepest.tileMatrix, tileRow=tile.y, tileCol=tile.x))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        with rasterio.MemoryFile(r.content) as mem, mem.open() as png:
            pixels = png.read(indexes=[1, 2, 3])
        cog = server.cog("satellite").replace(".tif", "-webmercator.tif") if tms.id == "WebMercatorQuad" \
            else server.cog("satellite")
        with rasterio.open(cog) as src, WarpedVRT(src, crs=tms.rasterio_crs, width=256, height=256,
                                                  transform=rasterio.transform.from_bounds(*tms.xy_bounds(tile), 256, 256)) as vrt:
            truth = vrt.read()
        assert (pixels == truth).mean() > 0.95, tms.id


# -- access ------------------------------------------------------------------------------------------

RASTER_SURFACES = ["/collections/{}", "/collections/{}/coverage?width=8&height=8", "/collections/{}/coverage/domainset",
                   "/collections/{}/coverage/rangetype", "/collections/{}/map/tiles",
                   "/collections/{}/map/tiles/WebMercatorQuad"]


@pytest.mark.parametrize("surface", RASTER_SURFACES)
def test_a_restricted_raster_answers_as_an_unknown_collection(server, surface):
    for headers, status in (({}, 401), (server.outsider, 404)):
        secret = server.get(surface.format("topo_sheets"), headers=headers)
        unknown = server.get(surface.format("no_such_layer"), headers=headers)
        assert secret.status_code == unknown.status_code == status, (secret.text, unknown.text)
        assert "topo_sheets" not in unknown.text and "掃描" not in secret.text
        assert ("www-authenticate" in secret.headers) == (status == 401)
    granted = server.get(surface.format("topo_sheets"), headers=server.fire)
    assert granted.status_code == 200 and granted.headers["cache-control"] == "private, no-cache"
    vector = server.get(surface.format("roads"))
    assert vector.status_code == (200 if surface == "/collections/{}" else 404)


def test_wrong_methods_answer_405_with_allow(server):
    for method, path in (("POST", "/collections"), ("DELETE", "/collections/satellite"),
                         ("PUT", "/collections/satellite/coverage"), ("POST", "/collections/satellite/map/tiles"),
                         ("DELETE", "/rasters/satellite/info")):
        r = httpx.request(method, server.url + path, timeout=30)
        assert r.status_code == 405 and "GET" in r.headers["allow"], (method, path, r.text)
    assert server.get("/no/such/route").status_code == 404


# -- raster tiles: Content-Type and ETag ---------------------------------------------------------------

SIGNATURES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"RIFF": "image/webp"}


def media_of(body: bytes) -> str:
    return next(media for magic, media in SIGNATURES.items() if body.startswith(magic))


def test_a_raster_tile_without_extension_is_labelled_by_its_bytes(server):
    web = morecantile.tms.get("WebMercatorQuad")
    inside, edge = web.tile(*HALL, 15), web.tile(120.5979503, 24.2072412, 15)  # the image's north-west corner
    seen = set()
    for tile in (inside, edge):
        for state in ("miss", "hit"):
            r = server.get(f"/rasters/satellite/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}")
            assert r.status_code == 200 and r.headers["x-tile-cache"] == state
            assert r.headers["content-type"] == media_of(r.content), (tile, state)
            seen.add(r.headers["content-type"])
    assert seen == {"image/jpeg", "image/png"}  # opaque tiles are JPEG, tiles with transparency PNG


def test_raster_tile_etags_and_cache_cover_the_query(server):
    tile = morecantile.tms.get("WebMercatorQuad").tile(*HALL, 16)
    path = f"/rasters/satellite/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    queries = ["tilesize=512", "tilesize=256", "rescale=0,50", "bidx=1&bidx=2&bidx=3", "bidx=3&bidx=2&bidx=1"]
    answers = {}
    for query in queries:
        first, again = server.get(f"{path}?{query}"), server.get(f"{path}?{query}")
        assert first.status_code == again.status_code == 200
        assert (first.headers["x-tile-cache"], again.headers["x-tile-cache"]) == ("off", "off")
        assert again.headers["etag"] == first.headers["etag"] and again.content == first.content
        answers[query] = first
    assert len({a.headers["etag"] for a in answers.values()}) == len(queries)
    for one, other in (("tilesize=512", "tilesize=256"), ("rescale=0,50", "tilesize=256"),
                       ("bidx=1&bidx=2&bidx=3", "bidx=3&bidx=2&bidx=1")):
        assert answers[one].content != answers[other].content, (one, other)
    r = server.get(f"{path}?rescale=0,50", headers={"If-None-Match": answers["tilesize=256"].headers["etag"]})
    assert r.status_code == 200 and r.content == answers["rescale=0,50"].content
    r = server.get(f"{path}?rescale=0,50", headers={"If-None-Match": answers["rescale=0,50"].headers["etag"]})
    assert r.status_code == 304 and r.headers["cache-control"] == "public, no-cache"


# -- routes and their OpenAPI description -------------------------------------------------------------

def test_every_raster_route_is_listed_with_its_path_and_described_in_openapi():
    """The raster app is mounted at /rasters (so its routes have paths a listing can see), and
    every raster route served has an OpenAPI 3.0 path item referring only to shared responses."""
    served = set()
    for route in create_app().routes:
        if isinstance(route, Mount) and route.path == "/rasters":
            served |= {"/rasters" + r.path for r in route.routes}
        elif route.path.startswith("/collections/{collection_id}/") and \
                route.endpoint.__module__ in (coverages.__name__, maptiles.__name__):
            served.add(route.path)
    served = {p.replace("{layer_id}", "{layerId}").replace("{collection_id}", "{collectionId}")
              .replace("{tms}", "{tileMatrixSetId}") for p in served}
    described = {**rasters.OPENAPI_PATHS, **coverages.OPENAPI_PATHS, **maptiles.OPENAPI_PATHS}
    assert served == set(described) and len(served) == 14
    text = json.dumps(described)
    refs = {ref for ref in text.split('"$ref": "')[1:]}
    assert {ref.split('"')[0] for ref in refs} <= {f"#/components/responses/{n}" for n in (
        "InvalidParameter", "Unauthorized", "NotFound", "TooManyRequests", "ServerError", "ServiceUnavailable")}
    assert '"type": "null"' not in text and '"const"' not in text


def test_queries_cannot_fill_the_tile_cache(server):
    """Only the plain tile is kept on disk: a caller adding ?junk=1, 2, 3... gets each tile rendered
    and labelled, but writes nothing (each variant used to stay on disk for good)."""
    tile = morecantile.tms.get("WebMercatorQuad").tile(*HALL, 17)
    path = f"/rasters/satellite/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    cache = server.data_dir / "tile-cache"
    plain = server.get(path)
    assert plain.status_code == 200 and plain.headers["x-tile-cache"] == "miss"
    files = sorted(cache.rglob("*"))
    for n in range(5):
        r = server.get(f"{path}?junk={n}")
        assert r.status_code == 200 and r.headers["x-tile-cache"] == "off"
    assert sorted(cache.rglob("*")) == files
    assert server.get(path).headers["x-tile-cache"] == "hit"


# -- the plain raster tile path (serve/rasters/plaintiles.py) ----------------------------------------

def _answer(r) -> tuple:
    """Everything of an answer but what differs between any two: its request id and date."""
    return r.status_code, sorted((k, v) for k, v in r.headers.multi_items() if k not in ("x-request-id", "date")), r.content


@pytest.fixture
def before_the_router(server, monkeypatch):
    """``call(path, headers, method)`` through the guard and the plain raster tile path in this
    process, configured as the server is: their answer, or None when the request went on to the router."""
    import asyncio

    from geocloud.serve.guard import AuthMiddleware
    from geocloud.serve.rasters.plaintiles import PlainRasterTiles

    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GEOCLOUD_RATE_LIMIT_ANONYMOUS", "1000000")
    get_settings.cache_clear()
    get_catalog.cache_clear()

    async def router(scope, receive, send):  # stands for the router and every route behind it
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"the router"})
    app = AuthMiddleware(PlainRasterTiles(router))

    async def ask(method, path, headers):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tiles.test") as client:
            return await client.request(method, path, headers=headers)

    def call(path, headers=None, method="GET"):
        answer = asyncio.run(ask(method, path, headers))
        return None if answer.status_code == 418 else answer
    yield call
    monkeypatch.undo()
    get_settings.cache_clear()
    get_catalog.cache_clear()


def test_a_plain_raster_tile_is_answered_before_the_router_as_the_route_answers_it(server, before_the_router):
    """A GET of a raster tile with no query is rendered by titiler's tile function before the router
    (FastAPI solving its ten dependencies cost more than all the rest geocloud adds): the same answer,
    header for header and byte for byte, as the full stack gives (reached here with the key in the
    query), cold, cached, unchanged (304) and outside the image (404); a restricted layer's read is
    still audited, and anything the route must judge goes on to it."""
    web = morecantile.tms.get("WebMercatorQuad")
    with rasterio.open(server.cog("topo_sheets")) as src:
        sheet = rasterio.warp.transform(src.crs, "EPSG:4326", [(src.bounds.left + src.bounds.right) / 2],
                                        [(src.bounds.bottom + src.bounds.top) / 2])
    cache = server.data_dir / "tile-cache"
    for layer, tile, key in (("satellite", web.tile(*HALL, 15), server.keys["udb"]),
                             ("topo_sheets", web.tile(sheet[0][0], sheet[1][0], 14), server.keys["fire"])):
        plain_headers = {"Authorization": f"Bearer {key}"} if layer == "topo_sheets" else {}
        path = f"/rasters/{layer}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        answers = {}
        for how, params in (("plain", {}), ("full", {"api_key": key})):
            shutil.rmtree(cache, ignore_errors=True)
            cold, hit = (server.get(path, params=params, headers=plain_headers) for _ in range(2))
            unchanged = server.get(path, params=params, headers={**plain_headers, "If-None-Match": cold.headers["etag"]})
            answers[how] = [_answer(r) for r in (cold, hit, unchanged)]
            assert [r.status_code for r in (cold, hit, unchanged)] == [200, 200, 304], (layer, how)
            assert (cold.headers["x-tile-cache"], hit.headers["x-tile-cache"]) == ("miss", "hit")
            assert cold.headers["content-type"] == media_of(cold.content) and hit.content == cold.content
        assert answers["plain"] == answers["full"], layer
        assert dict(answers["plain"][0][1])["cache-control"] == \
            ("public, no-cache" if layer == "satellite" else "private, no-cache")
    far = web.tile(121.5, 25.0, 15)  # Taipei: beyond the image
    outside = f"/rasters/satellite/tiles/WebMercatorQuad/{far.z}/{far.x}/{far.y}.png"
    refused = server.get(outside)
    assert refused.status_code == 404 and _answer(refused) == _answer(server.get(outside, params={"api_key": key}))
    with psycopg.connect(server.db_url) as conn:  # the fire bureau's reads of the sheet, plain path included
        for _ in range(50):
            paths = {p for (detail,) in conn.execute("SELECT detail FROM geocloud.audit WHERE layer = 'topo_sheets' "
                                                     "AND surface = 'rasters' AND agency = 'TCG-FIRE'")
                     for p in detail.get("paths", [])}
            if path in paths:
                break
            time.sleep(0.2)
    assert path in paths
    # it is the plain path that answered; anything else goes on to the router (the route answers it)
    sat = web.tile(*HALL, 16)
    plain = f"/rasters/satellite/tiles/WebMercatorQuad/{sat.z}/{sat.x}/{sat.y}"
    for _ in range(2):  # cold, then cached
        answer = before_the_router(plain + ".webp")
        assert answer.status_code == 200 and answer.content.startswith(b"RIFF")
    assert before_the_router(outside).status_code == 404
    assert before_the_router(path, {"X-API-Key": server.keys["fire"]}).status_code == 200  # the sheet's tile
    for went, headers, method in (
            (plain + ".png", None, "HEAD"), (plain + ".png?tilesize=256", None, "GET"), (plain + "@2x.png", None, "GET"),
            (plain + ".gif", None, "GET"), (plain + ".png.png", None, "GET"),
            (f"/rasters/satellite/tiles/WebMercatorQuad/25/{sat.x}/{sat.y}.png", None, "GET"),
            (f"/rasters/satellite/tiles/NoSuchQuad/{sat.z}/{sat.x}/{sat.y}.png", None, "GET"),
            (f"/rasters/roads/tiles/WebMercatorQuad/{sat.z}/{sat.x}/{sat.y}.png", None, "GET"),
            (path, None, "GET"), (path, {"X-API-Key": server.keys["external"]}, "GET")):  # the sheet: 401, 404
        assert before_the_router(went, headers, method) is None, (went, headers, method)


def test_titiler_reads_the_served_matrix_sets_without_copying_them():
    """morecantile answers every ``get`` with a deep copy whose CRS objects rio-tiler builds again
    (1-1.4 ms of a cold tile); titiler's factory gets the matrix sets geocloud serves themselves, and
    every other one as before."""
    from geocloud.serve.tiles.tms import SERVED, TMS

    matrix_sets = rasters.tiler.supported_tms
    assert matrix_sets.list() == TMS.list()
    for name, served in SERVED.items():
        assert matrix_sets.get(name) is served and matrix_sets.get(name) is matrix_sets.get(name)
    other = matrix_sets.get("WorldCRS84Quad")
    assert other.id == "WorldCRS84Quad" and other is not matrix_sets.get("WorldCRS84Quad")
