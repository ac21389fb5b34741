"""An agency layer registered over HTTP reaches every read surface, on two server processes over
one database, within seconds, for exactly the principals its access allows; retired, it leaves
them all.

The layer is the sample city's YouBike stations, registered by the Transportation Bureau's editor
as the demo does (entry, CSV upload, publish): internal first, then made public (pending the GIS
office's review: its own agency only), approved by a GIS office admin's review, then retired."""

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import mapbox_vector_tile
import morecantile
import pytest
from conftest import agency_database, start_server, stop_server

from geocloud.sample import bikes
from geocloud.sample.city import City
from geocloud.serve.ogcapi.downloads import TERMS_VERSION

L = bikes.LAYER_ID
WHO = {"owner": ("TCG-TRANS", "trans-editor", "editor"), "other agency": ("TCG-FIRE", "fire-1", "inspector"),
       "national": ("MOI-LAND", "nlsc-1", "analyst"), "admin": ("TCG-INFO", "gis-admin", "admin")}
EVERYONE = {"anonymous", *WHO}
CITY = {"owner", "other agency", "admin"}  # city agencies: who reads an internal layer
OPENAPI_ASKED = {"anonymous", "owner"}


@pytest.fixture(scope="module")
def stations(tmp_path_factory):
    path = tmp_path_factory.mktemp("bikes") / "youbike-stations.csv"
    bikes.write(path, City(7), 12)
    return path


@pytest.fixture(scope="module")
def processes(template_db, tmp_path_factory):
    """Two `geocloud serve` processes (started side by side) on one database and one data directory,
    as two nodes share PostGIS and the data volume, with a key for each principal."""
    data = tmp_path_factory.mktemp("sharing-data")
    with agency_database(template_db, WHO) as (url, keys), ThreadPoolExecutor(2) as pool:
        started = [f.result() for f in [pool.submit(start_server, url, data) for _ in range(2)]]
        try:
            yield [base for _, base in started], {"anonymous": {}, **{w: {"X-API-Key": k} for w, k in keys.items()}}
        finally:
            for proc, _ in started:
                stop_server(proc)


def _tile_path(lon: float, lat: float, z: int = 15) -> str:
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return f"/collections/{L}/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}"


def surfaces(names: set[str], tile: str) -> dict:
    """surface -> (kind, path, does this 200 show the layer). A path of the layer's own ("own") is
    hidden only as an unknown layer's is (401 to the anonymous, 404 to others); a listing ("list")
    answers everyone 200, the layer listed or not. The OpenAPI document is made from the caller's
    configuration, as the collections list is, and costs seconds to make: it is asked by two
    principals (OPENAPI_ASKED), the list by all."""
    def features(r):
        return {f["properties"]["name"] for f in r.json()["features"]} == names
    return {
        "collections": ("list", "/collections?f=json&lang=zh-TW",  # also the map viewer's list (viewer.js)
                        lambda r: L in {c["id"] for c in r.json()["collections"]}),
        "portal search": ("list", "/?f=html&q=YouBike", lambda r: f"/collections/{L}" in r.text),
        "OpenAPI": ("list", "/openapi?f=json", lambda r: f"/collections/{L}/items" in r.json()["paths"]),
        "service record": ("list", "/metadata/services/ogcapi.xml", lambda r: f"/metadata/{L}.xml" in r.text),
        "DCAT": ("list", "/catalog/dcat.jsonld", lambda r: f'/collections/{L}"' in r.text),
        "collection": ("own", f"/collections/{L}?f=json", lambda r: r.json()["id"] == L),
        "items": ("own", f"/collections/{L}/items?f=json&limit=100", features),
        "queryables": ("own", f"/collections/{L}/queryables?f=json",
                       lambda r: {"station_id", "name", "docks"} <= set(r.json()["properties"])),
        "schema": ("own", f"/collections/{L}/schema?f=json", lambda r: "docks" in r.json()["properties"]),
        "tileset": ("own", f"/collections/{L}/tiles/WebMercatorQuad", lambda r: r.json()["links"]),
        "TileJSON": ("own", f"/collections/{L}/tiles/WebMercatorQuad/tilejson.json",
                     lambda r: [v["id"] for v in r.json()["vector_layers"]] == [L]),
        "vector tile": ("own", tile, lambda r: len(mapbox_vector_tile.decode(r.content)[L]["features"]) >= 1),
        "metadata record": ("own", f"/metadata/{L}.xml", lambda r: f"geocloud-{L}" in r.text),
        "download": ("own", f"/collections/{L}/download?f=geojson&accept_terms={TERMS_VERSION}", features),
    }


def probe(base: str, who: str, headers: dict, kind: str, path: str, shows) -> tuple[str, str]:
    """('shown' or 'hidden' or what is wrong with the answer, its Cache-Control)."""
    r = httpx.get(base + path, headers=headers, timeout=30)
    cache = r.headers.get("cache-control", "")
    try:
        if r.status_code == 200:
            return ("shown" if shows(r) else "hidden" if kind == "list" else "200 without the layer"), cache
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable 200: {exc!r} {r.text[:100]}", cache
    if kind == "list" and path.startswith("/metadata/services/") and r.status_code == 404:
        return "hidden", cache  # no vector layer is live for this caller
    hidden = kind == "own" and r.status_code == (401 if who == "anonymous" else 404)
    return ("hidden" if hidden else f"{r.status_code} {r.text[:100]}"), cache


def expect_everywhere(bases, keys, table: dict, readers: set[str], dcat: set[str], public: bool,
                      within: float = 30.0) -> None:
    """Wait until every surface of both processes answers every principal as ``readers`` (and
    ``dcat``, for the open-data feed) say, the layer's own answers never cacheable by a shared cache
    unless it is public. Each principal's collections list is watched first (the change has reached
    both processes); then everything is asked, and what was not yet right asked again, until
    ``within`` seconds (the registry is followed within 2 s: the rest is a busy machine's slowness)."""
    start = time.monotonic()

    def wrong(t, answer, cache):
        _, who, surface = t
        wanted = "shown" if who in (dcat if surface == "DCAT" else readers) else "hidden"
        if answer != wanted:
            return answer
        if answer == "shown" and table[surface][0] == "own" and "public" in cache and not public:
            return f"Cache-Control {cache!r}"

    with ThreadPoolExecutor(8) as pool:
        for todo in ([(base, who, "collections") for base in bases for who in keys],
                     [(base, who, surface) for base in bases for who in keys for surface in table
                      if surface != "OpenAPI" or who in OPENAPI_ASKED]):
            while todo:
                answers = pool.map(lambda t: probe(t[0], t[1], keys[t[1]], *table[t[2]]), todo)
                bad = [(t, why) for t, (answer, cache) in zip(todo, answers) if (why := wrong(t, answer, cache))]
                if bad and time.monotonic() - start > within:
                    raise AssertionError(f"after {within} s, {len(bad)} answers are not as expected: "
                                         f"{[(b.rsplit(':', 1)[1], w, s, why) for (b, w, s), why in bad[:12]]}")
                todo = [t for t, _ in bad]
                time.sleep(0.3 if todo else 0)


def call(base: str, method: str, path: str, headers: dict, **kwargs) -> httpx.Response:
    return httpx.request(method, base + path, headers=headers, timeout=60, **kwargs)


def test_an_agency_layer_registered_over_http_reaches_every_surface_for_whom_it_may_and_leaves_them_retired(
        processes, stations):
    (first, second), keys = processes
    editor, admin = keys["owner"], keys["admin"]
    rows = list(csv.DictReader(io.StringIO(stations.read_text(encoding="utf-8"))))
    table = surfaces({r["場站名稱"] for r in rows}, _tile_path(float(rows[0]["經度"]), float(rows[0]["緯度"])))
    internal = {**bikes.ENTRY, "access": {"level": "internal"}}

    # the bureau's editor registers and loads it through one process; the other serves it as well
    assert call(first, "PUT", f"/manage/layers/{L}", editor, json=internal).status_code == 201
    loaded = call(second, "POST", f"/manage/layers/{L}/data", {**editor, "Content-Type": "text/csv"},
                  content=stations.read_bytes())
    assert loaded.status_code == 200 and loaded.json()["counts"]["loaded"] == {L: len(rows)}, loaded.text
    assert call(first, "POST", f"/manage/layers/{L}/publish", editor).json()["state"] == "live"
    expect_everywhere((first, second), keys, table, CITY, set(), public=False)

    # made public by its editor: pending review, read by its own agency only, not in the open-data feed
    r = call(second, "PUT", f"/manage/layers/{L}", editor, json=bikes.ENTRY)
    assert r.status_code == 200 and r.json()["state"] == "pending_review", r.text
    expect_everywhere((first, second), keys, table, {"owner"}, set(), public=False)

    # approved by the GIS office's review: everyone, and DCAT lists it for everyone
    r = call(first, "POST", f"/manage/layers/{L}/review", admin, json={"decision": "approve", "comment": "可開放"})
    assert r.status_code == 200 and r.json()["state"] == "live", r.text
    expect_everywhere((first, second), keys, table, EVERYONE, EVERYONE, public=True)

    # retired: gone from every surface of both processes, for everyone
    assert call(second, "DELETE", f"/manage/layers/{L}", editor).json()["state"] == "retired"
    expect_everywhere((first, second), keys, table, set(), set(), public=False)
