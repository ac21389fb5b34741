"""The generated sample city: deterministic, and in the formats agencies really deliver."""

import csv
import hashlib
import json
import time

import httpx
import pyogrio
import rasterio

from geocloud import db
from geocloud.access import agencies
from geocloud.catalog import get_catalog
from geocloud.cli import demo_agency
from geocloud.sample import generate

from conftest import geocloud_cli


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_city(tmp_path, city):
    again = tmp_path / "again"
    generate(again)
    for rel in ("addresses/taichung-addresses.csv", "zoning/zoning.geojson", "landmarks/landmarks.csv",
                "roads/roads.shp", "buildings/buildings.shp", "bike-stations/youbike-stations.csv"):
        assert _digest(city / rel) == _digest(again / rel), rel


def test_manifest_names_every_pipeline_source(city):
    manifest = json.loads((city / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["pipelines"]) == {"addresses", "roads", "buildings", "zoning", "landmarks", "districts",
                                          "topo", "satellite", "topo-sheets",
                                          "inspection-sites", "road-works"}
    for rel in manifest["pipelines"].values():
        assert (city / rel).exists(), rel
    assert manifest["counts"]["buildings"] == 2000


def test_address_csv_is_the_city_monthly_format(city):
    path = city / "addresses" / "taichung-addresses.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(path.open(encoding="utf-8-sig")))
    assert rows[0] == ["省市縣市代碼", "鄉鎮市區代碼", "村里", "鄰", "街_路段", "地區", "巷", "弄", "號",
                       "TWD97橫坐標", "TWD97縱坐標", "WGS84經度", "WGS84緯度"]
    assert rows[1][:9] == ["66", "6600600", "惠來里", "045", "臺灣大道三段", "", "", "", "９９號"]
    numbers = [r[8] for r in rows[1:]]
    assert any("之" in n for n in numbers) and any("樓" in n for n in numbers)
    assert any(any("０" <= c <= "９" for c in n) for n in numbers)
    assert all(len(r[3]) in (0, 3) for r in rows[1:])  # zero-padded 鄰 (or moved into 村里)


def test_shapefiles_carry_big5_the_ways_agencies_do(city):
    assert (city / "roads" / "roads.cpg").read_text() == "950"
    assert not (city / "buildings" / "buildings.cpg").exists()
    assert (city / "buildings" / "buildings.dbf").read_bytes()[29] == 0x78
    assert "TWD_1997" in (city / "buildings" / "buildings.prj").read_text() or \
        "TWD97" in (city / "buildings" / "buildings.prj").read_text()
    table = pyogrio.read_arrow(city / "roads" / "roads.shp", encoding="cp950")[1]
    assert "瓦■路" in set(table.column("RoadName").to_pylist())
    assert (city / "districts" / "districts.cpg").read_text() == "UTF-8"


def test_zoning_geojson_has_legacy_crs_and_truncated_names(city):
    doc = json.loads((city / "zoning" / "zoning.geojson").read_text(encoding="utf-8"))
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::3826"
    props = doc["features"][0]["properties"]
    assert {"使用分", "分區代", "建蔽率", "容積率", "計畫_1"} <= set(props)
    assert isinstance(props["分區代"], str) and len(props["分區代"]) == 6


def test_topo_geopackage_and_rasters(city):
    layers = {name for name, _ in pyogrio.list_layers(city / "topo" / "topo-1000.gpkg")}
    assert layers == {"contours", "water", "points"}
    with rasterio.open(city / "satellite" / "satellite.tif") as ds:
        assert ds.crs.to_epsg() == 3826 and ds.count == 3
    sheets = sorted((city / "topo-sheets").glob("*.tif"))
    assert len(sheets) == 2


def test_scale_controls_size_and_cli_reports_counts(tmp_path):
    out = geocloud_cli("sample", "generate", tmp_path / "small", "--scale", "0.1")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "small" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["buildings"] == 200
    assert pyogrio.read_info(tmp_path / "small" / "buildings" / "buildings.shp")["features"] == 200
    assert "buildings: 200" in out.stdout


def test_the_demo_registers_the_bike_stations_over_http_as_the_bureau_would(city, database, tmp_path):
    """The demo's agency step (as `geocloud demo --no-serve` runs it, on a server started briefly):
    the sample's YouBike CSV, in WGS84 inside the city, registered, loaded and approved over HTTP."""
    manifest = json.loads((city / "manifest.json").read_text(encoding="utf-8"))
    spec = manifest["agency_layers"]["bike_stations"]
    rows = list(csv.DictReader((city / spec["source"]).open(encoding="utf-8")))
    assert list(rows[0]) == ["場站代號", "場站名稱", "場站區域", "地址", "總停車格", "緯度", "經度"]
    assert len(rows) == manifest["counts"]["bike-stations"] == 120
    assert all(120.5 < float(r["經度"]) < 120.9 and 24.0 < float(r["緯度"]) < 24.3 for r in rows)
    with db.transaction() as conn:
        agencies.sync(conn, get_catalog(), "tester")
    editor, admin = demo_agency.agency_keys(spec["owner"])
    with demo_agency.brief_server(demo_agency.free_port(), tmp_path / "server.log") as base:
        steps = demo_agency.register(base, city, manifest, editor, admin)
        deadline = time.monotonic() + 15  # the server follows the registry within seconds
        while (r := httpx.get(f"{base}/collections/bike_stations/items?f=json&limit=200")).status_code != 200 \
                and time.monotonic() < deadline:
            time.sleep(0.3)
    assert [(request, outcome) for _, request, outcome in steps] == [
        ("PUT 201", "draft"), ("POST 200", "published, {'bike_stations': 120} loaded"),
        ("POST 200", "pending_review"), ("POST 200", "live")]
    assert steps[-1][0] == "bike_stations: review (GIS office admin)"
    hall = next(f for f in r.json()["features"] if f["properties"]["station_id"] == "500601001")
    assert hall["properties"]["name"] == "YouBike2.0_臺中市政府" and len(r.json()["features"]) == 120
    assert abs(hall["geometry"]["coordinates"][0] - 120.647297) < 1e-6
    with demo_agency.brief_server(demo_agency.free_port(), tmp_path / "again.log") as base:  # the demo run again
        again = demo_agency.register(base, city, manifest, editor, admin)
    assert [(request, outcome) for _, request, outcome in again][-2:] == [("POST 200", "live"), ("-", "not needed (live)")]
    lines = demo_agency.curl_lines("http://127.0.0.1:8000", city, manifest, editor, admin)
    assert editor in lines and admin in lines and f"--data-binary @{city / spec['source']}" in lines
