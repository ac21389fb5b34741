"""Tiles over a real server: OGC API Tiles discovery, MVT content checked against PostGIS, raster
tiles read by GDAL's WMTS driver, cache invalidation by publish and rollback, bad requests."""

import os
import time

import httpx
import mapbox_vector_tile
import numpy as np
import psycopg
import pytest
import rasterio
from conftest import geocloud_cli, source_of
from rasterio.warp import transform as warp

from geocloud.catalog import get_catalog
from geocloud.serve.tiles.tms import SERVED

HALL = (120.647296502, 24.1619892378)
WEB = SERVED["WebMercatorQuad"]


def rows(served, sql, *args):
    with psycopg.connect(served.db_url) as conn:
        return conn.execute(sql, args).fetchall()


def test_discovery_from_collection_to_tile(served):
    spot = rows(served, "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Transform(ST_Centroid(geom), 4326) c "
                        "FROM live.buildings ORDER BY building_id LIMIT 1) s")[0]
    tilesets = served.get("/collections/buildings/tiles").json()["tilesets"]
    assert {t["tileMatrixSetURI"].rsplit("/", 1)[-1] for t in tilesets} == {"WebMercatorQuad", "TWD97TM2Quad"}
    for ts in tilesets:
        link = next(x for x in ts["links"] if x["rel"] == "self")["href"]
        tileset = served.get(link.removeprefix(served.url)).json()
        item = next(x for x in tileset["links"] if x["rel"] == "item")
        assert item["templated"] and item["type"] == "application/vnd.mapbox-vector-tile"
        tms = SERVED[tileset["tileMatrixSetURI"].rsplit("/", 1)[-1]]
        z = int(tileset["layers"][0]["maxTileMatrix"]) - 3
        tile = tms.tile(*spot, z)
        href = item["href"].format(tileMatrix=tile.z, tileRow=tile.y, tileCol=tile.x)
        r = served.get(href.removeprefix(served.url))
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
        assert "buildings" in mapbox_vector_tile.decode(r.content)
        scheme = next(x for x in tileset["links"] if x["rel"].endswith("tiling-scheme"))["href"]
        assert served.get(scheme.removeprefix(served.url)).json()["id"] == tms.id


def test_tilejson(served):
    tj = served.get("/collections/roads/tiles/WebMercatorQuad/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/collections/roads/tiles/WebMercatorQuad/{z}/{y}/{x}")
    assert tj["vector_layers"][0]["id"] == "roads" and "name" in tj["vector_layers"][0]["fields"]
    assert (tj["minzoom"], tj["maxzoom"]) == (8, 22)
    basemap = served.get("/tiles/WebMercatorQuad/tilejson.json").json()
    assert {"roads", "buildings", "zoning"} <= {v["id"] for v in basemap["vector_layers"]}


def test_tileset_titles_follow_the_requested_language(served):
    layer = get_catalog().layers["roads"]
    asks = {"zh-TW": ({}, {}), "en": ({"lang": "en"}, {}), "en-US": ({}, {"Accept-Language": "en-US,en;q=0.9"}),
            "zh-Hant": ({}, {"Accept-Language": "zh-Hant-TW"})}
    for language, (params, headers) in asks.items():
        zh = not language.startswith("en")
        title, base = (layer.title.zh_TW, "臺中市底圖") if zh else (layer.title.en, "Taichung base map")
        r = served.get("/collections/roads/tiles", params=params, headers=headers)
        assert {t["title"] for t in r.json()["tilesets"]} == {title}, language
        assert r.headers["content-language"] == ("zh-TW" if zh else "en-US")
        assert served.get("/collections/roads/tiles/TWD97TM2Quad", params=params,
                          headers=headers).json()["title"] == title
        assert {t["title"] for t in served.get("/tiles", params=params, headers=headers).json()["tilesets"]} == {base}
        assert served.get("/tiles/WebMercatorQuad", params=params, headers=headers).json()["title"] == base
        tj = served.get("/collections/roads/tiles/WebMercatorQuad/tilejson.json", params=params, headers=headers)
        assert tj.json()["description"] == (layer.description.zh_TW if zh else layer.description.en)
        assert tj.json()["vector_layers"][0]["description"] == title
        collection = served.get("/collections/roads", params={"f": "json", **params}, headers=headers).json()
        assert collection["title"] == title, language


def _lonlat(tile, x, y):
    b = WEB.xy_bounds(tile)
    mx = b.left + (b.right - b.left) * x / 4096
    my = b.bottom + (b.top - b.bottom) * y / 4096
    lon, lat = warp("EPSG:3857", "EPSG:4326", [mx], [my])
    return lon[0], lat[0]


def test_point_tile_features_match_postgis(served):
    tile = WEB.tile(*HALL, 16)
    r = served.get(f"/collections/addresses/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}")
    layer = mapbox_vector_tile.decode(r.content)["addresses"]
    truth = {k: (lon, lat, village) for k, lon, lat, village in rows(
        served, "SELECT address_key, ST_X(ST_Transform(geom, 4326)), ST_Y(ST_Transform(geom, 4326)), village "
                "FROM live.addresses")}
    assert layer["features"]
    pixel = (WEB.bounds(tile).right - WEB.bounds(tile).left) / 4096
    for f in layer["features"]:
        key = f["properties"]["address_key"]
        lon, lat = _lonlat(tile, *f["geometry"]["coordinates"])
        assert abs(lon - truth[key][0]) <= 2 * pixel and abs(lat - truth[key][1]) <= 2 * pixel
        assert f["properties"]["village"] == truth[key][2]


def test_polygon_tile_holds_every_building_it_touches(served):
    tile = WEB.tile(*HALL, 15)
    b = WEB.xy_bounds(tile)
    inside = {r[0] for r in rows(served, "SELECT building_id FROM live.buildings WHERE ST_Intersects(geom, "
                                         "ST_Transform(ST_MakeEnvelope(%s,%s,%s,%s,3857), 3826))", *b)}
    r = served.get(f"/collections/buildings/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}")
    got = {f["properties"]["building_id"] for f in mapbox_vector_tile.decode(r.content)["buildings"]["features"]}
    assert inside and inside <= got
    floors = dict(rows(served, "SELECT building_id, floors FROM live.buildings"))
    for f in mapbox_vector_tile.decode(r.content)["buildings"]["features"]:
        assert f["properties"]["floors"] == floors[f["properties"]["building_id"]]


def test_basemap_combines_layers(served):
    tile = WEB.tile(*HALL, 15)
    r = served.get(f"/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}")
    assert {"districts", "zoning", "roads", "buildings"} <= set(mapbox_vector_tile.decode(r.content))
    low = WEB.tile(*HALL, 9)
    assert "buildings" not in mapbox_vector_tile.decode(served.get(f"/tiles/WebMercatorQuad/9/{low.y}/{low.x}").content)


@pytest.mark.parametrize("path, status, text", [
    ("/collections/roads/tiles/WebMercatorQuad/12/99999/0", 404, "outside"),
    ("/collections/roads/tiles/WebMercatorQuad/30/0/0", 404, "outside"),
    ("/collections/roads/tiles/NoSuchTMS/12/0/0", 404, "unknown tile matrix set"),
    ("/collections/nope/tiles/WebMercatorQuad/12/0/0", 401, "authenticate"),
    ("/collections/satellite/tiles/WebMercatorQuad/12/0/0", 400, "raster layer"),
    ("/collections/buildings/tiles/WebMercatorQuad/5/13/26", 404, "from tileMatrix 13"),
    ("/collections/roads/tiles/WebMercatorQuad/12/1762/3420?f=png", 400, "f:"),
    ("/rasters/roads/info", 400, "vector layer"),
    ("/rasters/nope/tiles/WebMercatorQuad/12/3420/1762.png", 401, "authenticate"),
    ("/rasters/satellite/tiles/WebMercatorQuad/12/3420/1762.gif", 400, "format: Input should be 'png'"),
])
def test_bad_tile_requests_are_4xx(served, path, status, text):
    r = served.get(path)
    assert r.status_code == status, r.text
    assert text in r.text


def test_raster_tiles_formats_and_no_url_parameter(served):
    tile = WEB.tile(*HALL, 15)
    for ext, media in (("png", "image/png"), ("jpg", "image/jpeg"), ("webp", "image/webp")):
        r = served.get(f"/rasters/satellite/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.{ext}")
        assert r.status_code == 200 and r.headers["content-type"] == media
    r = served.get("/rasters/satellite/info", params={"url": "/etc/passwd"})
    assert r.status_code == 200 and r.json()["crs"].endswith("3826")  # the catalog's COG, whatever url says


def test_gdal_wmts_reads_the_source_pixels(served, tmp_path):
    src_path = source_of(served.city, "satellite")
    url = f"WMTS:{served.url}/wmts/1.0.0/WMTSCapabilities.xml,layer=satellite,tilematrixset=TWD97TM2Quad"
    with rasterio.open(src_path) as src:
        rng = np.random.default_rng(3)
        xs = rng.uniform(src.bounds.left + 100, src.bounds.right - 100, 60)
        ys = rng.uniform(src.bounds.bottom + 100, src.bounds.top - 100, 60)
        # sample at pixel centres so that nearest-neighbour resampling has one right answer
        cols, rws = ((xs - src.bounds.left) // 10).astype(int), ((src.bounds.top - ys) // 10).astype(int)
        xs, ys = src.bounds.left + cols * 10 + 5, src.bounds.top - rws * 10 - 5
        expected = np.array(list(src.sample(zip(xs, ys))))
    with rasterio.open(url) as wmts:
        level = next(i for i, f in enumerate(wmts.overviews(1)) if wmts.res[0] * f >= 2.5)
        with rasterio.open(url, overview_level=level) as ds:
            got = np.array(list(ds.sample(zip(xs, ys), indexes=[1, 2, 3])))
    agree = np.mean(np.all(np.abs(got.astype(int) - expected.astype(int)) <= 2, axis=1))
    assert agree >= 0.9, agree


def test_web_mercator_raster_tiles_match_the_source_and_are_transparent_beyond_it(served):
    """WebMercatorQuad tiles come from the web-optimized COG: the same pixels as the source, and no
    black margin where the Web Mercator grid reaches past the image."""
    with rasterio.open(source_of(served.city, "satellite")) as src:
        b = src.bounds
        (lon,), (lat,) = warp(src.crs, "EPSG:4326", [b.left + 40], [(b.bottom + b.top) / 2])
        tile = WEB.tile(lon, lat, 16)  # straddles the image's west edge
        r = served.get(f"/rasters/satellite/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png")
        assert r.status_code == 200
        with rasterio.MemoryFile(r.content) as mem, mem.open() as png:
            rgba = png.read()
        assert rgba.shape[0] == 4, "a tile at the image's edge carries an alpha band"
        alpha = rgba[3]
        assert (alpha == 0).mean() > 0.05 and (alpha == 255).mean() > 0.2
        box = WEB.xy_bounds(tile)
        size = alpha.shape[0]
        rows_, cols = np.nonzero(alpha == 255)
        pick = np.random.default_rng(5).choice(len(rows_), 40, replace=False)
        xs = box.left + (cols[pick] + 0.5) * (box.right - box.left) / size
        ys = box.top - (rows_[pick] + 0.5) * (box.top - box.bottom) / size
        sx, sy = warp("EPSG:3857", src.crs, xs, ys)
        expected = np.array(list(src.sample(zip(sx, sy))))
    got = rgba[:3, rows_[pick], cols[pick]].T
    close = np.mean(np.all(np.abs(got.astype(int) - expected.astype(int)) <= 12, axis=1))
    assert close >= 0.8, close
    west = np.nonzero(alpha.any(axis=0))[0].min()
    assert west > 0, "the columns west of the image are transparent"


def test_cache_invalidation_follows_the_changed_area(served, tmp_path):
    moved = rows(served, "SELECT landmark_id, name, category, address, ST_X(geom), ST_Y(geom) FROM live.landmarks "
                         "WHERE name = '臺中市政府'")[0]
    inside = WEB.tile(*HALL, 14)
    far = WEB.tile(120.52, 24.29, 14)
    assert far != inside

    def get(tile):
        return served.get(f"/collections/landmarks/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}")
    first_in, first_far = get(inside), get(far)
    assert get(inside).headers["x-tile-cache"] == "hit" and get(far).headers["x-tile-cache"] == "hit"
    src = source_of(served.city, "landmarks")
    edited = tmp_path / "landmarks.csv"
    edited.write_text(_move(src, moved[0], 60.0), encoding="utf-8-sig")
    env = {"GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir)}
    out = geocloud_cli("etl", "run", "landmarks", edited, env=env)
    assert out.returncode == 0, out.stderr
    time.sleep(2.5)  # workers re-read the live state every two seconds
    after_in, after_far = get(inside), get(far)
    assert after_in.headers["x-tile-cache"] == "miss" and after_in.content != first_in.content
    assert after_far.headers["x-tile-cache"] == "hit" and after_far.headers["etag"] == first_far.headers["etag"]
    assert geocloud_cli("etl", "rollback", "landmarks", env=env).returncode == 0
    time.sleep(2.5)
    back = get(inside)
    assert back.headers["x-tile-cache"] == "miss"
    assert mapbox_vector_tile.decode(back.content) == mapbox_vector_tile.decode(first_in.content)
    assert get(far).headers["x-tile-cache"] == "hit"


def _move(src, landmark_id, dx):
    lines = src.read_text(encoding="utf-8-sig").splitlines()
    for i, line in enumerate(lines):
        cells = line.split(",")
        if cells[0] == landmark_id:
            cells[4] = f"{float(cells[4]) + dx:.3f}"
            lines[i] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_seed_fills_the_cache(served):
    env = {"GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir)}
    out = geocloud_cli("tiles", "seed", "roads", "--zoom", "11-12", "--bbox", "120.60,24.12,120.70,24.20", env=env)
    assert out.returncode == 0, out.stderr
    tile = WEB.tile(120.65, 24.16, 12)
    assert served.get(f"/collections/roads/tiles/WebMercatorQuad/12/{tile.y}/{tile.x}").headers["x-tile-cache"] == "hit"
    bad = geocloud_cli("tiles", "seed", "roads", "--zoom", "x", env=env)
    assert bad.returncode == 3 and "--zoom" in bad.stderr
    assert os.path.isdir(served.data_dir / "tile-cache" / "vector" / "roads")


def test_a_tile_has_the_same_bytes_whatever_order_the_rows_are_stored_in(served):
    """A strong ETag promises the same bytes from every node: a replica, a restored copy or a
    re-clustered table store the rows in another order than the primary, and the tile must not
    follow it."""
    tile = WEB.tile(*HALL, 15)
    path = f"/collections/buildings/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}"
    cache = served.data_dir / "tile-cache"

    def fresh():
        for f in cache.rglob("*"):
            if f.is_file():
                f.unlink()
        r = served.get(path)
        assert r.status_code == 200
        return r.content, r.headers["etag"]
    before, etag = fresh()
    assert len(mapbox_vector_tile.decode(before)["buildings"]["features"]) > 1
    with psycopg.connect(served.db_url, autocommit=True) as conn:  # the same rows, stored backwards
        cols = ", ".join(f'"{c}"' for (c,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'live' "
            "AND table_name = 'buildings' AND is_generated = 'NEVER'"))
        conn.execute(f"CREATE TEMP TABLE b AS SELECT {cols} FROM live.buildings ORDER BY ctid DESC")
        conn.execute(f"BEGIN; DELETE FROM live.buildings; INSERT INTO live.buildings ({cols}) SELECT {cols} FROM b; "
                     "COMMIT")
    assert fresh() == (before, etag)


# --- the warm path (serve/tiles/warm.py): anonymous cached tiles before the guard and the router ---

def _answer(r) -> tuple:
    """Everything of an answer but what differs between any two: its request id and date."""
    headers = sorted((k, v) for k, v in r.headers.multi_items() if k not in ("x-request-id", "date"))
    return r.status_code, headers, r.content


@pytest.fixture
def in_process(served, monkeypatch):
    """This test process configured as the served city's server is (database, data dir, limits), to
    call the warm path directly as serve/observe.py does: ``call(path, headers, ...)`` gives (did it
    leave the request to the application, the messages of its answer)."""
    import asyncio

    from geocloud.config import get_settings
    from geocloud.serve import state
    from geocloud.serve.tiles.warm import WarmTiles

    monkeypatch.setenv("GEOCLOUD_DATABASE_URL", served.db_url)
    monkeypatch.setenv("GEOCLOUD_DATA_DIR", str(served.data_dir))
    monkeypatch.setenv("GEOCLOUD_RATE_LIMIT_ANONYMOUS", "1000000")
    get_settings.cache_clear()
    get_catalog.cache_clear()

    def call(path, headers=(), method="GET", query=b"", client="192.0.2.10"):
        # the live state as of now: a snapshot this process read for an earlier test may be up to
        # state.REFRESH seconds old (the server follows a publish within that time; a test asks at once)
        state._current = None
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query,
                 "headers": [(b"host", b"tiles.test"), *headers], "client": (client, 40000), "scheme": "http"}
        found = asyncio.run(WarmTiles().answer(scope))
        if found is None:
            return True, []
        return False, [{"status": found[0], "headers": found[1]}, {"body": found[2]}]
    yield call
    monkeypatch.undo()
    get_settings.cache_clear()
    get_catalog.cache_clear()


def test_the_warm_path_answers_a_cached_public_tile_as_the_route_does(served, in_process, monkeypatch):
    from geocloud.config import get_settings

    inside = WEB.tile(*HALL, 14)
    key = {"X-API-Key": served.keys["fire"]}  # a caller with credentials always takes the full stack
    for path in (f"/collections/landmarks/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x}",
                 f"/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x}?f=mvt"):
        first = served.get(path)
        assert first.status_code == 200 and first.content, first.text
        anonymous, keyed = served.get(path), served.get(path, headers=key)
        assert anonymous.headers["x-tile-cache"] == "hit" and _answer(anonymous) == _answer(keyed)
        assert anonymous.headers["cache-control"] == "public, no-cache"
        assert "Authorization" in anonymous.headers["vary"] and anonymous.headers["x-content-type-options"] == "nosniff"
        head = httpx.head(served.url + path, timeout=30)
        assert _answer(head) == _answer(httpx.head(served.url + path, headers=key, timeout=30))
        assert head.status_code == 200 and head.content == b""
        etag = {"If-None-Match": anonymous.headers["etag"]}
        unchanged = served.get(path, headers=etag)
        assert unchanged.status_code == 304 and unchanged.content == b""
        assert _answer(unchanged) == _answer(served.get(path, headers={**etag, **key}))
        # and it is the warm path that answered the anonymous caller; anything else goes on to the app
        route, query = path.split("?")[0], path.partition("?")[2].encode()
        went_on, sent = in_process(route, query=query)
        assert not went_on and sent[0]["status"] == 200 and sent[1]["body"] == anonymous.content
        # its answer is whole, the shared headers in (observe.py adds only the request id)
        assert sorted((k.decode(), v.decode()) for k, v in sent[0]["headers"]) == _answer(anonymous)[1]
        went_on, sent = in_process(route, [(b"if-none-match", anonymous.headers["etag"].encode())], query=query)
        assert not went_on and sent[0]["status"] == 304
        assert not in_process(route, method="HEAD", query=query)[0]
        for headers, query_string in (([(b"x-api-key", b"gc_whatever")], query), ([(b"authorization", b"Bearer x")], query),
                                      ([(b"cookie", b"geocloud_session=abc")], query), ([], b"token=abc"),
                                      ([], b"api_key=abc"), ([], b"f=png"), ([(b"if-modified-since", b"x")], query),
                                      ([(b"range", b"bytes=0-10")], query)):
            assert in_process(route, headers, query=query_string)[0], (headers, query_string)
        assert in_process(route, method="POST", query=query)[0]
        origin = {"Origin": "https://map.example"}  # a browser's cross-origin fetch: CORS headers, as the app's
        went_on, sent = in_process(route, [(b"origin", b"https://map.example")], query=query)
        assert not went_on and dict(sent[0]["headers"])[b"access-control-allow-origin"] == b"*"
        assert sorted((k.decode(), v.decode()) for k, v in sent[0]["headers"]) == _answer(served.get(path, headers=origin))[1]
        with monkeypatch.context() as env:  # through a trusted proxy, over HTTPS: the answer says so
            env.setenv("GEOCLOUD_TRUSTED_PROXIES", "192.0.2.0/24")
            get_settings.cache_clear()
            went_on, sent = in_process(route, [(b"x-forwarded-proto", b"https")], query=query)
            assert not went_on and dict(sent[0]["headers"])[b"strict-transport-security"] == b"max-age=31536000"
            plain = in_process(route, [(b"x-forwarded-proto", b"https")], query=query, client="198.51.100.1")[1]
            assert b"strict-transport-security" not in dict(plain[0]["headers"])  # not from a trusted proxy
        get_settings.cache_clear()
    raster = f"/rasters/satellite/tiles/WebMercatorQuad/{inside.z}/{inside.x}/{inside.y}.png"
    assert served.get(raster).status_code == 200
    anonymous, keyed = served.get(raster), served.get(raster, headers=key)
    assert anonymous.headers["x-tile-cache"] == "hit" and _answer(anonymous) == _answer(keyed)
    etag = {"If-None-Match": anonymous.headers["etag"]}
    assert _answer(served.get(raster, headers=etag)) == _answer(served.get(raster, headers={**etag, **key}))
    went_on, sent = in_process(raster)
    assert not went_on and sent[0]["status"] == 200 and sent[1]["body"] == anonymous.content
    assert in_process(raster, method="HEAD")[0] and in_process(raster, query=b"f=mvt")[0]  # not what the cache keeps


def test_anonymous_callers_never_get_an_internal_layers_cached_tile(served, in_process):
    spot = rows(served, "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Transform(ST_Centroid(geom), 4326) c "
                        "FROM live.road_works LIMIT 1) s")[0]
    tile = WEB.tile(*spot, 14)
    path = f"/collections/road_works/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}"
    fire = {"X-API-Key": served.keys["fire"]}
    served.get(path, headers=fire)
    cached = served.get(path, headers=fire)
    assert cached.headers["x-tile-cache"] == "hit" and cached.content
    assert cached.headers["cache-control"] == "private, no-cache"
    refused = served.get(path)
    assert refused.status_code == 401 and cached.content not in refused.content
    assert "authenticate" in refused.json()["description"] and "www-authenticate" in refused.headers
    assert in_process(path)[0]  # not for the warm path: on to the guard


def test_a_layer_made_internal_is_no_longer_served_from_the_cache(served, tmp_path, in_process):
    from test_registry import BIKES, STATIONS, tile_of, write_csv

    from geocloud.catalog import core_catalog, registry

    def register(level):
        with psycopg.connect(served.db_url, autocommit=True) as conn:
            registry.register(conn, {**BIKES, "access": {"level": level}}, "TCG-TRANS", "tester", core_catalog(),
                              where="test")
    path = f"/collections/bike_stations/tiles/WebMercatorQuad/{tile_of(*STATIONS[0][2:4])}"
    register("public")
    env = {"GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir)}
    try:
        loaded = geocloud_cli("etl", "run", "bike_stations", write_csv(tmp_path), env=env)
        assert loaded.returncode == 0, loaded.stderr
        deadline = time.monotonic() + 10
        while served.get(path).status_code != 200:  # the server follows the registry and the publish
            assert time.monotonic() < deadline, served.get(path).text
            time.sleep(0.2)
        cached = served.get(path)
        assert cached.headers["x-tile-cache"] == "hit" and cached.content
        assert not in_process(path)[0]  # the warm path answers it
        register("internal")
        changed = time.monotonic()
        while (r := served.get(path)).status_code == 200:
            assert time.monotonic() - changed < 2 * 2.5, "still served after the live state's refresh"
            time.sleep(0.05)
        assert r.status_code == 401 and cached.content not in r.content
        assert all(served.get(path).status_code == 401 for _ in range(5))
        fire = served.get(path, headers={"X-API-Key": served.keys["fire"]})  # a city agency still reads it
        assert fire.status_code == 200 and fire.content == cached.content
    finally:
        with psycopg.connect(served.db_url, autocommit=True) as conn:
            registry.retire(conn, "bike_stations", "tester", core_catalog())


def test_the_anonymous_rate_limit_counts_warm_tiles(served, in_process, monkeypatch):
    from geocloud.config import get_settings

    inside = WEB.tile(*HALL, 14)
    path = f"/collections/landmarks/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x}"
    served.get(path)
    monkeypatch.setenv("GEOCLOUD_RATE_LIMIT_ANONYMOUS", "3")
    get_settings.cache_clear()
    answers = [in_process(path, client="192.0.2.77") for _ in range(4)]
    assert not any(went_on for went_on, _ in answers)
    assert [sent[0]["status"] for _, sent in answers] == [200, 200, 200, 429]
    refused = answers[-1][1]
    assert b"retry-after" in dict(refused[0]["headers"]) and b"more than 3 requests" in refused[1]["body"]
    assert in_process(path, client="192.0.2.78")[1][0]["status"] == 200  # another address has its own count


def test_a_layer_statement_is_composed_once_for_the_tiles_of_a_zoom(served, monkeypatch):
    """psycopg's SQL composition was a third of a cold tile's Python: a layer's statement is composed
    once per table and zoom class and reused for every tile (psycopg then prepares it too), and the
    tiles it makes in-process are the server's, byte for byte."""
    from geocloud.config import get_settings
    from geocloud.serve.tiles import vectortiles

    monkeypatch.setenv("GEOCLOUD_DATABASE_URL", served.db_url)
    monkeypatch.setenv("GEOCLOUD_DATA_DIR", str(served.data_dir))
    get_settings.cache_clear()
    try:
        layer = get_catalog().layers["buildings"]
        centre = WEB.tile(*HALL, 15)
        tiles = [type(centre)(centre.x + dx, centre.y + dy, 15) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        vectortiles._statement.cache_clear()
        made = [vectortiles.render([layer], WEB, t) for t in tiles]
        info = vectortiles._statement.cache_info()
        assert (info.misses, info.hits) == (1, len(tiles) - 1)
        assert sum(len(mapbox_vector_tile.decode(m)["buildings"]["features"]) for m in made if m) > len(tiles)
        for t, mine in zip(tiles, made):
            r = served.get(f"/collections/buildings/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}")
            assert r.status_code in (200, 204) and r.content == mine, t
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_tile_is_one_round_trip_of_the_versions_the_request_saw(served, monkeypatch, tmp_path):
    """A cold tile of two layers is one statement, where a transaction, its statements and its COMMIT
    were three round trips (half of PostgreSQL's time on a light tile). A switch that comes in after
    the request read the live state still gives the request's versions: the statement finds the
    version elsewhere, and reads it there."""
    from contextlib import contextmanager

    from psycopg import pq

    from geocloud.config import get_settings
    from geocloud.db.pool import get_pool
    from geocloud.etl.publish import rollback
    from geocloud.serve import state
    from geocloud.serve.tiles import vectortiles

    env = {"GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir)}
    moved = rows(served, "SELECT landmark_id FROM live.landmarks WHERE name = '臺中市政府'")[0][0]
    edited = tmp_path / "landmarks.csv"
    edited.write_text(_move(source_of(served.city, "landmarks"), moved, 90.0), encoding="utf-8-sig")
    assert geocloud_cli("etl", "run", "landmarks", edited, env=env).returncode == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    trace = tmp_path / "protocol.txt"

    @contextmanager
    def traced():
        with get_pool().connection() as conn, trace.open("a") as out:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                yield conn
            finally:
                conn.pgconn.untrace()

    def round_trips(render):
        trace.write_text("")
        made = render()
        sent = [line.split("\t")[2] for line in trace.read_text().splitlines() if line.startswith("F\t")]
        return made, sum(kind in ("Query", "Sync") for kind in sent)
    monkeypatch.setattr(vectortiles, "get_pool", lambda: type("Traced", (), {"connection": staticmethod(traced)}))
    catalog = get_catalog()
    layers, tile = [catalog.layers["roads"], catalog.layers["landmarks"]], WEB.tile(*HALL, 14)
    try:
        state._current = None
        pinned = state.pin()
        before, trips = round_trips(lambda: vectortiles.render(layers, WEB, tile))
        assert trips == 1 and set(mapbox_vector_tile.decode(before)) == {"roads", "landmarks"}
        with psycopg.connect(served.db_url, autocommit=True) as conn:
            rollback(conn, catalog.layers["landmarks"], None, "tester")  # the request's version is history now
        again, trips = round_trips(lambda: vectortiles.render(layers, WEB, tile))
        assert (again, trips) == (before, 2)  # read where the version was, then where it is
        with psycopg.connect(served.db_url, autocommit=True) as conn:  # the version now live predates a field
            conn.execute("ALTER TABLE live.landmarks RENAME COLUMN category TO category_later")
        try:  # the statement naming that field in live.landmarks fails: ask where the versions are, read there
            again, trips = round_trips(lambda: vectortiles.render(layers, WEB, tile))
        finally:
            with psycopg.connect(served.db_url, autocommit=True) as conn:
                conn.execute("ALTER TABLE live.landmarks RENAME COLUMN category_later TO category")
        assert (again, trips) == (before, 3)
        state.unpin(pinned)
        state._current = None
        after, trips = round_trips(lambda: vectortiles.render(layers, WEB, tile))
        assert trips == 1 and after != before  # a new request sees the version rolled back to
    finally:
        state._current = None
        get_settings.cache_clear()


@pytest.mark.parametrize("last", ["\u00b2.png", "1762%00.png", "1" * 5000 + ".png"])
def test_odd_raster_tile_numbers_are_a_client_error(served, last):
    """A superscript digit ('²'.isdigit() is true, int('²') fails), a NUL, or more digits than int()
    takes: the tile cache and the warm path leave these to titiler's validation, a 4xx, never a 500."""
    for _ in range(2):  # the second time through the warm path too
        r = served.get(f"/rasters/satellite/tiles/WebMercatorQuad/12/3420/{last}")
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])


@pytest.fixture
def own_server(served, in_process):
    """``geocloud serve``'s application and protocol (serve/protocol.py) in a thread of this process,
    over the served city, with a keep-alive time of 1 s: yields (host, port, the paths each asyncio
    task was started for, the uvicorn Server). Counting tasks shows which requests the protocol
    answered itself."""
    import asyncio
    import socket
    import threading

    import uvicorn

    from geocloud.serve.observe import create_app
    from geocloud.serve.protocol import OneWrite

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, http=OneWrite, proxy_headers=False,
                            server_header=False, access_log=False, log_level="warning", timeout_keep_alive=1)
    server = uvicorn.Server(config)
    tasks = []

    def run():
        loop = asyncio.new_event_loop()

        def factory(loop, coro, **kwargs):
            if coro.__qualname__ == "RequestResponseCycle.run_asgi":  # a request's task: its path
                tasks.append(coro.cr_frame.f_locals["self"].scope["path"])
            return asyncio.Task(coro, loop=loop, **kwargs)
        loop.set_task_factory(factory)
        loop.run_until_complete(server.serve())
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the in-process server did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port, tasks, server
    server.should_exit = True
    thread.join(timeout=30)


def test_the_protocol_answers_warm_tiles_itself_and_the_rest_in_tasks(served, own_server):
    """serve/protocol.py writes a warm tile's answer as the request is read, without the application's
    task (its creation and the ASGI messages were half of a warm tile's CPU). Its answer is the
    application's, header for header; everything else still runs as a task, in the order asked."""
    import socket

    host, port, tasks, _ = own_server
    inside = WEB.tile(*HALL, 14)
    tile = f"/collections/landmarks/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x}"
    base = f"http://{host}:{port}"
    assert httpx.get(base + tile, timeout=30).status_code == 200  # in the tile cache now
    tasks.clear()
    warm = httpx.get(base + tile, timeout=30)
    assert warm.headers["x-tile-cache"] == "hit" and tasks == []  # no task for it
    keyed = httpx.get(base + tile, headers={"X-API-Key": served.keys["fire"]}, timeout=30)
    assert _answer(warm) == _answer(keyed) and tasks == [tile]  # a caller with a key: the app
    crossed = httpx.get(base + tile, headers={"Origin": "https://map.example"}, timeout=30)
    assert crossed.headers["access-control-allow-origin"] == "*" and crossed.content == warm.content
    assert tasks == [tile] * 2  # CORS is the ASGI middleware's, in a task
    unchanged = httpx.get(base + tile, headers={"If-None-Match": warm.headers["etag"]}, timeout=30)
    assert unchanged.status_code == 304 and unchanged.content == b"" and len(tasks) == 2
    # pipelined on one connection: a task's answer, then three the protocol writes (a HEAD, and the
    # last asking to close), in order
    get = f"GET {{}} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    raw = (get.format("/conformance") + get.format(tile) + get.format(tile).replace("GET", "HEAD", 1)
           + get.format(tile).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(raw)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    heads = [part.split(b"\r\n", 1)[0] for part in got.split(b"HTTP/1.1 ")[1:]]
    assert heads == [b"200 OK"] * 4 and got.index(b"conformsTo") < got.index(warm.content)
    assert got.count(warm.content) == 2 and tasks[2:] == ["/conformance"], tasks
    # a pipeline of thousands of warm tiles queued behind a task is answered whole, in order, and
    # every PER_TURN answers one is a task, so that other connections get their turns meanwhile
    from geocloud.serve.protocol import PER_TURN

    tasks.clear()
    many = 3000
    raw = (get.format("/conformance") + get.format(tile) * many
           + get.format(tile).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(raw)
        got = b""
        while chunk := sock.recv(1 << 20):
            got += chunk
    assert got.count(b"HTTP/1.1 200 OK") == many + 2 and got.count(warm.content) == many + 1
    assert got.index(b"conformsTo") < got.index(warm.content)
    assert tasks[0] == "/conformance" and set(tasks[1:]) == {tile}
    assert many // (PER_TURN + 1) <= len(tasks) - 1 <= many // 2, len(tasks)
    tasks.clear()
    # HTTP/1.0: the answer, then the connection closes
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"GET {tile} HTTP/1.0\r\n\r\n".encode())
        old = b""
        while chunk := sock.recv(65536):
            old += chunk
    assert old.startswith(b"HTTP/1.1 200 OK") and b"connection: close\r\n" in old and old.endswith(warm.content)
    assert tasks == []


def test_keep_alive_closes_an_idle_connection_and_keeps_a_busy_one(own_server):
    """The protocol keeps one keep-alive timer per connection instead of one per request: a connection
    idle for the keep-alive time (1 s here) is still closed, one asking every 0.4 s is not."""
    import socket

    host, port, _, _ = own_server
    inside = WEB.tile(*HALL, 14)
    request = f"GET /collections/landmarks/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x} HTTP/1.1\r\n" \
              f"Host: {host}\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        for _ in range(6):  # 2.4 s in all, more than twice the keep-alive time
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 "), "the busy connection was closed"
            time.sleep(0.4)
        started = time.monotonic()
        assert sock.recv(65536) == b""  # then idle: closed by the server
        assert 0.4 <= time.monotonic() - started < 2.5


def test_a_client_that_sends_without_reading_cannot_make_the_server_hold_answers(own_server):
    """Warm answers written as requests are read must not pile up for a client that pipelines
    requests and reads nothing (about 20 bytes of answer for each byte asked): once the socket's
    buffers are full the protocol leaves the next request to a task, which waits for the client,
    and uvicorn stops reading behind it."""
    import socket
    import threading

    host, port, tasks, server = own_server
    inside = WEB.tile(*HALL, 14)
    tile = f"/collections/landmarks/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x}"
    get = f"GET {tile} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    assert httpx.get(f"http://{host}:{port}{tile}", timeout=30).status_code == 200  # cached
    many = 40000
    raw = (get * many + get.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).encode()
    tasks.clear()
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sender = threading.Thread(target=sock.sendall, args=(raw,), daemon=True)
        sender.start()
        time.sleep(2)
        # what the server holds for its connections: the transport's buffer, and what _Held keeps
        held = [p.transport.get_write_buffer_size() + p.transport._size for p in list(server.server_state.connections)]
        assert held and max(held) < 2 << 20, held  # a few buffers' worth, not the 30 MB asked
        assert tasks, "no request was left to a task while the client was not reading"
        got = bytearray()
        while chunk := sock.recv(1 << 20):
            got += chunk
        sender.join(timeout=30)
    assert got.count(b"HTTP/1.1 200 OK") == many + 1


def test_a_rate_limited_warm_tile_gets_a_framed_429_on_a_kept_connection(own_server, monkeypatch):
    """The anonymous rate limit's 429, written by the protocol as the request is read, says its
    length (uvicorn would have sent it chunked): a client on the same connection reads it whole and
    goes on."""
    import socket

    from geocloud.config import get_settings

    host, port, tasks, _ = own_server
    inside = WEB.tile(*HALL, 14)
    tile = f"/collections/landmarks/tiles/WebMercatorQuad/{inside.z}/{inside.y}/{inside.x}"
    assert httpx.get(f"http://{host}:{port}{tile}", timeout=30).status_code == 200  # cached
    monkeypatch.setenv("GEOCLOUD_RATE_LIMIT_ANONYMOUS", "1")  # this address is over it already
    get_settings.cache_clear()
    tasks.clear()
    get = f"GET {tile} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall((get + get.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).encode())
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert tasks == []  # both written by the protocol
    for _ in range(2):
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429 "), got[:300]
        length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length:")).split(b":")[1])
        body, got = rest[:length], rest[length:]
        assert b"more than 1 requests" in body and body.endswith(b"}")
    assert got == b""
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=3) as client:  # one connection, no wait
        started = time.monotonic()
        assert [client.get(tile).status_code for _ in range(3)] == [429] * 3
        assert time.monotonic() - started < 1.5


def test_the_protocol_encodes_an_answers_header_tuple_once():
    """serve/protocol.py keeps the encoding of headers given as a tuple (a cached tile's answer, handed
    again for every request) and reuses it while the same tuple comes again; a list is encoded each
    time; what is kept is bounded."""
    from geocloud.serve import protocol

    protocol._encoded_heads.clear()
    headers = ((b"etag", b'"a"'), (b"content-length", b"3"))
    first = protocol._encoded(headers)
    assert first == (b'etag: "a"\r\ncontent-length: 3\r\n', True)
    assert protocol._encoded(headers)[0] is first[0]  # the kept encoding, not a new one
    listed = [(b"etag", b'"a"')]
    assert protocol._encoded(listed) == (b'etag: "a"\r\n', False)
    assert protocol._encoded(listed)[0] is not protocol._encoded(listed)[0]  # a list may change: made anew
    for i in range(protocol.ENCODED + 10):
        protocol._encoded(((b"etag", b"%d" % i),))
    assert 0 < len(protocol._encoded_heads) <= protocol.ENCODED
