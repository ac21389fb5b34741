"""The management API (/manage) on a real server over a database of its own: who may do what
(admin, the owner agency's editor, another agency's editor, a reader, the public), an agency
registering and loading a layer over HTTP until it is served, and bad input refused with nothing
changed."""

import json
import time

import httpx
import psycopg
import pytest
from conftest import agency_server, geocloud_cli
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


def until(get, done, within: float = 60.0):
    """``get()`` again until ``done`` holds for what it gave (or fail after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not done(value := get()):
        assert time.monotonic() < deadline, value
        time.sleep(0.2)
    return value


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
    routes = [("GET", "/manage/layers/{}", {}), ("PUT", "/manage/layers/{}", {"json": BIKES}),
              ("DELETE", "/manage/layers/{}", {}),
              ("POST", "/manage/layers/{}/data?format=csv&force=true", {"content": csv_body()}),
              ("POST", "/manage/layers/{}/publish", {}), ("POST", "/manage/layers/{}/rollback", {}),
              ("POST", "/manage/layers/{}/review", {"json": {"decision": "approve"}})]
    # bike_stations is internal (every city agency reads it), trans_secret restricted to TCG-TRANS
    expected = {("anonymous", "bike_stations"): 401, ("anonymous", "trans_secret"): 401,
                ("reader", "bike_stations"): 403, ("reader", "trans_secret"): 403,
                ("other editor", "bike_stations"): 403, ("other editor", "trans_secret"): 404}
    for (who, layer), status in expected.items():
        for method, path, body in routes:
            body = {"json": {**BIKES, "id": layer}} if method == "PUT" else body
            r = call(base, method, path.format(layer), keys[who], **body)
            assert r.status_code == status, (who, method, path, layer, r.text)
            assert r.json()["description"], r.text
            if status == 403:
                assert any(why in r.json()["description"] for why in ("editor", "TCG-TRANS", "admins review"))
    for layer in ("bike_stations", "trans_secret"):  # the owner's editor does all but review
        r = call(base, "POST", f"/manage/layers/{layer}/review", keys["owner editor"], json={"decision": "approve"})
        assert r.status_code == 403 and "only the GIS office's admins review" in r.json()["description"], r.text
    assert call(base, "POST", "/manage/layers/bike_stations/review", keys["admin"],
                json={"decision": "approve"}).status_code == 409  # a draft is not in review
    for who, status in (("anonymous", 401), ("reader", 403)):
        r = call(base, "GET", "/manage/audit", keys[who])
        assert r.status_code == status and r.json()["description"], (who, r.text)
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
    assert (row["owner"], row["state"], row["origin"], row["live_version"], row["last_run"], row["review"]) == \
        ("TCG-TRANS", "draft", "agency", None, None, None)
    one = call(base, "GET", "/manage/layers/trans_secret", keys["owner editor"]).json()
    assert {k: one[k] for k in row} == row and one["entry"]["access"] == SECRET["access"]
    assert one["updated_by"] == "admin-TCG-INFO@TCG-INFO"
    r = call(base, "GET", "/manage/layers/roads", keys["admin"])  # a core layer: the admin loads its data
    assert r.status_code == 200 and r.json()["origin"] == "core" and r.json()["entry"]["id"] == "roads", r.text

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
    r = call(base, "POST", "/manage/layers/bike_public/publish", keys["admin"])  # review is the one way out
    assert r.status_code == 409 and "/manage/layers/bike_public/review" in r.json()["fix"], r.text
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
    assert plan.json()["source"] == "the uploaded file" and "report_path" not in plan.json()  # no server folders
    assert str(data) not in plan.text and "upload-" not in plan.text
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

    # a second load (one removed of three): the ETL's guard refuses it, naming the HTTP way to force it
    r = call(base, "POST", "/manage/layers/bike_docks/data?format=csv", editor, content=csv_body(STATIONS[1:]))
    assert r.status_code == 409 and r.json()["code"] == "GuardRefused", r.text
    assert "?force=true" in r.json()["fix"] and "--force" not in r.text, r.text
    r = call(base, "POST", "/manage/layers/bike_docks/data?format=csv&force=true", editor, content=csv_body(STATIONS[1:]))
    assert r.status_code == 200 and r.json()["status"] == "published" and r.json()["guard"]["forced"], r.text
    assert r.json()["counts"]["loaded"] == {"bike_docks": 2}

    # a third load, not waited for: a run URL, which says how far the run got while the live table is held
    more = [*STATIONS, ("S004", "忠明站", 215000.0, 2672000.0, 20)]
    with psycopg.connect(url) as held:  # the run's diff with the live layer waits for this lock
        held.execute("LOCK TABLE live.bike_docks IN ACCESS EXCLUSIVE MODE")
        r = call(base, "POST", "/manage/layers/bike_docks/data?format=csv&wait=0", editor, content=csv_body(more))
        assert r.status_code == 202 and r.headers["location"] == r.json()["href"], r.text
        run = r.json()["href"].removeprefix(base)
        assert call(base, "GET", run, {}).status_code == 401
        assert call(base, "GET", run, keys["other editor"]).status_code == 403
        state = until(lambda: call(base, "GET", run, editor).json(), lambda s: s["progress"]["stage"] == "index")
        assert state["state"] == "running" and state["progress"]["read"] == 4 and state["counts"] is None, state
    state = until(lambda: call(base, "GET", run, editor).json(), lambda s: s["state"] != "running")
    assert state["state"] == "published" and state["counts"]["loaded"] == {"bike_docks": 4}, state
    assert state["progress"]["stage"] == "finished" and state["progress"]["read"] == 4
    assert {"read, validate and copy", "index", "publish"} <= set(state["progress"]["stages"]), state
    back = call(base, "POST", "/manage/layers/bike_docks/rollback", editor)
    assert back.status_code == 200 and (back.json()["from_version"], back.json()["to_version"]) == (3, 2), back.text
    row = next(x for x in call(base, "GET", "/manage/layers", editor).json()["layers"] if x["id"] == "bike_docks")
    assert (row["state"], row["live_version"], row["owner"]) == ("live", 2, "TCG-TRANS")
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


def items_status(base: str, layer: str, headers: dict) -> int:
    return httpx.get(f"{base}/collections/{layer}/items", headers=headers, params={"f": "json"}, timeout=30).status_code


def test_the_gis_office_reviews_an_editors_public_layer(server):
    """Public layers go to TGOS and data.gov.tw: an editor's is served to its own agency (and to the
    GIS office's admins, who review it) only until an admin approves it; a rejected one stays so, with the admin's comment, until the agency acts."""
    base, url, _, keys = server
    editor, admin, fire = keys["owner editor"], keys["admin"], keys["other editor"]
    for layer in ("bike_open", "bike_refused"):
        entry = {**BIKES, "id": layer, "access": {"level": "public"}}
        assert call(base, "PUT", f"/manage/layers/{layer}", editor, json=entry).status_code == 201
        assert call(base, "POST", f"/manage/layers/{layer}/data", editor, content=csv_body(), media="text/csv").status_code == 200
        assert call(base, "POST", f"/manage/layers/{layer}/publish", editor).json()["state"] == "pending_review"
        until(lambda layer=layer: items_status(base, layer, editor), lambda status: status == 200, 10)
        assert items_status(base, layer, {}) == 401 and items_status(base, layer, fire) == 404
        assert items_status(base, layer, admin) == 200  # the reviewer sees what they are asked to approve

    bad = call(base, "POST", "/manage/layers/bike_open/review", admin, json={"decision": "maybe"})
    assert bad.status_code == 422 and bad.json()["keys"] == ["decision"], bad.text
    bad = call(base, "POST", "/manage/layers/bike_open/review", admin, json={"decision": "reject"})
    assert bad.status_code == 422 and bad.json()["keys"] == ["comment"] and "needs a comment" in bad.text, bad.text
    r = call(base, "POST", "/manage/layers/bike_open/review", admin, json={"decision": "approve", "comment": "ok"})
    assert r.status_code == 200 and r.json()["state"] == "live" and r.json()["review"]["by"] == "admin-TCG-INFO@TCG-INFO"
    until(lambda: items_status(base, "bike_open", {}), lambda status: status == 200, 10)  # the public reads it

    why = "站點座標請改用 TWD97"
    r = call(base, "POST", "/manage/layers/bike_refused/review", admin, json={"decision": "reject", "comment": why})
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    time.sleep(2.5)  # past the registry's follow interval: a rejection changes nothing served
    assert items_status(base, "bike_refused", {}) == 401 and items_status(base, "bike_refused", fire) == 404
    assert items_status(base, "bike_refused", editor) == 200 and items_status(base, "bike_refused", keys["reader"]) == 200
    mine = call(base, "GET", "/manage/layers/bike_refused", editor).json()
    assert mine["state"] == "rejected" and mine["review"]["decision"] == "reject" and mine["review"]["comment"] == why
    listed = {x["id"]: x for x in call(base, "GET", "/manage/layers", editor).json()["layers"]}
    assert listed["bike_refused"]["review"] == mine["review"] and listed["bike_open"]["review"]["decision"] == "approve"
    r = call(base, "POST", "/manage/layers/bike_refused/publish", admin)
    assert r.status_code == 409 and "review" in r.json()["fix"], r.text
    assert call(base, "POST", "/manage/layers/bike_refused/publish", editor).json()["state"] == "pending_review"

    # the audit: the admin's decisions, read by the admin, by the owner's editor (its layers only), not by others
    r = call(base, "GET", "/manage/audit?layer=bike_refused&since=1h", editor)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store", r.text
    records = [x for x in r.json()["records"] if x["surface"] == "manage"]  # (and the reads of the layer)
    assert {x["layer"] for x in r.json()["records"]} == {"bike_refused"} and "read" in {x["action"] for x in r.json()["records"]}
    assert [x["action"] for x in records][:2] == ["layer-published", "layer-reviewed"], records
    assert records[1]["after"] == {"state": "rejected", "review": mine["review"]} and records[1]["before"] == \
        {"state": "pending_review"} and records[1]["principal"] == "admin-TCG-INFO@TCG-INFO"
    assert call(base, "GET", "/manage/audit?layer=bike_refused", fire).json()["records"] == []
    by_admin = call(base, "GET", "/manage/audit?actor=admin-TCG-INFO@TCG-INFO&limit=1000", admin).json()["records"]
    assert "layer-reviewed" in {x["action"] for x in by_admin}
    assert {x["principal"] for x in by_admin} == {"admin-TCG-INFO@TCG-INFO"}
    for query, name in (("since=yesterday", "since"), ("limit=0", "limit"), ("limit=x", "limit"),
                        ("layer=Bad-Id", "layer"), ("since=2026-13-45", "since"), ("actor=a%00b", "actor")):
        r = call(base, "GET", f"/manage/audit?{query}", admin)
        assert r.status_code == 400 and r.json()["description"].startswith(f"{name}:"), (query, r.text)

    # the same trail on the command line
    env = {"GEOCLOUD_DATABASE_URL": url}
    printed = geocloud_cli("audit", "--layer", "bike_refused", "--since", "1h", "--json", env=env)
    assert printed.returncode == 0, printed.stderr
    assert [x for x in json.loads(printed.stdout) if x["surface"] == "manage"] == records
    bad = geocloud_cli("audit", "--since", "last week", env=env)
    assert bad.returncode != 0 and "--since: 'last week' is not a date" in bad.stderr, bad.stderr


def test_an_entry_maps_columns_that_match_no_field_name_or_title(server):
    """The inferred mapping reads a column by the field's name or title; the entry's ``source``
    maps the others, and a column it names must be in the file."""
    base, url, _, keys = server
    editor = keys["owner editor"]
    odd = "代號,名稱,車柱,E97,N97\n" + "".join(f"{i},{n},{d},{x},{y}\n" for i, n, x, y, d in STATIONS)
    plain = {**BIKES, "id": "bike_odd"}
    assert call(base, "PUT", "/manage/layers/bike_odd", editor, json=plain).status_code == 201
    r = call(base, "POST", "/manage/layers/bike_odd/data", editor, content=odd.encode(), media="text/csv")
    assert r.status_code == 422, r.text  # nothing matches by name or title
    assert r.json()["where"] == "the uploaded file: line 1" and "upload-" not in r.text, r.text  # not the server's folder
    mapped = {**plain, "source": {"fields": {"station_id": "代號", "name": "名稱", "docks": "車柱"},
                                  "x": "E97", "y": "N97", "crs": "EPSG:3826"}}
    assert call(base, "PUT", "/manage/layers/bike_odd", editor, json=mapped).status_code == 200
    r = call(base, "POST", "/manage/layers/bike_odd/data", editor, content=odd.encode(), media="text/csv")
    assert r.status_code == 200 and r.json()["counts"]["loaded"] == {"bike_odd": 3}, r.text
    one = call(base, "GET", "/manage/layers/bike_odd", editor).json()
    assert one["entry"]["source"]["fields"]["docks"] == "車柱" and one["last_run"]["status"] == "published"

    before = registry_state(url)
    r = call(base, "PUT", "/manage/layers/bike_odd", editor,
             json={**mapped, "source": {**mapped["source"], "fields": {"dock": "車柱"}}})
    assert r.status_code == 422 and r.json()["keys"] == ["source.fields.dock"], r.text
    wrong = {**mapped, "source": {**mapped["source"], "fields": {**mapped["source"]["fields"], "name": "站名稱"}}}
    assert call(base, "PUT", "/manage/layers/bike_odd", editor, json=wrong).status_code == 200
    r = call(base, "POST", "/manage/layers/bike_odd/data", editor, content=odd.encode(), media="text/csv")
    assert r.status_code == 422 and r.json()["keys"] == ["source.fields.name"], r.text
    assert "'站名稱'" in r.json()["description"] and "代號, 名稱, 車柱, E97, N97" in r.json()["fix"]
    assert "upload-" not in r.text, r.text  # not the server's upload folder
    failed = call(base, "GET", "/manage/layers/bike_odd", editor).json()["last_run"]
    run = call(base, "GET", f"/manage/runs/{failed['run']}", editor)
    trail = call(base, "GET", "/manage/audit?layer=bike_odd", editor)
    assert failed["status"] == "failed" and run.status_code == 200 and trail.status_code == 200
    assert "upload-" not in run.text + trail.text and "the uploaded file" in run.text + trail.text
    assert registry_state(url)[3] == before[3]  # the live versions are as they were


def test_an_agency_uploads_a_geotiff_and_its_raster_layer_is_served(server, tmp_path):
    """A GeoTIFF body goes through the raster ETL (a COG) like a vector source through the vector one:
    the agency's raster layer is then a collection with coverage and tiles, for whom it may."""
    import morecantile
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    base, _, _, keys = server
    editor, fire = keys["owner editor"], keys["other editor"]
    entry = {"id": "trans_aerial", "title": {"zh-TW": "交通局空拍影像", "en": "Transportation aerial imagery"},
             "description": {"zh-TW": "路口空拍正射影像", "en": "Orthophotos of junctions"}, "kind": "raster",
             "crs": "EPSG:3826", "access": {"level": "internal"}, "update_frequency": "yearly",
             "contact": {"organization": {"zh-TW": "臺中市政府交通局", "en": "Taichung Transportation Bureau"},
                         "name": "運輸資訊科", "email": "gis@taichung.gov.tw", "phone": "+886-4-22289111"}}
    tif = tmp_path / "aerial.tif"
    pixels = np.stack([np.full((64, 64), v, dtype="uint8") for v in (200, 120, 40)])
    with rasterio.open(tif, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:3826",
                       transform=from_origin(217_000, 2_673_000, 10, 10)) as out:
        out.write(pixels)
    assert call(base, "PUT", "/manage/layers/trans_aerial", editor, json=entry).status_code == 201
    loaded = call(base, "POST", "/manage/layers/trans_aerial/data", editor, content=tif.read_bytes(), media="image/tiff")
    assert loaded.status_code == 200 and loaded.json()["status"] == "published", loaded.text
    assert call(base, "POST", "/manage/layers/trans_aerial/publish", editor).json()["state"] == "live"

    collection = until(lambda: httpx.get(f"{base}/collections/trans_aerial?f=json", headers=editor, timeout=30),
                       lambda r: r.status_code == 200, 10)
    assert collection.json().get("layerDataType") == "Coverage", collection.text
    center = morecantile.tms.get("WebMercatorQuad").tile(120.6784, 24.1591, 16)  # the image's middle, in CRS84
    tile = httpx.get(f"{base}/rasters/trans_aerial/tiles/WebMercatorQuad/{center.z}/{center.x}/{center.y}.png",
                     headers=editor, timeout=30)
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png", tile.text[:200]
    assert httpx.get(f"{base}/collections/trans_aerial?f=json", timeout=30).status_code == 401  # internal
    assert httpx.get(f"{base}/collections/trans_aerial?f=json", headers=fire, timeout=30).status_code == 200
