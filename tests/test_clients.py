"""Real clients against a real server: GDAL's OAPIF driver, OWSLib, what QGIS does, and downloads."""

import csv
import io
import json
import shutil
import subprocess
import zipfile

import numpy as np
import psycopg
import pyogrio
import pytest
import shapely
from owslib.ogcapi.features import Features

VECTOR = {"addresses", "roads", "buildings", "zoning", "landmarks", "districts", "topo_contours", "topo_water",
          "topo_spot_heights", "topo_annotation"}


def _postgis_xy(served, layer, key, srid):
    with psycopg.connect(served.db_url) as conn:
        rows = conn.execute(
            f"SELECT {key}, ST_X(ST_Centroid(ST_Transform(geom, %s))), ST_Y(ST_Centroid(ST_Transform(geom, %s))) "
            f"FROM live.{layer}", (srid, srid)).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("crs, srid, tolerance", [("OGC:CRS84", 4326, 1e-7), ("EPSG:3826", 3826, 0.01)])
def test_gdal_oapif_copies_a_whole_layer(served, crs, srid, tolerance):
    layers = {name for name, _ in pyogrio.list_layers("OAPIF:" + served.url)}
    assert VECTOR <= layers
    meta, table = pyogrio.read_arrow("OAPIF:" + served.url, layer="buildings", CRS=crs)
    assert table.num_rows == 2000
    assert meta["crs"] == crs or "CRS84" in meta["crs"]
    geoms = shapely.from_wkb(table.column(meta["geometry_name"] or "wkb_geometry").to_numpy(zero_copy_only=False))
    ids = table.column("building_id").to_pylist()
    cx, cy = shapely.get_x(shapely.centroid(geoms)), shapely.get_y(shapely.centroid(geoms))
    truth = _postgis_xy(served, "buildings", "building_id", srid)
    exp = np.array([truth[i] for i in ids])
    assert np.allclose(cx, exp[:, 0], atol=tolerance) and np.allclose(cy, exp[:, 1], atol=tolerance)


def test_debian_ogr2ogr_copies_over_oapif(served, tmp_path):
    if shutil.which("ogr2ogr") is None:
        pytest.fail("ogr2ogr missing: scripts/dev installs gdal-bin")
    info = subprocess.run(["ogrinfo", "-ro", "-so", "OAPIF:" + served.url, "landmarks"], capture_output=True, text=True)
    assert "Feature Count: " in info.stdout
    count = int(info.stdout.split("Feature Count: ")[1].split()[0])
    out = tmp_path / "landmarks.gpkg"
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), "OAPIF:" + served.url, "landmarks"], check=True,
                   capture_output=True)
    assert pyogrio.read_info(out)["features"] == count > 0


def test_owslib_collections_queryables_and_filtered_items(served):
    api = Features(served.url)
    ids = {c["id"] for c in api.collections()["collections"]}
    assert VECTOR <= ids
    q = api.collection_queryables("buildings")
    assert "floors" in q["properties"]
    items = api.collection_items("buildings", filter="floors >= 6", limit=1000)
    with psycopg.connect(served.db_url) as conn:
        expected = conn.execute("SELECT count(*) FROM live.buildings WHERE floors >= 6").fetchone()[0]
    assert items["numberMatched"] == expected == len(items["features"])
    assert all(f["properties"]["floors"] >= 6 for f in items["features"])


def test_qgis_contract(served):
    """What QGIS's OAPIF provider does on connect and on load (qgsoapifprovider.cpp)."""
    landing = served.get("/", params={"f": "json"}).json()
    links = {link["rel"]: link for link in landing["links"]}
    oas = served.get(links["service-desc"]["href"].removeprefix(served.url)).json()
    limit = next(p for p in oas["paths"]["/collections/addresses/items"]["get"]["parameters"]
                 if isinstance(p, dict) and p.get("name") == "limit")["schema"]
    page = min(1000, limit["maximum"])
    conformance = set(served.get(links["conformance"]["href"].removeprefix(served.url)).json()["conformsTo"])
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conformance
    assert {"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
            "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
            "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
            "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2"} <= conformance
    coll = served.get("/collections/addresses").json()
    crs = coll["storageCrs"]
    assert crs.endswith("/3826")
    first = served.get("/collections/addresses/items", params={"limit": 1, "crs": crs}).json()
    total = first["numberMatched"]
    url, params, seen = "/collections/addresses/items", {"limit": page, "crs": crs}, []
    while url:
        body = served.get(url, params=params).json()
        seen += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url, params = (nxt[0].removeprefix(served.url), None) if nxt else (None, None)
    assert len(seen) == len(set(seen)) == total
    filtered = served.get("/collections/addresses/items", params={
        "limit": page, "crs": crs, "filter": "\"village\" = '惠來里'", "filter-lang": "cql2-text"}).json()
    assert filtered["numberMatched"] >= 1 and all(f["properties"]["village"] == "惠來里" for f in filtered["features"])
    assert filtered["features"][0]["geometry"]["coordinates"][0] > 100_000  # metres, as asked


def _download(served, layer, fmt, **params):
    r = served.get(f"/collections/{layer}/download", params={"f": fmt, **params})
    assert r.status_code == 200, r.text
    return r


def test_downloads_in_every_format(served, tmp_path):
    with psycopg.connect(served.db_url) as conn:
        n, version = conn.execute("SELECT feature_count, version FROM geocloud.layer_versions "
                                  "WHERE layer = 'landmarks' AND state = 'live'").fetchone()
    gj = _download(served, "landmarks", "geojson")
    assert f'filename="landmarks-v{version}.geojson"' in gj.headers["content-disposition"]
    assert len(gj.json()["features"]) == n
    c = _download(served, "landmarks", "csv")
    rows = list(csv.reader(io.StringIO(c.content.decode("utf-8"))))
    assert rows[0] == ["landmark_id", "name", "category", "address", "lon", "lat", "x_twd97", "y_twd97"]
    assert len(rows) == n + 1 and not c.content.startswith(b"\xef\xbb\xbf")
    bom = _download(served, "landmarks", "csv-bom")
    assert bom.content.startswith(b"\xef\xbb\xbf") and "-bom.csv" in bom.headers["content-disposition"]
    shp = _download(served, "landmarks", "shp")
    zf = zipfile.ZipFile(io.BytesIO(shp.content))
    names = set(zf.namelist())
    assert {"landmarks.shp", "landmarks.shx", "landmarks.dbf", "landmarks.prj", "landmarks.cpg"} <= names
    assert zf.read("landmarks.cpg").decode().strip().upper() in ("UTF-8", "UTF8")
    zf.extractall(tmp_path / "shp")
    meta, table = pyogrio.read_arrow(tmp_path / "shp" / "landmarks.shp")
    assert table.num_rows == n and meta["crs"] == "EPSG:3826" and "臺中市政府" in table.column("name").to_pylist()
    gpkg = _download(served, "landmarks", "gpkg")
    (tmp_path / "x.gpkg").write_bytes(gpkg.content)
    assert pyogrio.read_info(tmp_path / "x.gpkg")["features"] == n
    kml = _download(served, "landmarks", "kml")
    (tmp_path / "x.kml").write_bytes(kml.content)
    assert pyogrio.read_info(tmp_path / "x.kml")["features"] == n


def test_filtered_download_and_polygon_csv(served):
    with psycopg.connect(served.db_url) as conn:
        expected = conn.execute("SELECT count(*) FROM live.buildings WHERE floors >= 5").fetchone()[0]
    gj = _download(served, "buildings", "geojson", filter="floors >= 5")
    assert len(gj.json()["features"]) == expected
    c = _download(served, "buildings", "csv", filter="floors >= 5")
    rows = list(csv.reader(io.StringIO(c.content.decode("utf-8"))))
    assert rows[0][-1] == "wkt" and rows[1][-1].startswith("MULTIPOLYGON") and len(rows) == expected + 1
    boxed = _download(served, "buildings", "geojson", bbox="120.6,24.1,120.7,24.2")
    assert 0 < len(boxed.json()["features"]) < 2000
    empty = _download(served, "buildings", "gpkg", filter="floors > 1000")
    assert empty.content[:16] == b"SQLite format 3\x00"
    assert json.loads(_download(served, "buildings", "geojson", filter="floors > 1000").content)["features"] == []
