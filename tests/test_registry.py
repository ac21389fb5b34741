"""Agency layers: registered in PostGIS beside the core layers of layers/*.yml, validated alike,
served by every worker without a restart, retired off every surface, managed by who may."""

import json
import math
import time

import httpx
import psycopg
import pytest
import yaml
from conftest import agency_server, geocloud_cli
from pyproj import Transformer

from geocloud import db
from geocloud.access.policy import MANAGE_ACTIONS, can_manage, can_read
from geocloud.access.principal import ANONYMOUS, Principal
from geocloud.catalog import core_catalog, get_catalog, load_catalog, registry
from geocloud.errors import ConfigError, Conflict

BIKES = {
    "id": "bike_stations",
    "title": {"zh-TW": "公共自行車租賃站", "en": "Public bicycle stations"},
    "description": {"zh-TW": "iBike 租賃站位置與車位數。", "en": "iBike rental stations and their docks."},
    "kind": "vector",
    "geometry": "Point",
    "key": "station_id",
    "fields": [
        {"name": "station_id", "type": "text", "required": True, "title": {"zh-TW": "站點代號", "en": "Station"}},
        {"name": "name", "type": "text", "title": {"zh-TW": "站名", "en": "Name"}},
        {"name": "docks", "type": "integer", "title": {"zh-TW": "車位數", "en": "Docks"}},
    ],
    "access": {"level": "internal"},
    "update_frequency": "daily",
    "contact": {"organization": {"zh-TW": "臺中市政府交通局", "en": "Taichung City Transportation Bureau"},
                "name": "公共運輸處", "email": "trans@taichung.gov.tw", "phone": "+886-4-22289111"},
    "zooms": {"min": 8, "max": 22},
}
STATIONS = [("S001", "市政府站", 214100.0, 2673400.0, 30), ("S002", "秋紅谷站", 214600.0, 2673900.0, 24),
            ("S003", "臺中車站", 217300.0, 2669600.0, 40)]


def write_entry(folder, entry: dict, name: str = "bike_stations.yml"):
    path = folder / name
    path.write_text(yaml.safe_dump(entry, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_csv(folder):
    path = folder / "stations.csv"
    rows = ["站點代號,站名,車位數,X,Y"] + [f"{i},{n},{d},{x},{y}" for i, n, x, y, d in STATIONS]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def tile_of(x: float, y: float, z: int = 14) -> str:
    lon, lat = Transformer.from_crs("EPSG:3826", "EPSG:4326", always_xy=True).transform(x, y)
    n = 2 ** z
    col = int((lon + 180) / 360 * n)
    row = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return f"{z}/{row}/{col}"


# --- one served city: two workers follow the registry ----------------------------------------------

@pytest.fixture(scope="module")
def server(template_db, tmp_path_factory):
    """A fresh database with the agencies and two keys, served by `geocloud serve --workers 2`."""
    data = tmp_path_factory.mktemp("registry-data")
    keys = {"fire": ("TCG-FIRE", "inspector-1", "inspector"), "external": ("MOI-LAND", "nlsc-1", "analyst")}
    with agency_server(template_db, data, keys, args=("--workers", "2")) as (base, url, made):
        yield base, {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(data), "GEOCLOUD_OPERATOR": "tester"}, made


def on_every_worker(base: str, path: str, headers: dict, check, within: float = 10.0) -> float:
    """Seconds until ``check(response)`` held for 12 requests in a row, each on a new connection (the
    kernel spreads them over both workers)."""
    start = time.monotonic()
    while True:
        answers = [httpx.get(base + path, headers=headers, timeout=30) for _ in range(12)]
        if all(check(r) for r in answers):
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{path}: not on every worker after {within} s: "
                                 f"{sorted({(r.status_code, r.text[:120]) for r in answers})}")
        time.sleep(0.3)


def ids(r: httpx.Response) -> set:
    return {c["id"] for c in r.json()["collections"]} if r.status_code == 200 else {"(error)"}


def test_a_registered_layer_is_served_by_every_worker_and_retired_off_every_surface(server, tmp_path):
    base, env, keys = server
    fire, external = {"X-API-Key": keys["fire"]}, {"X-API-Key": keys["external"]}
    tile = f"/collections/bike_stations/tiles/WebMercatorQuad/{tile_of(*STATIONS[0][2:4])}"

    on_every_worker(base, "/collections", fire, lambda r: r.status_code == 200 and "bike_stations" not in ids(r))
    added = geocloud_cli("layers", "add", write_entry(tmp_path, BIKES), "--owner", "TCG-TRANS", env=env)
    assert added.returncode == 0, added.stderr
    loaded = geocloud_cli("etl", "run", "bike_stations", write_csv(tmp_path), "--json", env=env)
    assert loaded.returncode == 0, loaded.stderr
    report = json.loads(loaded.stdout)
    assert report["status"] == "published" and report["counts"]["loaded"] == {"bike_stations": 3}

    on_every_worker(base, "/collections", fire, lambda r: "bike_stations" in ids(r))
    items = httpx.get(base + "/collections/bike_stations/items", headers=fire, params={"f": "json"}, timeout=30).json()
    assert sorted(f["properties"]["name"] for f in items["features"]) == sorted(s[1] for s in STATIONS)
    on_every_worker(base, tile, fire, lambda r: r.status_code == 200 and len(r.content) > 0)
    # internal: a city agency reads it; the public and a national agency do not
    for headers in ({}, external):
        assert "bike_stations" not in ids(httpx.get(base + "/collections", headers=headers, timeout=30))
        assert httpx.get(base + "/collections/bike_stations/items", headers=headers, timeout=30).status_code in (401, 403, 404)
        assert httpx.get(base + tile, headers=headers, timeout=30).status_code in (401, 403, 404)

    listed = json.loads(geocloud_cli("layers", "list", "--json", env=env).stdout)["layers"]
    assert {(x["id"], x["origin"], x["owner"], x["state"]) for x in listed if x["id"] in ("bike_stations", "roads")} \
        == {("bike_stations", "agency", "TCG-TRANS", "live"), ("roads", "core", "TCG-INFO", "live")}

    retired = geocloud_cli("layers", "retire", "bike_stations", env=env)
    assert retired.returncode == 0, retired.stderr
    on_every_worker(base, "/collections", fire, lambda r: r.status_code == 200 and "bike_stations" not in ids(r))
    on_every_worker(base, "/collections/bike_stations/items", fire, lambda r: r.status_code == 404)
    on_every_worker(base, tile, fire, lambda r: r.status_code == 404)
    with psycopg.connect(env["GEOCLOUD_DATABASE_URL"]) as conn:  # the history stays
        assert conn.execute("SELECT state FROM geocloud.registered_layers WHERE id = 'bike_stations'").fetchone() \
            == ("retired",)
        assert [a for a, in conn.execute("SELECT action FROM geocloud.registry_events WHERE layer = 'bike_stations' "
                                         "ORDER BY id")] == ["register", "retire"]
    listed = json.loads(geocloud_cli("layers", "list", "--json", "--all", env=env).stdout)["layers"]
    assert [x["state"] for x in listed if x["id"] == "bike_stations"] == ["retired"]
    history = json.loads(geocloud_cli("etl", "history", "bike_stations", "--json", env=env).stdout)
    assert [v["version"] for v in history["versions"]] == [1]


# --- the registry against one database --------------------------------------------------------------

def test_a_core_id_or_a_pipeline_name_is_refused(database, tmp_path):
    for layer_id, says in (("roads", "belongs to a core layer (layers/roads.yml)"),
                           ("topo", "is the name of a core ETL pipeline (etl/topo.yml)")):
        out = geocloud_cli("layers", "add", write_entry(tmp_path, {**BIKES, "id": layer_id}), "--owner", "TCG-TRANS")
        assert out.returncode == Conflict.exit_code and says in out.stderr and "choose another id" in out.stderr
        assert "Traceback" not in out.stderr
    get_catalog.cache_clear()
    assert get_catalog().origin("roads") == "core" and not get_catalog().registered


def test_a_bad_entry_gets_the_same_error_as_a_bad_layer_file(database, project, tmp_path):
    bad = {**BIKES, "geometri": "Point", "access": {"level": "restricted"}}
    write_entry(project / "layers", bad)
    with pytest.raises(ConfigError) as from_file:
        load_catalog(project / "layers", project / "agencies.yml")
    (project / "layers" / "bike_stations.yml").unlink()
    with db.connect() as conn, pytest.raises(ConfigError) as from_registry:
        registry.register(conn, bad, "TCG-TRANS", "tester", core_catalog(), where="PUT /manage/layers/bike_stations")
    assert from_registry.value.what == from_file.value.what
    assert "unknown key 'geometri' (did you mean 'geometry'?)" in from_registry.value.what
    assert "key 'access': a restricted layer needs at least one grant" in from_registry.value.what
    assert from_registry.value.where == "PUT /manage/layers/bike_stations"
    out = geocloud_cli("layers", "add", write_entry(tmp_path, bad), "--owner", "TCG-TRANS")
    assert out.returncode == ConfigError.exit_code and from_file.value.what in out.stderr
    grant = {**BIKES, "access": {"level": "restricted", "grants": [{"agency": "TCG-NOPE"}]}}
    out = geocloud_cli("layers", "add", write_entry(tmp_path, grant), "--owner", "TCG-TRANS")
    assert "key 'access.grants[0].agency'" in out.stderr and "grant to unknown agency 'TCG-NOPE'" in out.stderr


def test_another_agency_cannot_take_a_registered_id_and_a_draft_is_loadable_not_served(database, tmp_path):
    core = core_catalog()
    with db.connect() as conn:
        registry.register(conn, BIKES, "TCG-TRANS", "tester", core, where="test", state="draft")
        with pytest.raises(Conflict, match="belongs to TCG-TRANS, not TCG-FIRE"):
            registry.register(conn, BIKES, "TCG-FIRE", "tester", core, where="test")
        with pytest.raises(Conflict, match="is a core layer"):
            registry.retire(conn, "roads", "tester", core)
    catalog = get_catalog()
    assert "bike_stations" not in catalog.layers and "bike_stations" in catalog.loadable().layers
    assert catalog.owner("bike_stations") == "TCG-TRANS" and catalog.owner("roads") == "TCG-INFO"


def test_a_registered_entry_that_no_longer_validates_or_shadows_a_core_id_is_left_out(database, caplog):
    """Rows written before the models or layers/*.yml changed: left out and logged, never fatal."""
    with psycopg.connect(database, autocommit=True) as conn:
        for layer_id, entry in (("bike_stations", {**BIKES, "kind": "mesh"}),
                                ("roads", {**BIKES, "id": "roads", "title": {"zh-TW": "假", "en": "Fake"}})):
            conn.execute("INSERT INTO geocloud.registered_layers (id, owner, state, entry, created_by, updated_by) "
                         "VALUES (%s, 'TCG-TRANS', 'live', %s, 't', 't')", (layer_id, json.dumps(entry)))
    catalog = get_catalog()
    assert "bike_stations" not in catalog.layers and not catalog.registered
    assert catalog.layers["roads"].title.en == "Road centrelines" and catalog.origin("roads") == "core"
    assert "registered layer 'bike_stations': key 'kind'" in caplog.text
    assert "layer id 'roads' belongs to a core layer" in caplog.text


def test_a_layer_pending_review_is_read_by_its_own_agency_only():
    public = {**BIKES, "access": {"level": "public"}}
    catalog = registry.merge(core_catalog(), [("bike_stations", "TCG-TRANS", "pending_review", public, "t", None, None)])
    layer = catalog.layers["bike_stations"]
    assert catalog.registered["bike_stations"].layer.is_public and not layer.is_public
    assert can_read(PRINCIPALS["owner reader"], layer)
    assert not can_read(ANONYMOUS, layer) and not can_read(PRINCIPALS["other editor"], layer)
    live = registry.merge(core_catalog(), [("bike_stations", "TCG-TRANS", "live", public, "t", None, None)])
    assert can_read(ANONYMOUS, live.layers["bike_stations"])
    rejected = registry.merge(core_catalog(), [("bike_stations", "TCG-TRANS", "rejected", public, "t", None,
                                                {"decision": "reject", "comment": "no contact phone"})])
    assert can_read(PRINCIPALS["owner reader"], rejected.layers["bike_stations"])
    assert not can_read(ANONYMOUS, rejected.layers["bike_stations"])
    assert rejected.registered["bike_stations"].review["comment"] == "no contact phone"


def test_an_entry_maps_its_source_with_key_paths_in_every_error():
    """The optional ``source`` of an agency entry: validated by the models, its fields the layer's own;
    a core layer maps its source in its etl/*.yml instead."""
    core = core_catalog()
    mapped = {**BIKES, "source": {"fields": {"name": "名稱"}, "x": "E", "y": "N", "crs": "EPSG:3826"}}
    assert registry.validate(mapped, core, "here").source.fields == {"name": "名稱"}
    for source, key, says in (({"fields": {"nome": "名稱"}}, "source.fields.nome", "not one of the layer's fields"),
                              ({"x": "E"}, "source", "give both 'x' and 'y'"),
                              ({"crs": "EPSG:99999"}, "source.crs", "unknown CRS"),
                              ({"colums": {}}, "source.colums", "unknown key")):
        with pytest.raises(ConfigError) as caught:
            registry.validate({**BIKES, "source": source}, core, "here")
        assert f"'{key}'" in str(caught.value) and says in str(caught.value), str(caught.value)


def test_an_operator_reviews_a_layer_on_the_command_line(database):
    public = {**BIKES, "access": {"level": "public"}}
    with db.transaction() as conn:
        registry.register(conn, public, "TCG-TRANS", "editor-1", core_catalog(), where="t", state="pending_review")
    out = geocloud_cli("layers", "review", "bike_stations", "--decision", "reject")
    assert out.returncode == ConfigError.exit_code and "a rejection needs a comment" in out.stderr, out.stderr
    out = geocloud_cli("layers", "review", "bike_stations", "--decision", "reject", "--comment", "請補聯絡電話")
    assert out.returncode == 0 and "rejected" in out.stdout, out.stderr
    registry.forget()
    catalog = get_catalog()
    assert catalog.registered["bike_stations"].state == "rejected" and not can_read(ANONYMOUS, catalog.layers["bike_stations"])
    assert catalog.registered["bike_stations"].review["comment"] == "請補聯絡電話"
    assert geocloud_cli("layers", "review", "bike_stations", "--decision", "approve").returncode == 0
    registry.forget()
    assert can_read(ANONYMOUS, get_catalog().layers["bike_stations"])
    again = geocloud_cli("layers", "review", "bike_stations", "--decision", "approve")
    assert again.returncode == Conflict.exit_code and "is not in review (it is live)" in again.stderr


def test_a_core_layer_file_maps_no_source(project):
    """A core layer's source is its etl/*.yml pipeline's: a ``source`` in its file would be ignored."""
    write_entry(project / "layers", {**BIKES, "source": {"fields": {"name": "名稱"}}})
    with pytest.raises(ConfigError) as caught:
        load_catalog(project / "layers", project / "agencies.yml")
    assert "bike_stations.yml: key 'source'" in str(caught.value) and "etl/*.yml" in str(caught.value)


# --- who may manage what ------------------------------------------------------------------------------

def _catalog():
    row = ("bike_stations", "TCG-TRANS", "live", BIKES, "tester", None, None)
    return registry.merge(core_catalog(), [row])


PRINCIPALS = {
    "admin": Principal("jwt", name="gis-1", agency="TCG-INFO", role="admin", city_agency=True),
    "gis office reader": Principal("key", name="gis-2", agency="TCG-INFO", role="analyst", city_agency=True),
    "owner editor": Principal("jwt", name="trans-1", agency="TCG-TRANS", role="editor", city_agency=True),
    "owner reader": Principal("key", name="trans-2", agency="TCG-TRANS", role="analyst", city_agency=True),
    "other editor": Principal("jwt", name="fire-1", agency="TCG-FIRE", role="editor", city_agency=True),
    "scoped editor": Principal("key", name="trans-3", agency="TCG-TRANS", role="editor", city_agency=True,
                               layers=frozenset({"other"})),
    "anonymous": ANONYMOUS,
}
ALL, NONE = set(MANAGE_ACTIONS), set()
STEWARD = ALL - {"review"}
# (principal, layer) -> the actions allowed; "new_trans" is a layer being registered for TCG-TRANS
EXPECTED = {
    ("admin", "bike_stations"): ALL, ("admin", "roads"): {"load"}, ("admin", "new_trans"): ALL,
    ("owner editor", "bike_stations"): STEWARD, ("owner editor", "roads"): NONE, ("owner editor", "new_trans"): STEWARD,
}


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("layer", ["bike_stations", "roads", "new_trans"])
def test_who_may_manage_what(who, layer):
    catalog = _catalog()
    allowed = {a for a in MANAGE_ACTIONS if can_manage(PRINCIPALS[who], a, layer, catalog, owner="TCG-TRANS")}
    assert allowed == EXPECTED.get((who, layer), NONE)


def test_an_editor_cannot_register_for_another_agency_and_actions_are_checked():
    catalog, editor = _catalog(), PRINCIPALS["owner editor"]
    assert not can_manage(editor, "edit", "new_fire", catalog, owner="TCG-FIRE")
    # an existing layer's owner is the catalog's, whatever the caller names
    assert can_manage(editor, "edit", "bike_stations", catalog, owner="TCG-FIRE")
    assert not can_manage(PRINCIPALS["other editor"], "edit", "bike_stations", catalog, owner="TCG-FIRE")
    with pytest.raises(ValueError, match="unknown management action 'delete'"):
        can_manage(editor, "delete", "bike_stations", catalog)
