"""Per-layer access control on every surface.

The access matrix takes every route from the application's router (so a route added later is
covered too) and asks it, as every kind of caller, about a public, an internal and a restricted
layer: no answer may carry a layer the caller may not read, or even its name."""

import base64
import functools
import json
import os
import re
import subprocess
import sys
import time

import httpx
import mapbox_vector_tile
import psycopg
import pyogrio
import pytest
from conftest import app_routes, geocloud_cli

from geocloud.serve.app import create_app
from geocloud.serve.tiles.tms import SERVED

HALL = (120.647296502, 24.1619892378)
LAYERS = {"public": "roads", "internal": "road_works", "restricted": "inspection_sites"}
SECRET_WORDS = ("inspection_sites", "公安稽查", "Public-safety inspection")
INTERNAL_WORDS = ("road_works", "道路施工", "Road works")


@functools.cache
def _routed() -> tuple[tuple[str, frozenset[str]], ...]:
    """(path, methods) of every route, from one application built once (building one per call made
    the matrix build hundreds)."""
    return tuple(app_routes(create_app().routes))


def routes() -> list[str]:
    """Every path the application routes, into mounted applications (rasters, static files)."""
    return sorted({path for path, _ in _routed()})


@functools.cache
def method_of(template: str) -> str:
    """GET where the path answers it; else the path's first method (the /manage routes change things)."""
    methods = {m for path, ms in _routed() if path == template for m in ms} - {"HEAD"}
    return "GET" if "GET" in methods else min(methods)


def fill(path: str, layer: str, served) -> str:
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 14)
    values = {"collection_id": layer, "layer_id": layer, "name": layer, "item_id": _item(served.db_url, layer),
              "tms": "WebMercatorQuad", "tileMatrixSetId": "WebMercatorQuad", "z": tile.z, "x": tile.x, "y": tile.y,
              "format": "png", "width": 64, "height": 64, "lon": HALL[0], "lat": HALL[1]}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(values.get(m.group(1), "1")), path)


@functools.cache
def _item(db_url: str, layer: str) -> str:
    """An item id of the layer in that database (read once, not once per route and caller)."""
    with psycopg.connect(db_url) as conn:
        try:
            return conn.execute(f"SELECT {_key(layer)} FROM live.{layer} LIMIT 1").fetchone()[0]
        except psycopg.Error:
            return "x"


def _key(layer: str) -> str:
    return {"roads": "road_id", "road_works": "permit_id", "inspection_sites": "site_id"}[layer]


def callers(served) -> dict[str, dict]:
    fire = served.keys["fire"]
    wrong = fire[:-4] + ("AAAA" if not fire.endswith("AAAA") else "BBBB")
    return {
        "anonymous": {},
        "agency A (fire inspector)": {"headers": {"Authorization": f"Bearer {fire}"}},
        "agency B (urban development)": {"headers": {"X-API-Key": served.keys["udb"]}},
        "external agency": {"headers": {"Authorization": f"Bearer {served.keys['external']}"}},
        "expired": {"headers": {"Authorization": f"Bearer {served.keys['expired']}"}},
        "revoked": {"headers": {"Authorization": f"Bearer {served.keys['revoked']}"}},
        "wrong secret": {"headers": {"Authorization": f"Bearer {wrong}"}},
        "malformed header": {"headers": {"Authorization": "Bearer"}},
        "scoped key outside its scope": {"headers": {"Authorization": f"Bearer {served.keys['scoped']}"}},
        "basic auth (QGIS)": {"headers": {"Authorization": "Basic " + base64.b64encode(f"qgis:{fire}".encode()).decode()}},
        "valid JWT (fire inspector)": {"headers": {"Authorization": f"Bearer {served.sso.token()}"}},
        "JWT with bad signature": {"headers": {"Authorization": f"Bearer {served.sso.token(forged=True)}"}},
        "JWT from a skewed clock": {"headers": {"Authorization": f"Bearer {served.sso.token(skew=-3600)}"}},
    }


CAN_READ = {
    "anonymous": {"public"}, "agency A (fire inspector)": {"public", "internal", "restricted"},
    "agency B (urban development)": {"public", "internal"}, "external agency": {"public"},
    "scoped key outside its scope": {"public"}, "basic auth (QGIS)": {"public", "internal", "restricted"},
    "valid JWT (fire inspector)": {"public", "internal", "restricted"},
}
INVALID = {"expired", "revoked", "wrong secret", "malformed header", "JWT with bad signature", "JWT from a skewed clock"}


def test_every_route_every_caller_every_layer(served):
    assert len(routes()) > 25
    client = httpx.Client(base_url=served.url, timeout=60)
    problems = []
    for caller, kwargs in callers(served).items():
        for level, layer in LAYERS.items():
            for template in routes():
                path = fill(template, layer, served)
                method = "POST" if template in ("/geocode/batch", "/auth/token") else method_of(template)
                r = client.request(method, path, **kwargs)
                body = r.text
                where = f"{caller} {method} {path} -> {r.status_code}"
                vary = r.headers.get("vary", "").lower()
                if "cache-control" not in r.headers or "authorization" not in vary or "x-api-key" not in vary \
                        or r.headers.get("x-content-type-options") != "nosniff":
                    problems.append(f"{where}: every answer needs Cache-Control, Vary on the credentials and nosniff")
                if caller in INVALID:
                    if r.status_code != 401 or "WWW-Authenticate" not in r.headers:
                        problems.append(f"{where}: bad credentials must be refused with 401")
                    continue
                readable = level in CAN_READ[caller]
                names_layer = layer in template or "{" in template and layer in path
                if names_layer and not readable:
                    expected = 401 if caller == "anonymous" else 404
                    if r.status_code != expected:
                        problems.append(f"{where}: expected {expected}")
                hidden = [w for lv, words in (("restricted", SECRET_WORDS), ("internal", INTERNAL_WORDS))
                          if lv not in CAN_READ[caller] for w in words]
                leaked = [w for w in hidden if w in body and not (names_layer and w == layer and r.status_code in (401, 404))]
                if leaked:
                    problems.append(f"{where}: leaks {leaked}")
                if r.status_code == 200 and level != "public" and names_layer and "private" not in r.headers.get("cache-control", "private"):
                    problems.append(f"{where}: non-public content must be Cache-Control: private")
    assert not problems, "\n".join(problems[:40])


def test_restricted_layer_reads_for_the_granted_agency(served):
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    r = served.get("/collections/inspection_sites/items", headers=fire)
    assert r.status_code == 200 and r.json()["numberMatched"] == 60
    assert r.headers["cache-control"] == "private, no-cache"
    ids = {c["id"] for c in served.get("/collections", headers=fire).json()["collections"]}
    assert {"inspection_sites", "road_works", "roads"} <= ids
    udb = {"X-API-Key": served.keys["udb"]}
    assert served.get("/collections/road_works/items", headers=udb).status_code == 200
    assert served.get("/collections/inspection_sites/items", headers=udb).status_code == 404


def test_basemap_and_tiles_leave_out_what_the_caller_may_not_read(served, tmp_path):
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 14)
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    r = served.get(f"/collections/inspection_sites/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}", headers=fire)
    assert r.status_code in (200, 204) and r.headers["cache-control"] == "private, no-cache"
    assert served.get(f"/collections/inspection_sites/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}").status_code == 401
    style = served.get("/styles/basemap.json").json()
    assert all("inspection" not in json.dumps(layer) for layer in style["layers"])


def test_token_for_web_pages(served):
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    assert httpx.post(served.url + "/auth/token").status_code == 401
    r = httpx.post(served.url + "/auth/token", params={"layers": "inspection_sites", "expires_in": 600}, headers=fire)
    token = r.json()["token"]
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 14)
    path = f"/collections/inspection_sites/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}"
    assert served.get(path, params={"token": token}).status_code in (200, 204)
    assert served.get("/collections/road_works/items", params={"token": token}).status_code == 404  # scoped
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    assert served.get(path, params={"token": forged}).status_code == 401
    too_wide = httpx.post(served.url + "/auth/token", params={"layers": "inspection_sites"},
                          headers={"X-API-Key": served.keys["udb"]})
    assert too_wide.status_code == 400 and too_wide.json()["description"].startswith("layers:")


def test_gdal_oapif_reads_an_internal_layer_with_credentials(served, tmp_path):
    """QGIS-style Basic auth (the key as password) through pyogrio, and an API-key header
    (GDAL_HTTP_HEADERS) through Debian's ogr2ogr; anonymous GDAL does not see the layer."""
    assert "road_works" not in {name for name, _ in pyogrio.list_layers("OAPIF:" + served.url)}
    try:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": "BASIC", "GDAL_HTTP_USERPWD": f"qgis:{served.keys['udb']}"})
        meta, table = pyogrio.read_arrow("OAPIF:" + served.url, layer="road_works")
        assert table.num_rows == 30
        assert "inspection_sites" not in {name for name, _ in pyogrio.list_layers("OAPIF:" + served.url)}
    finally:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": None, "GDAL_HTTP_USERPWD": None})
    out = tmp_path / "road_works.gpkg"
    done = subprocess.run(["ogr2ogr", "--config", "GDAL_HTTP_HEADERS", f"X-API-Key: {served.keys['udb']}",
                           "-f", "GPKG", str(out), "OAPIF:" + served.url, "road_works"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert pyogrio.read_info(out)["features"] == 30


def test_reads_are_audited_and_keys_managed_by_cli(served):
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    served.get("/collections/inspection_sites/items", params={"bbox": "120.6,24.1,120.7,24.2"}, headers=fire)
    env = {"GEOCLOUD_DATABASE_URL": served.db_url}
    for _ in range(50):
        out = geocloud_cli("audit", "--layer", "inspection_sites", "--json", env=env)
        rows = json.loads(out.stdout)
        if any(r["detail"].get("query", "").startswith("bbox") for r in rows):
            break
        time.sleep(0.2)
    row = next(r for r in rows if r["detail"].get("query", "").startswith("bbox"))
    assert row["agency"] == "TCG-FIRE" and row["principal"] == "inspector-1" and row["detail"]["bytes"] > 0
    created = geocloud_cli("keys", "create", "--agency", "TCG-CONST", "--role", "engineer", "--expires", "30d", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("gck_")
    with psycopg.connect(served.db_url) as conn:
        stored = conn.execute("SELECT hash FROM geocloud.api_keys WHERE id = %s", (secret[4:16],)).fetchone()[0]
    assert secret.encode() not in bytes(stored) and len(bytes(stored)) == 32
    assert served.get("/collections/inspection_sites/items", headers={"X-API-Key": secret}).status_code == 200
    rotated = geocloud_cli("keys", "rotate", secret[4:16], "--grace", "1h", env=env)
    new = rotated.stdout.strip().splitlines()[-1]
    assert served.get("/collections/inspection_sites/items", headers={"X-API-Key": new}).status_code == 200
    assert geocloud_cli("keys", "revoke", new[4:16], env=env).returncode == 0
    bad = geocloud_cli("keys", "create", "--agency", "NOPE", "--role", "x", env=env)
    assert bad.returncode == 6 and "unknown agency" in bad.stderr
    actions = {r["action"] for r in json.loads(geocloud_cli("audit", "--json", env=env).stdout)}
    assert {"key-created", "key-rotated", "key-revoked", "read"} <= actions


def test_oversized_and_garbage_credentials(served):
    assert served.get("/collections", headers={"Authorization": "Bearer " + "x" * 10000}).status_code == 401
    assert served.get("/collections", headers={"Authorization": "Basic %%%"}).status_code == 401
    assert served.get("/collections", headers={"X-API-Key": "gck_short"}).status_code == 401


def test_mvt_of_restricted_layer_has_its_features_for_the_inspectors(served):
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    with psycopg.connect(served.db_url) as conn:
        lon, lat = conn.execute("SELECT ST_X(ST_Transform(geom, 4326)), ST_Y(ST_Transform(geom, 4326)) "
                                "FROM live.inspection_sites LIMIT 1").fetchone()
    tile = SERVED["WebMercatorQuad"].tile(lon, lat, 15)
    r = served.get(f"/collections/inspection_sites/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}", headers=fire)
    assert mapbox_vector_tile.decode(r.content)["inspection_sites"]["features"]


@pytest.mark.parametrize("who", ["anonymous", "udb"])
def test_geocoding_follows_the_address_layer(served, who):
    headers = {} if who == "anonymous" else {"X-API-Key": served.keys["udb"]}
    assert served.get("/geocode", params={"address": "臺中市西屯區臺灣大道三段99號"}, headers=headers).status_code == 200


def test_jwt_roles_and_agency_come_from_claims(served):
    analyst_elsewhere = served.sso.token(agency="TCG-UDB", roles=["analyst"])
    headers = {"Authorization": f"Bearer {analyst_elsewhere}"}
    assert served.get("/collections/road_works/items", headers=headers).status_code == 200
    assert served.get("/collections/inspection_sites/items", headers=headers).status_code == 404
    unknown_agency = served.sso.token(agency="NOPE")
    assert served.get("/collections", headers={"Authorization": f"Bearer {unknown_agency}"}).status_code == 401
    slightly_skewed = served.sso.token(skew=20)  # within the leeway
    assert served.get("/collections/inspection_sites/items",
                      headers={"Authorization": f"Bearer {slightly_skewed}"}).status_code == 200


def test_rate_limits_answer_429_with_retry_after(served):
    """A second server on the same database with low limits: counts are shared through PostGIS
    (so the anonymous requests of the other tests on this database count too)."""
    from conftest import free_port

    port = free_port()
    env = {**os.environ, "GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir),
           "GEOCLOUD_RATE_LIMIT_ANONYMOUS": "15", "GEOCLOUD_RATE_LIMIT_KEY": "25"}
    proc = subprocess.Popen([sys.executable, "-m", "geocloud", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/conformance", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        if time.time() % 60 > 45:  # counts are per minute: do the burst within one minute
            time.sleep(61 - time.time() % 60)
        statuses = [httpx.get(base + "/conformance").status_code for _ in range(40)]
        assert statuses.count(200) <= 16 and 429 in statuses
        limited = httpx.get(base + "/conformance")
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        fresh = geocloud_cli("keys", "create", "--agency", "TCG-UDB", "--role", "analyst",
                             env={"GEOCLOUD_DATABASE_URL": served.db_url}).stdout.strip().splitlines()[-1]
        keyed = [httpx.get(base + "/conformance", headers={"X-API-Key": fresh}).status_code for _ in range(20)]
        assert keyed.count(200) == 20  # a key has its own, larger allowance
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_restricted_downloads_need_accepted_terms_and_record_them(served):
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    r = served.get("/collections/inspection_sites/download", params={"f": "csv"}, headers=fire)
    assert r.status_code == 400 and r.json()["description"].startswith("accept_terms:")
    terms = r.json()["description"].split("accept_terms=")[-1]
    ok = served.get("/collections/inspection_sites/download", params={"f": "csv", "accept_terms": terms}, headers=fire)
    assert ok.status_code == 200 and ok.headers["cache-control"] == "private, no-cache"
    env = {"GEOCLOUD_DATABASE_URL": served.db_url}
    for _ in range(50):
        rows = json.loads(geocloud_cli("audit", "--layer", "inspection_sites", "--json", env=env).stdout)
        done = [r for r in rows if r["surface"] == "download" and r["detail"].get("terms") == terms]
        if done:
            break
        time.sleep(0.2)
    assert done and done[0]["detail"]["bytes"] == len(ok.content)


def test_deleting_an_agency_stops_its_keys_and_grant_changes_are_audited(served, tmp_path):
    env = {"GEOCLOUD_DATABASE_URL": served.db_url}
    created = geocloud_cli("keys", "create", "--agency", "TCG-ECON", "--role", "analyst", env=env)
    secret = created.stdout.strip().splitlines()[-1]
    assert served.get("/collections/road_works/items", headers={"X-API-Key": secret}).status_code == 200
    assert geocloud_cli("agencies", "delete", "TCG-ECON", env=env).returncode == 0
    time.sleep(31)  # a worker may trust a key it has just verified for up to 30 s
    assert served.get("/collections/road_works/items", headers={"X-API-Key": secret}).status_code == 401
    synced = geocloud_cli("agencies", "sync", env=env)
    assert synced.returncode == 0 and "layer access change(s) recorded" in synced.stdout
    changes = [r for r in json.loads(geocloud_cli("audit", "--json", "--limit", "1000", env=env).stdout)
               if r["action"] == "grant-changed"]
    assert {r["layer"] for r in changes} >= {"inspection_sites", "road_works"}


def test_tile_reads_of_restricted_layers_are_audited(served):
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 13)
    for dy in range(3):
        served.get(f"/collections/inspection_sites/tiles/WebMercatorQuad/{tile.z}/{tile.y + dy}/{tile.x}", headers=fire)
    env = {"GEOCLOUD_DATABASE_URL": served.db_url}
    for _ in range(50):
        rows = [r for r in json.loads(geocloud_cli("audit", "--layer", "inspection_sites", "--json", env=env).stdout)
                if r["surface"] == "tiles"]
        if sum(r["detail"].get("tiles", 0) for r in rows) >= 3:
            break
        time.sleep(0.3)
    assert sum(r["detail"]["tiles"] for r in rows) >= 3 and all(r["agency"] == "TCG-FIRE" for r in rows)
