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


def test_wkb_coordinates_are_projected_in_place_as_geos_would():
    """``wkb.transform_xy`` rewrites the XY pairs inside WKB bytes (the Web Mercator copy of every
    loaded feature): the same geometries, part for part and ring for ring, as GEOS projecting them;
    a value it cannot walk (big-endian, 3D) sends the batch the long way instead of misreading it."""
    import numpy as np
    import pyarrow as pa
    import shapely
    from pyproj import Transformer

    from geocloud.etl.wkb import transform_xy

    to_3857 = Transformer.from_crs("EPSG:3826", "EPSG:3857", always_xy=True)
    square = lambda x, y, d: [(x, y), (x + d, y), (x + d, y + d), (x, y + d), (x, y)]  # noqa: E731
    geoms = np.array([
        shapely.Point(214000.5, 2673000.25),
        shapely.LineString([(214000, 2673000), (214100.125, 2673050), (214200, 2673000.5)]),
        shapely.Polygon(square(214000, 2673000, 100), [square(214010, 2673010, 10), square(214050, 2673050, 5)]),
        shapely.MultiPolygon([shapely.Polygon(square(215000, 2674000, 7)),
                              shapely.Polygon(square(216000, 2675000, 9), [square(216001, 2675001, 1)])]),
        shapely.MultiLineString([[(214000, 2673000), (214001, 2673001)], [(214002, 2673002), (214003, 2673003),
                                                                          (214004, 2673004)]]),
        shapely.MultiPoint([(214000, 2673000), (214500.5, 2673500.5)]),
    ])
    wkb = pa.array(shapely.to_wkb(geoms, byte_order=1), pa.binary())
    for values in (wkb, wkb.slice(2, 3)):  # a slice of a column: its bytes start mid-buffer
        got = shapely.from_wkb(transform_xy(values, to_3857.transform).to_numpy(zero_copy_only=False))
        want = shapely.transform(shapely.from_wkb(values.to_numpy(zero_copy_only=False)),
                                 lambda c: np.column_stack(to_3857.transform(c[:, 0], c[:, 1])))
        assert all(shapely.equals_exact(got, want, tolerance=0)) and (shapely.get_type_id(got) == shapely.get_type_id(want)).all()
        assert (shapely.get_num_coordinates(got) == shapely.get_num_coordinates(want)).all()
    assert transform_xy(wkb, to_3857.transform).to_pylist() != wkb.to_pylist()
    big_endian = pa.array(list(shapely.to_wkb(geoms[:2], byte_order=1)) + [shapely.to_wkb(geoms[2], byte_order=0)])
    with_z = pa.array([shapely.to_wkb(shapely.Point(214000, 2673000, 5))])
    assert transform_xy(big_endian, to_3857.transform) is None and transform_xy(with_z, to_3857.transform) is None
