"""Data safety in the ETL (issue #13): a damaged source never reaches the live layer, a run that
would take much away from a live layer stops unless forced, and NaN or infinite coordinates are
named as such. Sources are real files made from the sample city, broken the way deliveries break;
runs go through the real `geocloud etl run` command where the exit code and message matter."""

import csv
import json
import math
import re
import shutil
import sqlite3
import zipfile

import psycopg
import numpy as np
import pyogrio
import pytest
import rasterio
import yaml
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.errors import GuardRefused
from geocloud.etl import run_pipeline

from conftest import geocloud_cli, live_state, source_of


def _refused(code, pipeline, path, *texts, url, layer, args=(), env=None):
    """Run the CLI and check that it fails with ``code``, says ``texts`` and leaves ``layer`` as it was."""
    before = live_state(url, layer)
    out = geocloud_cli("etl", "run", pipeline, path, *args, env=env)
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    said = " ".join(out.stderr.split())  # as one line: the console wraps long messages
    assert "Traceback" not in said and "fix:" in said
    for text in texts:
        assert text in said, out.stderr
    assert live_state(url, layer) == before
    return said


def _last_run(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, status, guard FROM geocloud.etl_runs ORDER BY id DESC LIMIT 1").fetchone()


def _cut(path, share):
    """Keep the first ``share`` of a file's bytes, as an interrupted copy or download does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])


def _rewrite_buildings(src, dst, edit):
    meta, table = pyogrio.read_arrow(src, encoding="cp950")
    table = edit(table, meta["geometry_name"] or "wkb_geometry")
    pyogrio.write_arrow(table, dst, geometry_type="MultiPolygon", crs="EPSG:3826", encoding="cp950",
                        geometry_name=meta["geometry_name"] or "wkb_geometry")
    return dst


# --- GDAL read errors fail the run ------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True], ids=["loose", "zipped"])
def test_a_truncated_shp_with_intact_shx_and_dbf_is_refused(database, city_copy, zipped):
    shp = source_of(city_copy, "buildings")
    run_pipeline("buildings", shp)
    _cut(shp, 0.5)  # features 1000-2000 now lie past the end of the .shp; the .shx still lists them
    path = shp
    if zipped:
        path = shp.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as zf:
            for part in shp.parent.glob("buildings.*"):
                if part.suffix != ".zip":
                    zf.write(part, part.name)
    _refused(5, "buildings", path, f"{path}: GDAL could not read every record",
             "first bad record: feature 1000 (its geometry could not be read)", "Error in fread()",
             url=database, layer="buildings")
    assert _last_run(database)[1] == "failed"


def test_a_damaged_geopackage_page_is_refused(database, city_copy):
    """A page of the GeoPackage overwritten (a bad sector, a broken copy): SQLite reports the damage
    and GDAL stops reading the layer there; today's run published the features before it."""
    gpkg = source_of(city_copy, "topo")
    run_pipeline("topo", gpkg)
    with sqlite3.connect(gpkg) as conn:
        page_size, pages = conn.execute("PRAGMA page_size").fetchone()[0], conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    data = bytearray(gpkg.read_bytes())
    middle = pages // 2
    data[middle * page_size:(middle + 1) * page_size] = b"\xff" * page_size
    gpkg.write_bytes(bytes(data))
    _refused(5, "topo", gpkg, "GDAL could not read every record",
             "first bad record: layer 'contours', feature 27 (reading stopped after feature 26)",
             "database disk image is malformed", url=database, layer="topo_contours")


def test_a_dbf_from_a_shorter_export_is_refused(database, city_copy):
    """A .dbf holding 1500 of the 2000 records its .shx indexes (header and size consistent): GDAL
    reads 1500 features and says nothing; today's run published them."""
    shp = source_of(city_copy, "buildings")
    run_pipeline("buildings", shp)
    dbf = shp.with_suffix(".dbf")
    data = bytearray(dbf.read_bytes())
    header, record = int.from_bytes(data[8:10], "little"), int.from_bytes(data[10:12], "little")
    data[4:8] = (1500).to_bytes(4, "little")
    dbf.write_bytes(bytes(data[:header + 1500 * record]) + b"\x1a")
    _refused(5, "buildings", shp, f"{shp}: the .shx lists 2000 shapes but the .dbf holds 1500 records",
             url=database, layer="buildings")


def test_a_geometry_gdal_only_warns_about_is_refused(database, city, tmp_path):
    """GDAL reads a GeoJSON position with one coordinate as an empty geometry and only warns; today
    the feature was dropped as 'empty' and the rest published."""
    run_pipeline("zoning", source_of(city, "zoning"))
    text = source_of(city, "zoning").read_text(encoding="utf-8")
    first = re.search(r"\[(\d+\.\d+), \d+\.\d+\]", text)  # the first position of the first feature
    path = tmp_path / "zoning.geojson"
    path.write_text(text[:first.start()] + f"[{first.group(1)}]" + text[first.end():], encoding="utf-8")
    _refused(5, "zoning", path, f"{path}: GDAL could not read every record; first bad record: feature 1 (its "
             "geometry could not be read): OGRGeoJSONReadRawPoint(): Invalid coord dimension",
             url=database, layer="zoning")


@pytest.mark.parametrize("cog", [False, True], ids=["geotiff", "cog"])
def test_a_truncated_geotiff_is_refused_naming_the_first_bad_block(database, city_copy, tmp_path, cog):
    """Today the conversion stops with rasterio's bare 'Read failed' (exit 1, a traceback)."""
    tif = source_of(city_copy, "satellite")
    run_pipeline("satellite", tif)
    if cog:
        made = tmp_path / "satellite-cog.tif"
        cog_translate(tif, made, cog_profiles.get("deflate"), quiet=True)
        shutil.move(made, tif)
    _cut(tif, 0.6)
    before = _raster_state(database)
    out = geocloud_cli("etl", "run", "satellite", tif)
    assert out.returncode == 5, (out.returncode, out.stderr)
    said = " ".join(out.stderr.split())
    assert f"{tif}: GDAL could not read every block; first bad block: band 1, rows " in said, out.stderr
    assert "truncated or corrupt" in said and "Traceback" not in said
    assert _raster_state(database) == before
    assert sorted(p.name for p in (tmp_path / "data" / "rasters" / "satellite").iterdir()) == ["v1"]


def test_a_geotiff_with_a_nan_geotransform_is_refused(database, city_copy):
    tif = source_of(city_copy, "satellite")
    run_pipeline("satellite", tif)
    with rasterio.open(tif) as ds:
        profile, data = ds.profile, ds.read()
    t = profile["transform"]
    profile["transform"] = Affine(math.nan, t.b, t.c, t.d, t.e, t.f)
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(data)
    before = _raster_state(database)
    out = geocloud_cli("etl", "run", "satellite", tif)
    assert out.returncode == 5, (out.returncode, out.stderr)
    said = " ".join(out.stderr.split())
    assert "a corner coordinate of the image is NaN or infinite" in said and str(tif) in said
    assert _raster_state(database) == before


def _raster_state(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT layer, version, state, storage FROM geocloud.layer_versions "
                            "WHERE layer = 'satellite' ORDER BY version").fetchall()


# --- the shrink guard -------------------------------------------------------------------------


def _first_buildings(city_copy, n):
    return _rewrite_buildings(source_of(city_copy, "buildings"), city_copy / f"first-{n}.shp",
                              lambda table, geom: table.slice(0, n))


def test_the_guard_stops_a_run_removing_half_the_layer_and_force_publishes_it_recorded(database, city_copy):
    run_pipeline("buildings", source_of(city_copy, "buildings"))
    smaller = _first_buildings(city_copy, 999)  # a complete, valid file of the first 999 buildings
    _refused(10, "buildings", smaller, "the guard stopped this run before publishing; nothing changed",
                   "buildings: would remove 1001 of the 2000 live features (50.0%; the limit is 20%), "
                   "leaving 999 features", "--force", url=database, layer="buildings")
    run_id, status, guard = _last_run(database)
    assert status == "refused" and guard["forced"] is False
    assert {k: guard["findings"][0][k] for k in ("check", "live_count", "new_count", "removed")} == \
        {"check": "removed", "live_count": 2000, "new_count": 999, "removed": 1001}
    with psycopg.connect(database) as conn:  # the staged copy is gone too
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'staging'").fetchone()[0] == 0

    out = geocloud_cli("etl", "run", "buildings", smaller, "--force")
    assert out.returncode == 0, out.stderr
    assert "guard (overridden by --force): buildings: would remove 1001" in out.stdout
    assert live_state(database, "buildings")[:2] == (2, 999)
    forced_id, status, guard = _last_run(database)
    assert status == "published" and guard["forced"] is True and guard["operator"] == "tester"
    shown = json.loads(geocloud_cli("etl", "show", forced_id).stdout)
    assert shown["guard"]["forced"] is True and shown["guard"]["findings"][0]["removed_percent"] == 50.0
    assert "forced past the guard" in geocloud_cli("etl", "history", "buildings").stdout


def test_the_guard_limits_come_from_the_pipeline_or_the_settings(database, city_copy, project, monkeypatch):
    run_pipeline("buildings", source_of(city_copy, "buildings"))
    smaller = _first_buildings(city_copy, 1500)  # 25% removed
    with pytest.raises(GuardRefused, match=r"would remove 500 of the 2000 live features \(25.0%; the limit is 20%\)"):
        run_pipeline("buildings", smaller)
    monkeypatch.setenv("GEOCLOUD_ETL_MAX_REMOVED_PERCENT", "30")
    get_settings.cache_clear()
    assert run_pipeline("buildings", smaller).status == "published"

    fewer = _first_buildings(city_copy, 1000)  # a third of the live 1500 removed; the pipeline allows 40%
    cfg = yaml.safe_load((project / "etl" / "buildings.yml").read_text(encoding="utf-8"))
    cfg["rules"]["max_removed_percent"] = 40
    (project / "etl" / "buildings.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    report = run_pipeline("buildings", fewer)
    assert report.status == "published" and report.guard == {}


def test_the_guard_stops_a_geometry_type_change(database, city, project):
    """The catalog changed the layer's type since the live version was loaded: every client that
    reads it as points would break, so the switch waits for an explicit --force."""
    run_pipeline("landmarks", source_of(city, "landmarks"))
    layer = project / "layers" / "landmarks.yml"
    layer.write_text(layer.read_text(encoding="utf-8").replace("geometry: Point", "geometry: MultiPoint"),
                     encoding="utf-8")
    get_catalog.cache_clear()
    before = live_state(database, "landmarks")
    with pytest.raises(GuardRefused, match=r"landmarks: the geometry type would change from Point \(live\) to "
                                           r"MultiPoint") as refused:
        run_pipeline("landmarks", source_of(city, "landmarks"), force=False)
    assert refused.value.findings[0]["check"] == "geometry_type"
    assert live_state(database, "landmarks") == before


def test_the_guard_stops_an_extent_change_and_a_dry_run_says_so(database, city, tmp_path):
    run_pipeline("landmarks", source_of(city, "landmarks"))
    rows = list(csv.reader(source_of(city, "landmarks").open(encoding="utf-8-sig")))
    xs = [float(r[4]) for r in rows[1:]]
    rows[3][4] = f"{min(xs) - 0.5 * (max(xs) - min(xs)):.3f}"  # one landmark 50% of the width further west
    moved = tmp_path / "landmarks.csv"
    with moved.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    plan = run_pipeline("landmarks", moved, dry_run=True)
    assert plan.status == "planned"
    assert plan.guard["findings"][0]["check"] == "extent" and plan.guard["findings"][0]["edge"] == "west"
    err = _refused(10, "landmarks", moved, "landmarks: the extent would change beyond the limit: its west edge moves "
                   "by ", url=database, layer="landmarks")
    assert re.search(r"moves by 4\d\.\d% of the live extent's width \(the limit is 25%\); live \[120\.\d+, ", err), err
    assert geocloud_cli("etl", "run", "landmarks", moved, "--force").returncode == 0


# --- NaN and infinite coordinates -------------------------------------------------------------


def _poison_vertex(shp, feature, value):
    """Write ``value`` over the X of the second vertex of a polygon feature (1-based) in the .shp
    itself: GDAL refuses to write non-finite coordinates, but other software does."""
    shx = shp.with_suffix(".shx").read_bytes()
    record = 2 * int.from_bytes(shx[100 + 8 * (feature - 1):104 + 8 * (feature - 1)], "big")
    data = bytearray(shp.read_bytes())
    parts = int.from_bytes(data[record + 44:record + 48], "little")
    vertex = record + 8 + 44 + 4 * parts + 16
    data[vertex:vertex + 8] = np.float64(value).tobytes()
    shp.write_bytes(bytes(data))


def test_nan_and_infinite_vertices_in_a_shapefile_are_named(database, city_copy):
    shp = source_of(city_copy, "buildings")
    run_pipeline("buildings", shp)
    _poison_vertex(shp, 5, math.nan)
    _poison_vertex(shp, 7, -math.inf)
    err = _refused(5, "buildings", shp, "2 row(s) rejected",
                   "geometry: a coordinate is NaN or infinite (not a place); row rejected: correct or remove the "
                   "point or vertex in the source and export it again (2 row(s): 5, 7)", url=database, layer="buildings")
    assert "outside" not in err


def test_nan_and_inf_text_in_csv_coordinates_are_named(database, city, tmp_path):
    run_pipeline("landmarks", source_of(city, "landmarks"))
    lines = source_of(city, "landmarks").read_text(encoding="utf-8-sig").splitlines()
    for line, (col, value) in ((5, (4, "nan")), (7, (5, "-inf")), (9, (4, "NaN"))):
        parts = lines[line].split(",")
        parts[col] = value
        lines[line] = ",".join(parts)
    path = tmp_path / "landmarks.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _refused(5, "landmarks", path, "coordinate columns TWD97_X/TWD97_Y: a coordinate is NaN or infinite",
                   "(3 row(s): 6, 8, 10)", url=database, layer="landmarks")
    assert "not numbers" not in err and "outside" not in err


def test_warnings_outside_a_read_still_show_after_another_thread_restored_the_read_hook(recwarn):
    """catch_warnings is not thread-safe: a thread that enters it while a read runs saves the read's
    warning hook and puts it back after the read ended. Warnings raised later (a COG build's
    deprecation warning, say) must still be shown, not fail the code that raised them."""
    import warnings

    from geocloud.etl import gdalread

    gdalread._join()
    other = warnings.catch_warnings()
    other.__enter__()  # the other thread saves the hook the read installed
    gdalread._leave()
    other.__exit__(None, None, None)  # ... and restores it after the read's session ended
    try:
        warnings.warn("shown, not raised as a TypeError", PendingDeprecationWarning)
    finally:
        warnings.showwarning = warnings._showwarning_orig
    assert [str(w.message) for w in recwarn] == ["shown, not raised as a TypeError"]
