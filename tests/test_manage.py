"""The management API (/manage) on a real server over a database of its own: who may do what
(admin, the owner agency's editor, another agency's editor, a reader, the public), an agency
registering and loading a layer over HTTP until it is served, and bad input refused with nothing
changed."""

import time

import httpx
import psycopg
import pytest
from conftest import agency_server
from test_registry import BIKES, STATIONS, ids, on_every_worker

LIMIT = 60_000  # GEOCLOUD_UPLOAD_MAX_BYTES of the server under test
SECRET = {**BIKES, "id": "trans_secret", "title": {"zh-TW": "交通局內部圖層", "en": "Transportation internal"},
          "access": {"level": "restricted", "grants": [{"agency": "TCG-TRANS"}]}}
WHO = {"admin": ("TCG-INFO", "admin"), "owner editor": ("TCG-TRANS", "editor"),
       "other editor": ("TCG-FIRE", "editor"), "reader": ("TCG-TRANS", "analyst")}


@pytest.fixture(scope="module")
def server(template_db, tmp_path_factory):
    """A fresh database with the agencies and a key per role, served with a small upload limit."""
    data = tmp_path_factory.mktemp("manage-data")
    keys = {who: (agency, f"{role}-{agency}", role) for who, (agency, role) in WHO.items()}
    with agency_server(template_db, data, keys, {"GEOCLOUD_UPLOAD_MAX_BYTES": str(LIMIT)}) as (base, url, made):
        yield base, url, data, {"anonymous": {}, **{who: {"X-API-Key": key} for who, key in made.items()}}


def call(base: str, method: str, path: str, headers: dict, media: str | None = None, **kwargs) -> httpx.Response:
    headers = {**headers, "Content-Type": media} if media else headers
    return httpx.request(method, base + path, headers=headers, timeout=60, **kwargs)


def csv_body(stations=STATIONS) -> bytes:
    rows = ["站點代號,站名,車位數,X,Y"] + [f"{i},{n},{d},{x},{y}" for i, n, x, y, d in stations]
    return ("\n".join(rows) + "\n").encode()


def registry_state(url: str) -> tuple:
    """Everything a refused action must leave as it was: entries, registry events, runs, live versions."""
    with psycopg.connect(url) as conn:
        return tuple(conn.execute(q).fetchall() for q in (
            "SELECT id, owner, state, entry::text FROM geocloud.registered_layers ORDER BY id",
            "SELECT count(*) FROM geocloud.registry_events", "SELECT count(*) FROM geocloud.etl_runs",
            "SELECT layer, version, state FROM geocloud.layer_versions ORDER BY layer, version"))


def test_who_may_manage_what(server):
    base, url, _, keys = server
    for entry in (BIKES, SECRET):  # the admin registers both for the Transportation Bureau
        r = call(base, "PUT", f"/manage/layers/{entry['id']}?owner=TCG-TRANS", keys["admin"], json=entry)
        assert r.status_code == 201 and r.json()["owner"] == "TCG-TRANS" and r.json()["state"] == "draft", r.text
    before = registry_state(url)
    routes = [("PUT", "/manage/layers/{}", {"json": BIKES}), ("DELETE", "/manage/layers/{}", {}),
              ("POST", "/manage/layers/{}/data?format=csv", {"content": csv_body()}),
              ("POST", "/manage/layers/{}/publish", {}), ("POST", "/manage/layers/{}/rollback", {})]
    # bike_stations is internal (every city agency reads it), trans_secret restricted to TCG-TRANS
    expected = {("anonymous", "bike_stations"): 401, ("anonymous", "trans_secret"): 401,
                ("reader", "bike_stations"): 403, ("reader", "trans_secret"): 403,
                ("other editor", "bike_stations"): 403, ("other editor", "trans_secret"): 404}
    for (who, layer), status in expected.items():
        for method, path, body in routes:
            body = {"json": {**BIKES, "id": layer}} if "json" in body else body
            r = call(base, method, path.format(layer), keys[who], **body)
            assert r.status_code == status, (who, method, path, layer, r.text)
            assert r.json()["description"], r.text
            if status == 403:
                assert "editor" in r.json()["description"] or "TCG-TRANS" in r.json()["description"]
    # core layers change in the repository: an editor's entry is a conflict, retiring one refused even to the admin
    r = call(base, "PUT", "/manage/layers/roads", keys["owner editor"], json={**BIKES, "id": "roads"})
    assert r.status_code == 409 and "belongs to a core layer" in r.json()["description"], r.text
    for who in ("admin", "owner editor"):
        assert call(base, "DELETE", "/manage/layers/roads", keys[who]).status_code == 403
    # an editor registers nothing for another agency; an unknown layer is not found
    r = call(base, "PUT", "/manage/layers/fire_hydrants?owner=TCG-FIRE", keys["owner editor"],
             json={**BIKES, "id": "fire_hydrants"})
    assert r.status_code == 403 and "TCG-FIRE" in r.json()["description"]
    assert call(base, "POST", "/manage/layers/nothing_here/publish", keys["admin"]).status_code == 404
    assert registry_state(url) == before  # nothing refused changed anything

    # what each manages
    assert call(base, "GET", "/manage/layers", {}).status_code == 401
    listed = {who: {x["id"] for x in call(base, "GET", "/manage/layers", keys[who]).json()["layers"]}
              for who in WHO}
    assert listed["owner editor"] == {"bike_stations", "trans_secret"}
    assert listed["reader"] == listed["other editor"] == set()
    assert {"bike_stations", "trans_secret", "roads"} <= listed["admin"]
    row = next(x for x in call(base, "GET", "/manage/layers", keys["owner editor"]).json()["layers"]
               if x["id"] == "trans_secret")
    assert (row["owner"], row["state"], row["origin"], row["live_version"], row["last_run"]) == \
        ("TCG-TRANS", "draft", "agency", None, None)

    # the allowed ones succeed: the owner's editor publishes and retires, the admin too
    assert call(base, "POST", "/manage/layers/trans_secret/publish", keys["owner editor"]).json()["state"] == "live"
    assert call(base, "DELETE", "/manage/layers/trans_secret", keys["admin"]).json()["state"] == "retired"
    with psycopg.connect(url) as conn:
        audited = conn.execute("SELECT action, principal, agency, detail FROM geocloud.audit WHERE layer = "
                               "'trans_secret' ORDER BY id").fetchall()
    assert [(a, p, g) for a, p, g, _ in audited] == [
        ("layer-registered", "admin-TCG-INFO@TCG-INFO", "TCG-INFO"),
        ("layer-published", "editor-TCG-TRANS@TCG-TRANS", "TCG-TRANS"),
        ("layer-retired", "admin-TCG-INFO@TCG-INFO", "TCG-INFO")]
    assert audited[0][3]["before"] is None and audited[0][3]["after"]["entry"]["id"] == "trans_secret"
    assert audited[1][3] == {"before": {"state": "draft"}, "after": {"state": "live"}}

    # a public layer an editor publishes awaits the GIS office (served to its own agency only); an admin's publish is live
    public = {**BIKES, "id": "bike_public", "access": {"level": "public"}}
    assert call(base, "PUT", "/manage/layers/bike_public", keys["owner editor"], json=public).status_code == 201
    r = call(base, "POST", "/manage/layers/bike_public/publish", keys["owner editor"])
    assert r.json()["state"] == "pending_review", r.text
    assert call(base, "POST", "/manage/layers/bike_public/publish", keys["owner editor"]).json()["state"] == \
        "pending_review"
    assert call(base, "POST", "/manage/layers/bike_public/publish", keys["admin"]).json()["state"] == "live"
    r = call(base, "PUT", "/manage/layers/bike_public", keys["owner editor"], json={**public, "id": "other_id"})
    assert r.status_code == 422 and r.json()["keys"] == ["id"], r.text


def test_an_editor_registers_loads_and_publishes_a_layer_over_http(server):
    base, url, data, keys = server
    editor = keys["owner editor"]
    entry = {**BIKES, "id": "bike_docks"}
    r = call(base, "PUT", "/manage/layers/bike_docks", editor, json=entry)
    assert r.status_code == 201 and r.json()["state"] == "draft", r.text
    plan = call(base, "POST", "/manage/layers/bike_docks/data?dry_run=true", editor, content=csv_body(), media="text/csv")
    assert plan.status_code == 200 and plan.json()["status"] == "planned", plan.text
    assert plan.json()["diff"]["bike_docks"]["added"] == 3
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM geocloud.layer_versions WHERE layer = 'bike_docks'").fetchone() == (0,)
    loaded = call(base, "POST", "/manage/layers/bike_docks/data", editor, content=csv_body(),
                  media="text/csv; charset=utf-8")
    assert loaded.status_code == 200, loaded.text
    report = loaded.json()
    assert report["status"] == "published" and report["counts"]["loaded"] == {"bike_docks": 3}
    assert report["operator"] == "editor-TCG-TRANS@TCG-TRANS"
    assert call(base, "POST", "/manage/layers/bike_docks/publish", editor).json()["state"] == "live"

    fire = keys["other editor"]  # a city agency reads an internal layer; the public does not
    on_every_worker(base, "/collections", fire, lambda r: "bike_docks" in ids(r))
    items = httpx.get(f"{base}/collections/bike_docks/items", headers=fire, params={"f": "json"}, timeout=30).json()
    assert sorted(f["properties"]["name"] for f in items["features"]) == sorted(s[1] for s in STATIONS)
    assert "bike_docks" not in ids(httpx.get(f"{base}/collections", timeout=30))
    assert httpx.get(f"{base}/collections/bike_docks/items", timeout=30).status_code == 401

    # a second load (one removed of three: the ETL's guard refuses it), a third, then a rollback to the first
    r = call(base, "POST", "/manage/layers/bike_docks/data?format=csv", editor, content=csv_body(STATIONS[:2]))
    assert r.status_code == 409 and r.json()["code"] == "GuardRefused", r.text
    more = [*STATIONS, ("S004", "忠明站", 215000.0, 2672000.0, 20)]
    r = call(base, "POST", "/manage/layers/bike_docks/data?format=csv&wait=0", editor, content=csv_body(more))
    assert r.status_code == 202 and r.headers["location"] == r.json()["href"], r.text  # not waited for: a run URL
    run = r.json()["href"].removeprefix(base)
    assert call(base, "GET", run, {}).status_code == 401
    assert call(base, "GET", run, keys["other editor"]).status_code == 403
    deadline = time.monotonic() + 60
    while (state := call(base, "GET", run, editor).json())["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state["state"] == "published" and state["counts"]["loaded"] == {"bike_docks": 4}, state
    back = call(base, "POST", "/manage/layers/bike_docks/rollback", editor)
    assert back.status_code == 200 and (back.json()["from_version"], back.json()["to_version"]) == (2, 1), back.text
    row = next(x for x in call(base, "GET", "/manage/layers", editor).json()["layers"] if x["id"] == "bike_docks")
    assert (row["state"], row["live_version"], row["owner"]) == ("live", 1, "TCG-TRANS")
    assert row["last_run"]["status"] == "published"

    assert call(base, "DELETE", "/manage/layers/bike_docks", editor).json()["state"] == "retired"
    on_every_worker(base, "/collections", fire, lambda r: r.status_code == 200 and "bike_docks" not in ids(r))
    on_every_worker(base, "/collections/bike_docks/items", fire, lambda r: r.status_code == 404)
    assert not list((data / "uploads").iterdir())  # uploads are not kept


def test_a_bad_entry_is_a_422_naming_the_key_path_and_the_fix(server):
    base, url, _, keys = server
    before = registry_state(url)
    bad = {**BIKES, "id": "bike_bad", "geometri": "Point",
           "access": {"level": "restricted", "grants": [{"agency": "TCG-NOPE"}]}}
    r = call(base, "PUT", "/manage/layers/bike_bad", keys["owner editor"], json=bad)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    problem = r.json()
    assert "unknown key 'geometri' (did you mean 'geometry'?)" in problem["detail"]
    assert "geometri" in problem["keys"] and problem["fix"] and problem["where"] == "PUT /manage/layers/bike_bad"
    r = call(base, "PUT", "/manage/layers/bike_bad", keys["owner editor"],
             json={k: v for k, v in bad.items() if k != "geometri"})
    assert r.status_code == 422 and "access.grants[0].agency" in r.json()["keys"], r.text
    assert "grant to unknown agency 'TCG-NOPE'" in r.json()["detail"]
    r = call(base, "PUT", "/manage/layers/bike_bad", keys["owner editor"], content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["description"]
    assert registry_state(url) == before


def test_an_upload_too_large_lying_about_its_format_or_racing_a_run_is_refused_and_nothing_changes(server):
    base, url, data, keys = server
    editor = keys["owner editor"]
    assert call(base, "PUT", "/manage/layers/bike_racks", editor, json={**BIKES, "id": "bike_racks"}).status_code == 201
    before = registry_state(url)
    big = csv_body() + b"".join(f"S{i:05d},站{i},10,214100,2673400\n".encode() for i in range(LIMIT // 20))
    assert len(big) > LIMIT
    r = call(base, "POST", "/manage/layers/bike_racks/data?format=csv", editor, content=big)
    assert r.status_code == 413 and str(LIMIT) in r.json()["description"], r.text

    def chunks():  # no Content-Length: the server counts what streams in
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]
    r = call(base, "POST", "/manage/layers/bike_racks/data?format=csv", editor, content=chunks())
    assert r.status_code == 413, r.text

    for media, says in (("application/geopackage+sqlite3", "not a geopackage file"),
                        ("application/zip", "not a shapefile file"), ("application/geo+json", "not a geojson file")):
        r = call(base, "POST", "/manage/layers/bike_racks/data", editor, content=csv_body(), media=media)
        assert r.status_code == 422 and says in r.json()["description"], (media, r.text)
    r = call(base, "POST", "/manage/layers/bike_racks/data", editor, content=csv_body(), media="text/plain")
    assert r.status_code == 415 and "?format=" in r.json()["description"]
    with psycopg.connect(url, autocommit=True) as run:  # another run holds the layer: the ETL's own lock
        run.execute("SELECT pg_advisory_lock(hashtextextended('geocloud.layer:bike_racks', 0))")
        r = call(base, "POST", "/manage/layers/bike_racks/data?format=csv", editor, content=csv_body())
        assert r.status_code == 409 and "is being updated by another run" in r.json()["description"], r.text
    assert registry_state(url)[:2] == before[:2] and registry_state(url)[3] == before[3]
    assert not list((data / "uploads").iterdir())
