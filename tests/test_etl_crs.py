"""CRS handling: the TWD67 trap (EPSG:15487, never Ballpark), .prj identification, reprojection."""

import psycopg
import pytest
from pyproj import CRS

from geocloud.etl import run_pipeline
from geocloud.etl.crs import check_proj_database, identify, reprojection

from conftest import needs_shared


def test_proj_database_has_epsg_15487():
    check_proj_database()


def test_twd67_goes_through_epsg_15487_never_ballpark():
    to_97 = reprojection(CRS.from_epsg(3828).to_wkt(), CRS.from_epsg(3826).to_wkt())
    x, y = to_97.xy([213331.74], [2673214.11])
    assert (x[0], y[0]) == (pytest.approx(214160.33, abs=0.02), pytest.approx(2673007.20, abs=0.02))
    to_wgs = reprojection(CRS.from_epsg(3828).to_wkt(), CRS.from_epsg(4326).to_wkt())
    assert "TWD67 / TM2 zone 121 to TWD97 / TM2 zone 121" in to_wgs.description
    assert "ballpark" not in to_wgs.description.lower()
    lon, lat = to_wgs.xy([213331.74], [2673214.11])
    # the City Hall check point: EPSG:3826 (214160.2912, 2673008.3139) = 120.647296502, 24.1619892378
    assert lon[0] == pytest.approx(120.6472965, abs=2e-5) and lat[0] == pytest.approx(24.1619892, abs=2e-5)
    geographic67 = reprojection(CRS.from_epsg(3821).to_wkt(), CRS.from_epsg(3826).to_wkt())
    assert "15487" in geographic67.description or "TWD67 / TM2 zone 121 to TWD97" in geographic67.description


def test_twd97_to_wgs84_matches_the_city_check_point():
    r = reprojection(CRS.from_epsg(3826).to_wkt(), CRS.from_epsg(4326).to_wkt())
    lon, lat = r.xy([214160.2912], [2673008.3139])
    assert lon[0] == pytest.approx(120.647296502, abs=1e-6) and lat[0] == pytest.approx(24.1619892378, abs=1e-6)


def test_twd67_csv_lands_where_twd97_says(database, project, tmp_path):
    (project / "etl" / "landmarks-twd67.yml").write_text(
        "pipeline: landmarks-twd67\ndescription: legacy landmarks in TWD67\n"
        "source: {format: csv, crs: 'EPSG:3828', x: [X67], y: [Y67]}\n"
        "outputs:\n  - layer: landmarks\n    fields: {landmark_id: id, name: name}\n", encoding="utf-8")
    src = tmp_path / "legacy.csv"
    src.write_text("id,name,X67,Y67\nL1,臺中市政府,213331.74,2673214.11\n", encoding="utf-8")
    report = run_pipeline("landmarks-twd67", src)
    assert "TWD67 / TM2 zone 121 to TWD97 / TM2 zone 121" in report.transformation
    with psycopg.connect(database) as conn:
        x, y = conn.execute("SELECT ST_X(geom), ST_Y(geom) FROM live.landmarks").fetchone()
    assert (x, y) == (pytest.approx(214160.33, abs=0.02), pytest.approx(2673007.20, abs=0.02))


def test_wgs84_geojson_is_reprojected_to_storage_crs(database, project, tmp_path):
    (project / "etl" / "landmarks-geojson.yml").write_text(
        "pipeline: landmarks-geojson\ndescription: landmarks as GeoJSON in WGS84\nsource: {format: geojson}\n"
        "outputs:\n  - layer: landmarks\n    fields: {landmark_id: id, name: name}\n", encoding="utf-8")
    src = tmp_path / "lm.geojson"
    src.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"L1","name":"市府"},'
                   '"geometry":{"type":"Point","coordinates":[120.647296502,24.1619892378]}}]}', encoding="utf-8")
    report = run_pipeline("landmarks-geojson", src)
    assert report.crs.startswith("EPSG:4326")
    with psycopg.connect(database) as conn:
        x, y = conn.execute("SELECT ST_X(geom), ST_Y(geom) FROM live.landmarks").fetchone()
    assert (x, y) == (pytest.approx(214160.2912, abs=0.05), pytest.approx(2673008.3139, abs=0.05))


def test_real_nlsc_prj_gcs_twd97_2020_is_identified():
    prj = needs_shared("shapefile", "Village_Sanhe.prj")
    crs = identify(prj.read_text(), str(prj))
    assert crs.to_epsg() == 3824
