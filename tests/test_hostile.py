"""Hostile input against the routes the OpenAPI document does not describe (tiles, rasters, WMTS,
geocoding, downloads, metadata, styles, tokens): each answer is a 4xx naming what is wrong, never
a 500 and never a traceback in the log; work-scaling parameters are bounded; a restricted layer
answers exactly as an unknown one; and a 500, should one happen, says ``Connection: close``.
"""

import socket
import time

import httpx
import psycopg
import pytest
from test_access import fill, method_of, routes

from geocloud.serve.tiles.tms import SERVED

HALL = (120.647296502, 24.1619892378)
WEB_TILE = SERVED["WebMercatorQuad"].tile(*HALL, 15)
RASTER_TILE = f"/rasters/satellite/tiles/WebMercatorQuad/{WEB_TILE.z}/{WEB_TILE.x}/{WEB_TILE.y}.png"
POINT = f"/rasters/satellite/point/{HALL[0]},{HALL[1]}"

# (method, path, expected status, parameter the description starts with)
HOSTILE = [
    # rasters: the tile address, the point, band indexes, nodata, and every size that scales work
    ("GET", "/rasters/satellite/tiles/WebMercatorQuad/-1/0/0.png", 400, "z"),
    ("GET", "/rasters/satellite/tiles/WebMercatorQuad/0/-1/0.png", 400, "x"),
    ("GET", f"{RASTER_TILE[:-4]}%00.png", 400, "y"),
    ("GET", "/rasters/satellite/tiles/WebMercatorQuad/99999999999999999999999/0/0.png", 404, "tileMatrix"),
    ("GET", "/rasters/satellite/point/NaN,NaN", 400, "lon"),
    ("GET", "/rasters/satellite/point/1e308,1e308", 400, "lon"),
    ("GET", "/rasters/satellite/point/inf,0", 400, "lon"),
    ("GET", f"{POINT}?bidx=99", 400, "bidx"),
    ("GET", f"{RASTER_TILE}?bidx=99", 400, "bidx"),
    ("GET", f"{RASTER_TILE}?bidx=0", 400, "bidx"),
    ("GET", "/rasters/satellite/statistics?bidx=99", 400, "bidx"),
    ("GET", f"{RASTER_TILE}?expression=b99", 400, "expression"),
    ("GET", f"{RASTER_TILE}?nodata=NaN", 400, "nodata"),
    ("GET", "/rasters/satellite/preview.png?nodata=NaN", 400, "nodata"),
    ("GET", "/rasters/satellite/preview.png?nodata=300", 400, "nodata"),
    ("GET", f"{RASTER_TILE}?tilesize=16384", 400, "tilesize"),
    ("GET", f"{RASTER_TILE}?buffer=1e9", 400, "buffer"),
    ("GET", f"{RASTER_TILE}?padding=100000", 400, "padding"),
    ("GET", "/rasters/satellite/preview.png?width=16000&height=16000", 400, "width"),
    ("GET", "/rasters/satellite/preview/16000x16000.png", 400, "width"),
    ("GET", "/rasters/satellite/preview.png?max_size=100000", 400, "max_size"),
    ("GET", "/rasters/satellite/statistics?max_size=100000", 400, "max_size"),
    ("GET", "/rasters/satellite/statistics?histogram_bins=100000000", 400, "histogram_bins"),
    ("GET", "/rasters/satellite/statistics?p=200", 400, "p"),
    ("GET", "/rasters/satellite/WebMercatorQuad/tilejson.json?tilesize=99999", 400, "tilesize"),
    ("GET", "/rasters/satellite/WebMercatorQuad/tilejson.json?minzoom=-5", 400, "minzoom"),
    ("GET", f"{RASTER_TILE[:-4]}.gif", 400, "format"),
    ("GET", f"{RASTER_TILE}?rescale=a", 400, "rescale"),
    ("GET", "/rasters/satellite/tiles/NoSuchTMS/1/0/0.png", 400, "tileMatrixSetId"),
    # vector tiles
    ("GET", "/collections/roads/tiles/WebMercatorQuad/99999999999999999999/0/0", 404, "tileMatrix"),
    ("GET", "/collections/roads/tiles/WebMercatorQuad/12/99999999999999999999999/0", 404, "tile"),
    ("GET", "/collections/roads/tiles/WebMercatorQuad/12/0/0?f=png", 400, "f"),
    ("GET", f"/collections/roads/tiles/WebMercatorQuad/12/{'9' * 5000}/0", 404, "Not Found"),  # int() refuses
    ("GET", f"/manage/runs/{'9' * 5000}", 404, "Not Found"),
    ("GET", "/tiles/WebMercatorQuad/12/0/0?f=%00", 400, "f"),
    ("GET", "/tileMatrixSets/%00", 404, "unknown tile matrix set"),
    # geocoding
    ("GET", "/reverse?x=NaN&y=NaN&crs=EPSG:3826", 400, "x"),
    ("GET", "/reverse?x=1e308&y=1e308&crs=EPSG:3826", 400, "x"),
    ("GET", "/reverse?lon=NaN&lat=NaN", 400, "lon"),
    ("GET", "/reverse?lon=120.6%00&lat=24.1", 400, "lon"),
    ("GET", "/geocode?address=%00", 400, "address"),
    ("GET", "/geocode?address=x&candidates=99999999999999999999", 400, "candidates"),
    # downloads share the items checks
    ("GET", "/collections/buildings/download?offset=99999999999999999999999", 400, "offset"),
    ("GET", "/collections/buildings/download?filter=floors%20%3D%2099999999999999999999999999999", 400, "filter"),
    ("GET", "/collections/buildings/download?f=csv&filter=S_INTERSECTS(geom,POLYGON((0%200,1%201)))", 400, "filter"),
    ("GET", "/collections/buildings/download?f=gpkg&floors=abc", 400, "floors"),
    ("GET", "/collections/buildings/download?filter=usage%3D%27a%00%27", 400, "filter"),
    ("GET", "/collections/buildings/download?f=%00", 400, "f"),
    # tokens
    ("POST", "/auth/token?expires_in=99999999999999999999999", 400, "expires_in"),
    ("POST", "/auth/token?expires_in=NaN", 400, "expires_in"),
    ("POST", "/auth/token?layers=%00", 400, "layers"),
]


def traceback_count(served) -> int:
    return (served.data_dir / "server.log").read_text(encoding="utf-8", errors="replace").count("Traceback")


@pytest.mark.parametrize("method, path, status, name", HOSTILE)
def test_hostile_input_is_a_4xx_naming_the_parameter(served, method, path, status, name):
    before = traceback_count(served)
    started = time.monotonic()
    r = httpx.request(method, served.url + path, headers={"X-API-Key": served.keys["fire"]}, timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["description"].startswith(name), r.text
    assert time.monotonic() - started < 5  # refused before any work, not after it
    assert traceback_count(served) == before, "a client's mistake logged a traceback"


@pytest.mark.parametrize("method, path", [
    ("POST", "/tiles/WebMercatorQuad/12/0/0"), ("DELETE", "/collections/roads/items"),
    ("PUT", "/collections/roads/items/1"), ("POST", "/wmts/1.0.0/WMTSCapabilities.xml"),
    ("GET", "/auth/token"), ("PATCH", "/styles/roads.json"), ("DELETE", RASTER_TILE),
    ("GET", "/metadata/services/%00.xml"), ("GET", "/styles/%00.json"), ("GET", "/map/static/%00"),
])
def test_wrong_methods_and_unknown_names_are_4xx(served, method, path):
    r = httpx.request(method, served.url + path, headers={"X-API-Key": served.keys["fire"]}, timeout=60)
    assert 400 <= r.status_code < 500 and r.json()["code"], r.text


def test_a_restricted_layer_answers_exactly_as_an_unknown_one_on_every_surface(served):
    """Anonymous: 401 with a challenge for both; a key that may not read the layer: 404 for both."""
    outsider = {"X-API-Key": served.keys["external"]}
    checked = 0
    for path in routes():  # the raster routes included (the raster app is mounted at /rasters)
        if not any(p in path for p in ("{collection_id}", "{layer_id}", "{name}")):
            continue
        secret_path = fill(path, "inspection_sites", served)
        unknown_path = secret_path.replace("inspection_sites", "no_such_layer")
        method = method_of(path)
        for headers, status in (({}, 401), (outsider, 404)):  # /manage too: a reader's PUT registers nothing
            secret = httpx.request(method, served.url + secret_path, headers=headers, timeout=60)
            unknown = httpx.request(method, served.url + unknown_path, headers=headers, timeout=60)
            assert secret.status_code == unknown.status_code == status, (path, secret.text, unknown.text)
            assert ("www-authenticate" in secret.headers) == ("www-authenticate" in unknown.headers) == (status == 401)
            checked += 1
    assert checked >= 44  # styles, tiles, tilesets, TileJSON, rasters, downloads, metadata, features


def _raw_get(sock: socket.socket, path: str) -> tuple[int, dict, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_a_server_error_closes_the_keep_alive_connection_it_announces(served):
    """A fault on the server (a live table gone) is a JSON 500 with ``Connection: close``, and the
    connection then ends; a client's mistake on the same kind of connection keeps it open."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        status, headers, _ = _raw_get(sock, "/collections/buildings/items?limit=0")
        assert status == 400 and headers.get("connection", "keep-alive") != "close"
        status, _, _ = _raw_get(sock, "/collections/buildings/items?limit=1")
        assert status == 200  # the same connection still serves
    with psycopg.connect(served.db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE live.topo_water RENAME TO topo_water_away")
        try:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                status, headers, body = _raw_get(sock, "/collections/topo_water/items?limit=1")
                assert status == 500 and headers["connection"] == "close", headers
                # sent from outside every middleware, it still carries the shared headers
                assert headers["x-content-type-options"] == "nosniff" and "x-api-key" in headers["vary"].lower()
                assert headers["content-type"] == "application/json" and b'"ServerError"' in body
                assert sock.recv(1) == b""  # and the server has closed it, as announced
        finally:
            conn.execute("ALTER TABLE live.topo_water_away RENAME TO topo_water")


def test_raster_statistics_body_is_bounded(served):
    """POST /statistics reads the COG once per feature: the body's size and feature count are capped."""
    url = served.url + "/rasters/satellite/statistics"
    ring = [[120.64, 24.16], [120.65, 24.16], [120.65, 24.17], [120.64, 24.16]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    many = {"type": "FeatureCollection", "features": [feature] * 17}
    r = httpx.post(url, json=many, timeout=60)
    assert r.status_code == 400 and r.json()["description"].startswith("body: at most 16 features"), r.text
    nan = '{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [NaN, NaN]}}'
    r = httpx.post(url, content=nan, headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 400 and r.json()["description"].startswith("body:"), r.text
    huge = {"type": "FeatureCollection", "features": [feature] * 8000}  # 1.2 MB
    assert httpx.post(url, json=huge, timeout=60).status_code == 413
    assert httpx.post(url, json=feature, timeout=60).status_code == 200
