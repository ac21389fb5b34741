"""Publishing: TWSMP records, TGOS over CSW-T (pycsw as the catalogue), data.gov.tw (a stand-in that
enforces the agency API's contract), the DCAT feed and the open-data quality check, all against
the sample city served by a real geocloud server."""

import json
import zipfile

import httpx
import psycopg
import pyogrio
import pytest
from lxml import etree
from owslib.catalogue.csw2 import CatalogueServiceWeb
from owslib.iso import MD_Metadata
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from conftest import free_port, geocloud_cli, needs_shared, source_of
from geocloud.catalog import get_catalog
from geocloud.publish import checks
from geocloud.publish.distributions import Distribution, field_description
from standins.csw import PyCSW
from standins.datagov import DataGov, Running

pytestmark = pytest.mark.xdist_group("publish")  # one server, portal and catalogue; tests build on each other
GMD = "http://www.isotc211.org/2005/gmd"
KEY = "datagov-agency-key-1234"
ORG = "387000000A"
PUBLIC_VECTOR = sorted(layer.id for layer in get_catalog().layers.values()
                       if layer.is_public and layer.publishing.datagov_identifier)
PUBLIC_TGOS = sorted(layer.id for layer in get_catalog().layers.values()
                     if layer.is_public and layer.publishing.tgos_file_identifier)


@pytest.fixture(scope="module")
def portal():
    standin = DataGov(KEY, ORG)
    running = Running(standin.app, free_port())
    standin.url = running.url
    yield standin
    running.stop()


@pytest.fixture(scope="module")
def tgos(tmp_path_factory):
    csw = PyCSW(tmp_path_factory.mktemp("pycsw"), free_port())
    yield csw
    csw.stop()


@pytest.fixture
def env(served, portal, tgos):
    portal.fail_next, portal.slow_next, portal.reject_field = [], 0, None
    return {"GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir),
            "GEOCLOUD_PUBLIC_URL": served.url, "GEOCLOUD_TGOS_CSW_URL": tgos.url, "GEOCLOUD_DATAGOV_URL": portal.url,
            "GEOCLOUD_DATAGOV_API_KEY": KEY, "GEOCLOUD_PUBLISH_TIMEOUT": "10", "GEOCLOUD_PUBLISH_BACKOFF": "0.05",
            "GEOCLOUD_OPERATOR": "publisher-1"}


def status(env) -> dict:
    r = geocloud_cli("publish", "status", "--json", env=env)
    assert r.returncode == 0, r.stderr
    return {(row["layer"], row["target"]): row for row in json.loads(r.stdout)}


def record(env, layer: str, tmp_path) -> bytes:
    out = tmp_path / f"{layer}.xml"
    r = geocloud_cli("publish", "metadata", layer, "-o", out, env=env)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def paths(root) -> set[str]:
    out = set()
    for el in root.iter():
        if isinstance(el.tag, str):
            out.add("/".join(etree.QName(e).localname for e in reversed([el, *el.iterancestors()])))
    return out


# --- TWSMP metadata -------------------------------------------------------------------------------

def test_twsmp_record_is_derived_from_the_catalog_and_the_live_data(served, env, tmp_path):
    xml = record(env, "zoning", tmp_path)
    root = etree.fromstring(xml)
    assert root.nsmap["gmd"] == GMD and root.nsmap["gco"] == "http://www.isotc211.org/2005/gco"
    md = MD_Metadata(root)
    layer = get_catalog().layer("zoning")
    assert md.identifier == layer.publishing.tgos_file_identifier
    assert (md.stdname, md.stdver, md.language, md.charset) == ("TWSMP", "2.0", "chi", "utf8")
    ident = md.identification[0]
    assert ident.title == layer.title.zh_TW
    assert ident.topiccategory == [layer.topic_category] and ident.denominators == [str(layer.scale_denominator)]
    with psycopg.connect(served.db_url) as conn:
        box = conn.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent("
                           "ST_Transform(geom, 4326)) e FROM live.zoning) x").fetchone()
        published, sha, version = conn.execute(
            "SELECT v.published_at, r.source_sha256, v.version FROM geocloud.layer_versions v JOIN geocloud.etl_runs r "
            "ON r.id = v.run_id WHERE v.layer = 'zoning' AND v.state = 'live'").fetchone()
    got = [float(ident.bbox.minx), float(ident.bbox.miny), float(ident.bbox.maxx), float(ident.bbox.maxy)]
    # the live extent, taken in the layer's CRS, encloses the data and stays within a few tens of metres of it
    assert got[0] <= box[0] and got[1] <= box[1] and got[2] >= box[2] and got[3] >= box[3]
    assert got == pytest.approx(list(box), abs=5e-4)
    dates = {d.type: d.date for d in ident.date}
    assert dates["revision"] == published.date().isoformat() and set(dates) == {"creation", "revision", "publication"}
    assert [c.role for c in md.contact] == ["custodian", "distributor", "originator"]
    assert md.contact[0].organization == layer.contact.organization.zh_TW
    urls = [o.url for o in md.distribution.online]
    assert f"{served.url}/collections/zoning/download?f=csv" in urls and f"{served.url}/collections/zoning/items" in urls
    for url in urls:
        assert httpx.get(url, timeout=60).status_code == 200, url
    assert sha[:16] in md.dataquality.lineage and "zoning.geojson" in md.dataquality.lineage
    reports = root.findall(f".//{{{GMD}}}report")
    assert len(reports) == 4
    assert f"v{version}" in xml.decode()


def test_twsmp_record_has_the_element_set_of_a_real_tgos_record(env, tmp_path):
    real = needs_shared("metadata", "TW-07-301000100G-613995.xml").read_bytes()
    # the shared copy has https:// namespaces (not valid ISO 19139): restore the real ones to compare
    real = real.replace(b"https://www.isotc211.org", b"http://www.isotc211.org").replace(b"https://www.w3.org",
                                                                                          b"http://www.w3.org")
    real_root = etree.fromstring(real.lstrip(b"\xef\xbb\xbf"))
    ours = etree.fromstring(record(env, "districts", tmp_path))
    assert MD_Metadata(real_root).stdname == MD_Metadata(ours).stdname == "TWSMP"
    # we keep no fax numbers and have no parent records; everything else a TGOS record has, ours has too
    missing = {p for p in paths(real_root) - paths(ours) if "facsimile" not in p and "parentIdentifier" not in p}
    assert not missing, sorted(missing)


def test_service_records_couple_the_public_layers(env, tmp_path):
    for service, kind, service_type in (("ogcapi", "vector", "OGC:API-Features"), ("wmts", "raster", "OGC:WMTS")):
        out = tmp_path / f"{service}.xml"
        r = geocloud_cli("publish", "metadata", "--service", service, "-o", out, env=env)
        assert r.returncode == 0, r.stderr
        md = MD_Metadata(etree.parse(str(out)))
        ident = md.identification[0]
        assert ident.type == service_type
        coupled = {o["uuidref"] for o in ident.operateson}
        expected = {layer.publishing.tgos_file_identifier or f"geocloud-{layer.id}"
                    for layer in get_catalog().layers.values() if layer.is_public and layer.kind == kind}
        assert coupled == expected
        assert not any("inspection" in o["title"] or "施工" in o["title"] for o in ident.operateson)


def test_metadata_and_dcat_surfaces_go_through_the_guard(served):
    r = served.get("/metadata/districts.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert MD_Metadata(etree.fromstring(r.content)).identifier == "TW-07-387000000A-100006"
    assert served.get("/metadata/inspection_sites.xml").status_code == 401
    fire = {"Authorization": f"Bearer {served.keys['fire']}"}
    udb = {"Authorization": f"Bearer {served.keys['udb']}"}
    r = served.get("/metadata/inspection_sites.xml", headers=fire)
    assert r.status_code == 200 and r.headers["cache-control"].startswith("private")
    assert served.get("/metadata/inspection_sites.xml", headers=udb).status_code == 404
    anonymous = served.get("/metadata/services/ogcapi.xml").text
    assert "公安稽查" not in anonymous and "公安稽查" in served.get("/metadata/services/ogcapi.xml", headers=fire).text
    public = {layer.id for layer in get_catalog().layers.values() if layer.is_public}
    for headers in ({}, fire):
        r = served.get("/catalog/dcat.jsonld", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
        feed = r.json()
        ids = {d["@id"].rsplit("/", 1)[-1] for d in feed["dcat:dataset"]}
        assert ids == public, "the DCAT feed lists public layers only, whoever asks"
    zoning = next(d for d in feed["dcat:dataset"] if d["@id"].endswith("/zoning"))
    downloads = [d["dcat:downloadURL"]["@id"] for d in zoning["dcat:distribution"] if "dcat:downloadURL" in d]
    assert {u.rsplit("=", 1)[-1] for u in downloads} == {"csv", "geojson", "shp", "kml"}
    assert all(httpx.get(u, timeout=60).status_code == 200 for u in downloads)


# --- the quality check ----------------------------------------------------------------------------

def test_quality_check_grades_the_served_layers(env):
    r = geocloud_cli("publish", "check", "districts", "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["mark"] == "platinum" and report["csv"] is True
    assert all(d[f] for d in report["distributions"] for f in checks.FLAGS)
    r = geocloud_cli("publish", "check", "zoning", "--json", env=env)
    assert json.loads(r.stdout)["mark"] == "gold", "zoning maps no field to a data standard: gold, not platinum"
    r = geocloud_cli("publish", "check", "satellite", "--json", env=env)
    assert r.returncode == 9 and json.loads(r.stdout)["csv"] is False


def test_quality_check_catches_what_the_portal_would(tmp_path):
    layer = get_catalog().layer("districts")
    header = ",".join(layer.csv_columns())
    pages = {
        "/big5.csv": (header + "\r\n0001,北屯區,Beitun,臺中市\r\n").encode("cp950"),
        "/reordered.csv": (",".join(reversed(layer.csv_columns())) + "\r\n").encode(),
        "/page.csv": b"<html><body>download here</body></html>",
    }

    async def serve(request):
        body = pages.get(request.url.path)
        if body is None:
            return Response(status_code=404)
        html = request.url.path == "/page.csv"
        return Response(body, media_type="text/html" if html else "text/csv",
                        headers={} if html else {"Content-Disposition": 'attachment; filename="x.csv"'})
    running = Running(Starlette(routes=[Route("/{name}", serve)]), free_port())
    try:
        def result(path):
            d = Distribution("csv", "CSV", running.url + path, "text/csv", "", "", True, "", "")
            with httpx.Client() as client:
                return checks.check_distribution(client, layer, d).flags
        assert result("/big5.csv")["encoding_match"] is False
        flags = result("/reordered.csv")
        assert flags["encoding_match"] and not flags["desc_match"]
        assert result("/page.csv")["downloadable"] is False
        assert result("/missing.csv")["linkable"] is False
    finally:
        running.stop()


# --- data.gov.tw ----------------------------------------------------------------------------------

def test_datagov_push_creates_then_is_idempotent(served, env, portal):
    r = geocloud_cli("publish", "datagov", "districts", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)[0]["action"] == "create"
    dataset = portal.datasets[f"{ORG}-000106"]
    layer = get_catalog().layer("districts")
    assert dataset["title"] == layer.title.zh_TW and dataset["fieldDescription"] == field_description(layer)
    assert dataset["publisherOID"] == get_catalog().publisher.oid and dataset["accrualPeriodicity"] == "不定期"
    assert [d["format"] for d in dataset["distribution"]] == ["CSV", "GEOJSON", "SHP", "KML", "API"]
    assert [d["resourceID"] for d in dataset["distribution"]][:2] == [f"{ORG}-000106-001", f"{ORG}-000106-002"]
    csv_url = dataset["distribution"][0]["downloadURL"]
    got = httpx.get(csv_url, timeout=60)
    assert got.status_code == 200 and got.text.splitlines()[0] == ",".join(layer.csv_columns())
    sent = len(portal.requests)
    r = geocloud_cli("publish", "datagov", "districts", "--json", env=env)
    assert json.loads(r.stdout)[0]["action"] == "unchanged" and len(portal.requests) == sent
    row = status(env)[("districts", "datagov")]
    assert row["stale"] is False and row["pushed_version"] == row["live_version"] and row["quality_mark"] == "platinum"
    # the portal lost the dataset (deleted by hand): an update becomes a create again
    del portal.datasets[f"{ORG}-000106"]
    with psycopg.connect(served.db_url, autocommit=True) as conn:
        conn.execute("UPDATE geocloud.publications SET payload_sha256 = 'x' WHERE layer = 'districts'")
    r = geocloud_cli("publish", "datagov", "districts", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["action"] == "create"
    assert f"{ORG}-000106" in portal.datasets


def test_datagov_dry_run_sends_nothing(env, portal):
    sent = len(portal.requests)
    r = geocloud_cli("publish", "datagov", "roads", "--dry-run", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)[0]
    assert out["action"] == "planned" and out["detail"]["payload"]["identifier"] == f"{ORG}-000102"
    assert len(portal.requests) == sent and f"{ORG}-000102" not in portal.datasets


def test_only_public_layers_at_gold_reach_the_portal(env, portal):
    sent = len(portal.requests)
    r = geocloud_cli("publish", "datagov", "inspection_sites", env=env)
    assert r.returncode == 9 and "only public layers" in r.stdout
    # the server is unreachable at the public URL: nothing links, so the layer falls below gold
    r = geocloud_cli("publish", "datagov", "landmarks", "--json", env={**env, "GEOCLOUD_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 9
    out = json.loads(r.stdout)[0]
    assert out["action"] == "refused" and "below the gold mark" in out["message"] and "linkable" in out["message"]
    assert len(portal.requests) == sent


def test_datagov_failures_are_quoted_and_nothing_half_pushed_is_recorded(env, portal):
    before = status(env).get(("landmarks", "datagov"))
    assert before is None
    portal.fail_next = [503] * 3  # GEOCLOUD_PUBLISH_RETRIES defaults to 3: every attempt fails
    r = geocloud_cli("publish", "datagov", "landmarks", env=env)
    assert r.returncode == 8 and "service temporarily unavailable" in r.stdout and "3 attempts" in r.stdout
    portal.reject_field = "spatial"
    r = geocloud_cli("publish", "datagov", "landmarks", env=env)
    assert r.returncode == 8 and "rejected by the portal" in r.stdout and "spatial" in r.stdout
    portal.reject_field = None
    r = geocloud_cli("publish", "datagov", "landmarks", env={**env, "GEOCLOUD_DATAGOV_API_KEY": "wrong"})
    assert r.returncode == 8 and "invalid or missing API key" in r.stdout
    assert ("landmarks", "datagov") not in status(env) and f"{ORG}-000105" not in portal.datasets
    with psycopg.connect(env["GEOCLOUD_DATABASE_URL"]) as conn:
        failed = conn.execute("SELECT count(*) FROM geocloud.publish_attempts WHERE layer = 'landmarks' "
                              "AND target = 'datagov' AND action = 'failed'").fetchone()[0]
    assert failed == 3
    # two transient failures, then the portal works: the retries carry the push through
    portal.fail_next = [503, 502]
    r = geocloud_cli("publish", "datagov", "landmarks", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["action"] == "create"


def test_a_slow_portal_that_did_create_is_not_created_twice(env, portal):
    portal.slow_next = 1  # the create is carried out but answered after the client gave up
    r = geocloud_cli("publish", "datagov", "roads", "--json", env={**env, "GEOCLOUD_PUBLISH_TIMEOUT": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)[0]["action"] == "update"  # the retried create found it there
    methods = [m for m, path in portal.requests if path.endswith("/dataset") or path.endswith("000102")][-3:]
    assert methods == ["POST", "POST", "PUT"]
    assert status(env)[("roads", "datagov")]["stale"] is False


# --- TGOS -----------------------------------------------------------------------------------------

def test_tgos_unreachable_records_nothing(env):
    down = f"http://127.0.0.1:{free_port()}/csw"
    r = geocloud_cli("publish", "tgos", "landmarks", env={**env, "GEOCLOUD_TGOS_CSW_URL": down})
    assert r.returncode == 8 and "failed after 3 attempts" in r.stdout
    assert status(env).get(("landmarks", "tgos")) is None


def harvest(url: str) -> dict[str, MD_Metadata]:
    csw = CatalogueServiceWeb(url, timeout=30)
    csw.getrecords2(outputschema=GMD, esn="full", maxrecords=100)
    return dict(csw.records)


def test_tgos_push_then_harvest_every_record_back(served, env, tgos):
    r = geocloud_cli("publish", "tgos", "--all", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    outcomes = {o["layer"]: o for o in json.loads(r.stdout)}
    assert {i for i in outcomes if not i.startswith("service:")} == set(PUBLIC_TGOS)
    assert all(o["action"] == "insert" for o in outcomes.values())
    records = harvest(tgos.url)
    catalog = get_catalog()
    for layer_id in PUBLIC_TGOS:
        layer = catalog.layer(layer_id)
        md = records[layer.publishing.tgos_file_identifier]
        assert md.identification[0].title == layer.title.zh_TW
        assert md.stdname == "TWSMP" and md.identification[0].bbox is not None
    assert f"{ORG}-geocloud-ogcapi" in records and f"{ORG}-geocloud-wmts" in records
    assert not any("公安" in (md.identification[0].title or "") for md in records.values())
    # the bundle: the served UTF-8 Shapefile with .cpg and .prj, plus the record
    bundle = outcomes["districts"]["detail"]["bundle"]
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        assert {"districts.shp", "districts.shx", "districts.dbf", "districts.prj", "districts.cpg",
                "districts.xml"} <= names
        assert zf.read("districts.cpg").strip() == b"UTF-8"
        assert MD_Metadata(etree.fromstring(zf.read("districts.xml"))).identifier == "TW-07-387000000A-100006"
        zf.extractall(served.data_dir / "bundle-check")
    meta, _, _, fields = pyogrio.raw.read(served.data_dir / "bundle-check" / "districts.shp")
    with psycopg.connect(served.db_url) as conn:
        names = sorted(r[0] for r in conn.execute("SELECT name FROM live.districts"))
    assert meta["encoding"] == "UTF-8" and meta["crs"] == "EPSG:3826"
    assert sorted(fields[list(meta["fields"]).index("name")]) == names and "北屯區" in names
    r = geocloud_cli("publish", "tgos", "--all", "--json", env=env)
    again = {o["layer"]: o["action"] for o in json.loads(r.stdout)}
    assert all(again[i] == "unchanged" for i in PUBLIC_TGOS)
    assert len(harvest(tgos.url)) == len(records), "pushing again replaces, never duplicates"


# --- keeping current ------------------------------------------------------------------------------

def test_an_etl_publish_makes_pushes_stale_and_pending_pushes_them(served, env, tgos, portal):
    for target in ("tgos", "datagov"):
        r = geocloud_cli("publish", target, "districts", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    assert status(env)[("districts", "tgos")]["stale"] is False
    r = geocloud_cli("etl", "run", "districts", source_of(served.city, "districts"), "--force", env=env)
    assert r.returncode == 0, r.stderr
    rows = status(env)
    assert rows[("districts", "tgos")]["stale"] and rows[("districts", "datagov")]["stale"]
    r = geocloud_cli("publish", "pending", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    pushed = {(o["layer"], o["target"]): o for o in json.loads(r.stdout)}
    assert pushed[("districts", "tgos")]["action"] == "update" and pushed[("districts", "datagov")]["action"] == "update"
    rows = status(env)
    live = rows[("districts", "tgos")]["live_version"]
    assert rows[("districts", "tgos")]["pushed_version"] == live == rows[("districts", "datagov")]["pushed_version"]
    assert portal.datasets[f"{ORG}-000106"]["modified"] != ""
    assert harvest(tgos.url)["TW-07-387000000A-100006"].identification[0].edition == f"v{live}"
