"""Bad input: each case exits non-zero with a clear message naming the problem, and the live layer
stays exactly as it was (tested through the real `geocloud etl run` command)."""

import hashlib
import shutil

import numpy as np
import psycopg
import pyogrio
import pytest
import yaml

from geocloud.etl import run_pipeline

from conftest import geocloud_cli, live_state, source_of


def _copy_shapefile(src, dst_dir, name, skip=()):
    dst_dir.mkdir(exist_ok=True)
    for part in src.parent.glob(src.stem + ".*"):
        if part.suffix not in skip:
            shutil.copy(part, dst_dir / (name + part.suffix))
    return dst_dir / f"{name}.shp"


def _with_cells(city, tmp_path, pipeline: str, row: int, cells: dict[int, str]):
    """A copy of the sample source with some cells of one line (0 = header) changed."""
    lines = source_of(city, pipeline).read_text(encoding="utf-8-sig").splitlines()
    parts = lines[row].split(",")
    for col, value in cells.items():
        parts[col] = value
    lines[row] = ",".join(parts)
    path = tmp_path / f"{pipeline}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _refused(pipeline, path, *texts, env=None, layer=None, url=None):
    before = live_state(url, layer) if url else None
    out = geocloud_cli("etl", "run", pipeline, path, env=env)
    assert out.returncode == 5, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    for text in texts:
        assert text in out.stderr, out.stderr
    assert "fix:" in out.stderr
    if url:
        assert live_state(url, layer) == before
    return out.stderr


@pytest.fixture
def loaded(city_loaded):
    """A database of this test's own with the sample city loaded (a copy of the run's one load)."""
    return city_loaded


def test_truncated_shapefile(loaded, city, tmp_path):
    shp = _copy_shapefile(source_of(city, "buildings"), tmp_path, "buildings")
    data = shp.read_bytes()
    shp.write_bytes(data[: len(data) // 2])
    dbf = shp.with_suffix(".dbf")
    dbf.write_bytes(dbf.read_bytes()[:5000])
    _refused("buildings", shp, "truncated", "buildings.shp", layer="buildings", url=loaded)


def test_corrupt_shp_with_intact_dbf(loaded, city, tmp_path):
    shp = _copy_shapefile(source_of(city, "buildings"), tmp_path, "buildings")
    data = bytearray(shp.read_bytes())
    data[:100] = b"\x00" * 100  # header destroyed
    shp.write_bytes(bytes(data))
    _refused("buildings", shp, "GDAL cannot read this file", layer="buildings", url=loaded)


def test_missing_shapefile_part(loaded, city, tmp_path):
    shp = _copy_shapefile(source_of(city, "buildings"), tmp_path, "buildings", skip=(".dbf",))
    _refused("buildings", shp, "the shapefile's .dbf file is missing", layer="buildings", url=loaded)


def test_missing_prj_and_no_pipeline_crs(loaded, city, tmp_path):
    shp = _copy_shapefile(source_of(city, "districts"), tmp_path, "districts", skip=(".prj",))
    _refused("districts", shp, "declares no CRS", "source.crs", layer="districts", url=loaded)


def test_big5_read_as_utf8_names_row_and_field(loaded, city, project, tmp_path):
    cfg = yaml.safe_load((project / "etl" / "roads.yml").read_text(encoding="utf-8"))
    cfg["source"]["encoding"] = "utf-8"
    (project / "etl" / "roads.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    err = _refused("roads", source_of(city, "roads"), "row 1, field 'RoadName'", "not valid UTF-8",
                   "it decodes as Big5 (CP950)", env={"GEOCLOUD_PROJECT_DIR": str(project)}, layer="roads", url=loaded)
    assert "source.encoding" in err


@pytest.mark.parametrize("pipeline, name", [("landmarks", "landmarks.csv"), ("zoning", "zoning.geojson")])
def test_empty_file(loaded, tmp_path, pipeline, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _refused(pipeline, path, "the file is empty (0 bytes)", layer=pipeline, url=loaded)


def test_geojson_without_features(loaded, tmp_path):
    path = tmp_path / "zoning.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    _refused("zoning", path, "holds no features", layer="zoning", url=loaded)


def test_csv_with_header_only(loaded, city, tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text(source_of(city, "landmarks").read_text(encoding="utf-8-sig").splitlines()[0] + "\n",
                    encoding="utf-8")
    _refused("landmarks", path, "header but no data rows", layer="landmarks", url=loaded)


def test_wrong_geometry_type(loaded, city):
    _refused("buildings", source_of(city, "roads"), "wrong geometry type", "holds LineString features",
             "layer 'buildings' holds MultiPolygon", layer="buildings", url=loaded)


def test_missing_required_field(loaded, city, tmp_path):
    meta, table = pyogrio.read_arrow(source_of(city, "buildings"), encoding="cp950")
    table = table.rename_columns(["BLDGID" if c == "BLDG_ID" else c for c in table.column_names])
    dst = tmp_path / "buildings.shp"
    pyogrio.write_arrow(table, dst, geometry_type="MultiPolygon", crs="EPSG:3826", encoding="cp950",
                        geometry_name=meta["geometry_name"] or "wkb_geometry")
    _refused("buildings", dst, "missing required field 'building_id'", "no column BLDG_ID",
             "the file has 'BLDGID'", layer="buildings", url=loaded)


def test_required_value_empty_rejects_row_and_names_it(loaded, city, tmp_path):
    path = _with_cells(city, tmp_path, "landmarks", 3, {1: ""})  # 名稱 (name) is required
    _refused("landmarks", path, "required field 'name' (column 名稱) is empty", "(1 row(s): 4)",
             layer="landmarks", url=loaded)


def test_degrees_in_a_projected_csv(loaded, city, tmp_path):
    src = source_of(city, "addresses")
    lines = src.read_text(encoding="utf-8-sig").splitlines()
    out = [lines[0]]
    for line in lines[1:50]:
        c = line.split(",")
        c[9], c[10] = c[11], c[12]  # WGS84 degrees typed into the TWD97 columns
        out.append(",".join(c))
    path = tmp_path / "addresses.csv"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    _refused("addresses", path, "outside Taichung City", "look like longitude/latitude degrees",
             layer="addresses", url=loaded)


def test_swapped_axes(loaded, city, tmp_path):
    src = source_of(city, "landmarks")
    lines = src.read_text(encoding="utf-8-sig").splitlines()
    out = [lines[0]] + [",".join(c[:4] + [c[5], c[4]]) for c in (line.split(",") for line in lines[1:])]
    path = tmp_path / "landmarks.csv"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    _refused("landmarks", path, "X and Y look swapped", layer="landmarks", url=loaded)


def test_geojson_claiming_wgs84_but_in_metres(loaded, city, tmp_path):
    text = source_of(city, "zoning").read_text(encoding="utf-8").replace(
        "urn:ogc:def:crs:EPSG::3826", "urn:ogc:def:crs:OGC:1.3:CRS84")
    path = tmp_path / "zoning.geojson"
    path.write_text(text, encoding="utf-8")
    _refused("zoning", path, "look like metres but the declared CRS is geographic", layer="zoning", url=loaded)


def test_outside_taiwan(loaded, city, tmp_path):
    path = _with_cells(city, tmp_path, "landmarks", 2, {4: "900000", 5: "1200000"})
    _refused("landmarks", path, "1 feature(s) lie outside Taichung City", "(rows 3)", layer="landmarks", url=loaded)


def test_misspelt_csv_header(loaded, city, tmp_path):
    text = source_of(city, "addresses").read_text(encoding="utf-8-sig").replace("TWD97橫坐標", "TWD97橫座標", 1)
    path = tmp_path / "addresses.csv"
    path.write_text(text, encoding="utf-8-sig")
    _refused("addresses", path, "coordinate column TWD97橫坐標 not found", "'TWD97橫座標': a misspelt header?",
             layer="addresses", url=loaded)


def test_misspelt_attribute_header(loaded, city, tmp_path):
    text = source_of(city, "addresses").read_text(encoding="utf-8-sig").replace(",號,", ",号,", 1)
    path = tmp_path / "addresses.csv"
    path.write_text(text, encoding="utf-8-sig")
    _refused("addresses", path, "missing required field 'number'", layer="addresses", url=loaded)


def test_non_numeric_coordinates_name_rows(loaded, city, tmp_path):
    path = _with_cells(city, tmp_path, "landmarks", 5, {4: "abc"})
    _refused("landmarks", path, "coordinate columns TWD97_X/TWD97_Y are empty or not numbers", "(1 row(s): 6)",
             layer="landmarks", url=loaded)


def test_a_date_that_is_not_a_date_is_left_empty_and_named(database, city, tmp_path):
    lines = source_of(city, "road-works").read_text(encoding="utf-8-sig").splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[3], "尚未決定", 1)  # row 3's start date
    path = tmp_path / "road-works.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_pipeline("road-works", path)
    assert report.status == "published"
    issue = next(i for i in report.quality["issues"] if "starts_on" in i["message"])
    assert "not a date (尚未決定)" in issue["message"] and issue["rows"] == [4] and issue["severity"] == "warning"
    with psycopg.connect(database) as conn:
        permit = lines[3].split(",")[0]
        assert conn.execute("SELECT starts_on FROM live.road_works WHERE permit_id = %s", (permit,)).fetchone() == (None,)


def test_unknown_zoning_code(loaded, city, tmp_path):
    text = source_of(city, "zoning").read_text(encoding="utf-8").replace('"A02120"', '"Z99999"', 1)
    path = tmp_path / "zoning.geojson"
    path.write_text(text, encoding="utf-8")
    _refused("zoning", path, "分區代碼 not in the national zoning code table (Z99999)", layer="zoning", url=loaded)


def test_duplicate_natural_keys(loaded, city, tmp_path):
    lines = source_of(city, "landmarks").read_text(encoding="utf-8-sig").splitlines()
    lines.append(lines[1])
    path = tmp_path / "landmarks.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _refused("landmarks", path, "duplicate natural key 'landmark_id'", layer="landmarks", url=loaded)


def test_unreadable_geotiff(loaded, tmp_path):
    path = tmp_path / "satellite.tif"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with psycopg.connect(loaded) as conn:
        before = conn.execute("SELECT version, storage FROM geocloud.layer_versions WHERE state = 'live' "
                              "AND layer = 'satellite'").fetchone()
    _refused("satellite", path, "not a readable GeoTIFF", "satellite.tif")
    with psycopg.connect(loaded) as conn:
        after = conn.execute("SELECT version, storage FROM geocloud.layer_versions WHERE state = 'live' "
                             "AND layer = 'satellite'").fetchone()
    assert after == before == (1, "rasters/satellite/v1")


def test_wrong_format_for_pipeline(loaded, city):
    _refused("buildings", source_of(city, "zoning"), "expected a shapefile file", layer="buildings", url=loaded)


def test_unknown_pipeline_and_missing_file(database, tmp_path):
    out = geocloud_cli("etl", "run", "nope", tmp_path / "x.shp")
    assert out.returncode == 6 and "unknown pipeline 'nope'" in out.stderr and "buildings" in out.stderr
    out = geocloud_cli("etl", "run", "roads", tmp_path / "x.shp")
    assert out.returncode == 5 and "file not found" in out.stderr


def test_failed_runs_are_recorded(loaded, tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_bytes(b"")
    geocloud_cli("etl", "run", "landmarks", path)
    with psycopg.connect(loaded) as conn:
        status, error, sha = conn.execute(
            "SELECT status, error, source_sha256 FROM geocloud.etl_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and "empty" in error
    assert sha == hashlib.sha256(b"").hexdigest()  # what was delivered, even when it could not be loaded
