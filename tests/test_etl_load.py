"""Loading the sample city through the real ETL: counts, normalization, diffs, versions, rollback."""

import gc
import itertools
import json
import operator
import os
import shutil
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyogrio
import pytest
import rasterio
import shapely
from rio_cogeo.cogeo import cog_validate

from geocloud.catalog import get_catalog
from geocloud.errors import Conflict, InputError, NotFound
from geocloud.etl import rollback_layer, run_pipeline, stage
from geocloud.etl.parallel import WORKER_NICENESS, WORKERS, Processes, in_order
from geocloud.etl.publish import KEEP_VERSIONS
from geocloud.etl.sources import HEAD_BATCHES, _spans

from conftest import MANIFEST_PIPELINES, geocloud_cli, live_state, source_of


def load_all(city):
    return {p: run_pipeline(p, source_of(city, p)) for p in MANIFEST_PIPELINES}


def test_the_whole_sample_city_loads(database, city):
    reports = load_all(city)
    assert {r.status for r in reports.values()} == {"published"}
    manifest = json.loads((city / "manifest.json").read_text(encoding="utf-8"))["counts"]
    with psycopg.connect(database) as conn:
        count = lambda t: conn.execute(f"SELECT count(*) FROM live.{t}").fetchone()[0]  # noqa: E731
        assert count("buildings") == manifest["buildings"] == 2000
        assert count("roads") == manifest["roads"]
        assert count("districts") == 29
        assert count("zoning") == manifest["zoning"]
        assert count("landmarks") == manifest["landmarks"]
        assert count("addresses") == manifest["addresses"]
        assert count("topo_contours") == manifest["topo"]["contours"]
        assert count("topo_water") == manifest["topo"]["water"]
        assert count("topo_spot_heights") == 400
        assert count("topo_annotation") == manifest["topo"]["points"] - 400 - 3
        hall = conn.execute(
            "SELECT full_address, address_key, village, neighborhood, road, section, number, ST_X(geom), ST_Y(geom), "
            "ST_SRID(geom) FROM live.addresses WHERE raw_address = '臺灣大道三段９９號'").fetchone()
        assert hall[:7] == ("臺中市西屯區臺灣大道三段99號", "臺中市西屯區臺灣大道三段99號", "惠來里", 45, "臺灣大道", "三", "99")
        assert hall[7:] == (pytest.approx(214160.2912, abs=1e-4), pytest.approx(2673008.3139, abs=1e-4), 3826)
        floor = conn.execute("SELECT number, floor, lane, alley FROM live.addresses WHERE raw_address LIKE '%%21號四樓之5'").fetchone()
        assert floor == ("21", "4樓之5", "67", "28")
        assert conn.execute("SELECT number FROM live.addresses WHERE raw_address LIKE '%%４９６一５號'").fetchone()[0] == "496之5"
        assert conn.execute("SELECT count(*) FROM live.roads WHERE name LIKE '文心路%%段'").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM live.buildings WHERE structure = '鋼筋混凝土造'").fetchone()[0] > 0
        assert conn.execute("SELECT pg_typeof(floors)::text FROM live.buildings LIMIT 1").fetchone()[0] == "integer"
        z = conn.execute("SELECT zone_type, zone_category, coverage_ratio, floor_area_ratio, color FROM live.zoning "
                         "WHERE zone_code = 'A02120' LIMIT 1").fetchone()
        assert z == ("土地使用分區", "商業區", 80.0, 320.0, "255,0,63")
        assert conn.execute("SELECT coverage_ratio FROM live.zoning WHERE zone_code = 'C10510' LIMIT 1").fetchone()[0] is None
        assert conn.execute("SELECT GeometryType(geom) FROM live.buildings LIMIT 1").fetchone()[0] == "MULTIPOLYGON"
        for idx in ("buildings", "addresses"):
            indexes = {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname='live' AND tablename=%s", (idx,))}
            assert any("gist" in i for i in indexes) and any("UNIQUE" in i for i in indexes)
        # analyzed for the planner, but for the Web Mercator copy of the geometry, which no query selects by
        analyzed = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_stats WHERE schemaname = 'live' AND tablename = 'buildings'")}
        assert {"building_id", "structure", "geom"} <= analyzed and "geom_3857" not in analyzed
    topo = reports["topo"]
    assert topo.quality["skipped_feature_codes"] == {"99999": 3}
    roads = reports["roads"]
    assert "Big5" in roads.encoding and ".cpg" in roads.encoding
    assert any("missing from Big5" in i["message"] for i in roads.quality["issues"])
    assert "LDID 120" in reports["buildings"].encoding
    # rasters: a valid COG in the storage CRS and a web-optimized variant
    sat = reports["satellite"]
    folder = sat.report_path.rsplit("/reports/", 1)[0] + "/rasters/satellite/v1"
    assert cog_validate(f"{folder}/satellite.tif")[0]
    with rasterio.open(f"{folder}/satellite.tif") as ds:
        assert ds.crs.to_epsg() == 3826 and ds.overviews(1)
    with rasterio.open(f"{folder}/satellite-webmercator.tif") as ds:
        assert ds.crs.to_epsg() == 3857
    sheets = reports["topo-sheets"].report_path.rsplit("/reports/", 1)[0] + "/rasters/topo_sheets/v1/topo_sheets.tif"
    with rasterio.open(sheets) as ds:  # two 500 m sheets side by side make one 1000 m mosaic
        assert round(ds.bounds.right - ds.bounds.left) == 1000


def test_every_run_writes_a_quality_report(database, city):
    report = run_pipeline("zoning", source_of(city, "zoning"))
    saved = json.loads(open(report.report_path, encoding="utf-8").read())
    assert saved["run_id"] == report.run_id and saved["quality"]["read"] == saved["counts"]["read"]
    issue = next(i for i in saved["quality"]["issues"] if "建蔽率" in i["message"])
    assert issue["severity"] == "warning" and "不予規定" in issue["message"] and issue["rows"]


def _rewrite_buildings(src, dst, edit):
    meta, table = pyogrio.read_arrow(src, encoding="cp950")
    table = edit(table)
    pyogrio.write_arrow(table, dst, geometry_type="MultiPolygon", crs="EPSG:3826", encoding="cp950",
                        geometry_name="wkb_geometry" if "wkb_geometry" in table.column_names else "geometry")


def test_update_diff_counts_and_changed_area(database, city, tmp_path):
    src = source_of(city, "buildings")
    run_pipeline("buildings", src)

    def edit(table):
        ids = table.column("BLDG_ID").to_pylist()
        geom_name = "wkb_geometry" if "wkb_geometry" in table.column_names else "geometry"
        geoms = shapely.from_wkb(table.column(geom_name).to_numpy(zero_copy_only=False))
        keep = np.ones(len(ids), dtype=bool)
        keep[:5] = False  # 5 removed
        geoms[10] = shapely.transform(geoms[10], lambda c: c + 3.0)  # 1 moved
        floors = table.column("樓層數").to_pylist()
        floors[11] = floors[11] + 1  # 1 attribute change
        table = table.set_column(table.column_names.index("樓層數"), "樓層數", pa.array(floors, pa.int32()))
        table = table.set_column(table.column_names.index(geom_name), geom_name, pa.array(shapely.to_wkb(geoms)))
        table = table.filter(pa.array(keep))
        extra = table.slice(0, 2)
        new_ids = pa.array(["NEW00001", "NEW00002"])
        extra = extra.set_column(extra.column_names.index("BLDG_ID"), "BLDG_ID", new_ids)
        return pa.concat_tables([table, extra])

    dst = tmp_path / "buildings2.shp"
    _rewrite_buildings(src, dst, edit)
    report = run_pipeline("buildings", dst)
    d = report.diff["buildings"]
    assert (d["added"], d["removed"], d["changed"]) == (2, 5, 2)
    assert sorted(d["samples"]["added"]) == ["NEW00001", "NEW00002"]
    assert report.versions == {"buildings": 2}
    with psycopg.connect(database) as conn:
        ext = conn.execute(
            "SELECT ST_Extent(geom) FROM history.buildings__v1 WHERE building_id = ANY(%s)",
            (d["samples"]["removed"] + d["samples"]["changed"],)).fetchone()[0]
        event = conn.execute("SELECT action, from_version, to_version, ST_AsText(changed_extent) FROM "
                             "geocloud.layer_events WHERE layer = 'buildings' ORDER BY id DESC LIMIT 1").fetchone()
    xmin, ymin, xmax, ymax = d["bbox"]
    box = [float(v) for v in ext.removeprefix("BOX(").removesuffix(")").replace(",", " ").split()]
    assert xmin <= box[0] and ymin <= box[1] and xmax >= box[2] and ymax >= box[3]
    assert (xmax - xmin) * (ymax - ymin) < 0.9 * 30_000 * 30_000  # the changed area, not the whole city
    assert event[:3] == ("publish", 1, 2) and event[3].startswith("POLYGON")
    with psycopg.connect(database) as conn:  # the live version's extent is the whole layer's, not the change's
        whole, recorded = conn.execute(
            "SELECT ST_Transform(ST_SetSRID(ST_Extent(geom)::geometry, 3826), 4326), (SELECT extent FROM "
            "geocloud.layer_versions WHERE layer = 'buildings' AND state = 'live') FROM live.buildings").fetchone()
        assert conn.execute("SELECT ST_Covers(ST_Expand(%s::geometry, 1e-6), %s::geometry)", (recorded, whole)).fetchone()[0]


def test_unchanged_rerun_and_dry_run_leave_live_alone(database, city, tmp_path):
    src = source_of(city, "landmarks")
    run_pipeline("landmarks", src)
    before = live_state(database, "landmarks")
    again = run_pipeline("landmarks", src)
    assert again.status == "unchanged" and again.versions == {}
    edited = tmp_path / "landmarks.csv"
    text = src.read_text(encoding="utf-8-sig").replace("臺中市政府", "臺中市政府（新市政大樓）")
    edited.write_text(text, encoding="utf-8-sig")
    plan = run_pipeline("landmarks", edited, dry_run=True)
    assert plan.status == "planned" and plan.diff["landmarks"]["changed"] == 1
    assert live_state(database, "landmarks") == before
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'staging'").fetchone()[0] == 0
        status = conn.execute("SELECT status, dry_run FROM geocloud.etl_runs WHERE id = %s", (plan.run_id,)).fetchone()
    assert status == ("planned", True)


def test_versions_kept_rollback_and_retention(database, city):
    src = source_of(city, "districts")
    for _ in range(KEEP_VERSIONS + 2):
        run_pipeline("districts", src, force=True)
    with psycopg.connect(database) as conn:
        states = dict(conn.execute("SELECT version, state FROM geocloud.layer_versions WHERE layer='districts'").fetchall())
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'history'")}
    assert states == {5: "live", 4: "history", 3: "history", 2: "history", 1: "retired"}
    assert tables == {"districts__v2", "districts__v3", "districts__v4"}
    back = rollback_layer("districts")
    assert (back["from_version"], back["to_version"]) == (5, 4)
    assert live_state(database, "districts")[0] == 4
    rollback_layer("districts", 2)
    assert live_state(database, "districts")[0] == 2
    rollback_layer("districts", 5)  # a rollback can be undone: the newer version was kept
    assert live_state(database, "districts")[0] == 5
    with pytest.raises(NotFound, match="version 1 of 'districts' is not kept"):
        rollback_layer("districts", 1)


def test_rollback_restores_the_exact_rows_and_records_the_changed_area(database, city, tmp_path):
    src = source_of(city, "landmarks")
    run_pipeline("landmarks", src)
    v1 = live_state(database, "landmarks")
    edited = tmp_path / "landmarks.csv"
    edited.write_text(src.read_text(encoding="utf-8-sig").replace("214160.2912", "214260.2912"), encoding="utf-8-sig")
    run_pipeline("landmarks", edited)
    assert live_state(database, "landmarks")[2] != v1[2]
    out = geocloud_cli("etl", "rollback", "landmarks")
    assert out.returncode == 0 and "version 1 is live again" in out.stdout
    assert live_state(database, "landmarks")[1:] == v1[1:]
    with psycopg.connect(database) as conn:
        action, ext = conn.execute("SELECT action, ST_AsText(changed_extent) FROM geocloud.layer_events "
                                   "ORDER BY id DESC LIMIT 1").fetchone()
    assert action == "rollback" and ext.startswith("POLYGON")


def test_zipped_shapefile_loads(database, city, tmp_path, monkeypatch):
    monkeypatch.setattr("geocloud.etl.sources.BATCH", 97)  # batches read at random inside the zip
    src = source_of(city, "roads")
    archive = tmp_path / "roads.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in src.parent.glob("roads.*"):
            zf.write(part, part.name)
    report = run_pipeline("roads", archive)
    assert report.status == "published" and "Big5" in report.encoding
    assert report.counts["loaded"]["roads"] == json.loads((city / "manifest.json").read_text())["counts"]["roads"]


def test_big5_without_cpg_or_ldid_is_detected(database, city, tmp_path):
    for part in source_of(city, "roads").parent.glob("roads.*"):
        if part.suffix != ".cpg":
            shutil.copy(part, tmp_path / part.name)
    report = run_pipeline("roads", tmp_path / "roads.shp")
    assert report.encoding.startswith("Big5") and "detected" in report.encoding
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM live.roads WHERE name LIKE '臺灣大道%%'").fetchone()[0] > 0


def test_kml_source(database, city, project, tmp_path):
    meta, table = pyogrio.read_arrow(source_of(city, "districts"))
    kml = tmp_path / "districts.kml"
    table = table.rename_columns(["Name" if c == "TOWNCODE" else c for c in table.column_names])
    pyogrio.write_arrow(table, kml, driver="KML", geometry_type="MultiPolygon", crs="EPSG:3826",
                        geometry_name=meta["geometry_name"] or "wkb_geometry")
    (project / "etl" / "districts-kml.yml").write_text(
        "pipeline: districts-kml\ndescription: districts as KML\nsource: {format: kml}\n"
        "outputs:\n  - layer: districts\n    fields: {district_code: Name, name: TOWNNAME}\n", encoding="utf-8")
    report = run_pipeline("districts-kml", kml)
    assert report.status == "published" and report.counts["loaded"] == {"districts": 29}
    assert report.crs.startswith("EPSG:4326")


def test_a_second_run_on_a_busy_layer_is_refused(database, city):
    with psycopg.connect(database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended('geocloud.layer:roads', 0))")
        with pytest.raises(Conflict, match="layer 'roads' is being updated by another run"):
            run_pipeline("roads", source_of(city, "roads"))


def test_raster_versions_unchanged_and_rollback(database, city, tmp_path):
    src = source_of(city, "satellite")
    assert run_pipeline("satellite", src).versions == {"satellite": 1}
    assert run_pipeline("satellite", src).status == "unchanged"
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read()
    changed = tmp_path / "satellite.tif"
    data[:, :50, :50] = 255
    with rasterio.open(changed, "w", **profile) as dst:
        dst.write(data)
    assert run_pipeline("satellite", changed).versions == {"satellite": 2}
    assert rollback_layer("satellite")["to_version"] == 1


def test_cli_run_json_history_and_show(database, city):
    out = geocloud_cli("etl", "run", "landmarks", source_of(city, "landmarks"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "published" and report["operator"] == "tester" and len(report["sha256"]) == 64
    assert set(report["timings"]) >= {"read, validate and copy", "index", "diff", "publish"}
    hist = geocloud_cli("etl", "history", "landmarks", "--json")
    data = json.loads(hist.stdout)
    assert data["versions"][0]["version"] == 1 and data["runs"][0]["id"] == report["run_id"]
    show = json.loads(geocloud_cli("etl", "show", report["run_id"]).stdout)
    assert show["source_sha256"] == report["sha256"] and show["diff"]["landmarks"]["added"] == report["counts"]["read"]
    human = geocloud_cli("etl", "history", "landmarks")
    assert "published" in human.stdout


def test_big5_text_decodes_exactly_and_broken_bytes_are_reported(database, city, tmp_path):
    """Big5 DBF text is decoded in bulk (GDAL passes the bytes through): every value must come out as
    CP950 decodes it, nulls stay null, and a character cut in half by the field width is reported
    with its row and field rather than loaded silently."""
    dst = tmp_path / "buildings.shp"
    table = pyogrio.read_arrow(source_of(city, "buildings"), encoding="cp950", max_features=300)[1]
    _rewrite_buildings(source_of(city, "buildings"), dst, lambda t: t.slice(0, 300))
    expected = table.column("構造別").to_pylist()
    dbf = bytearray((tmp_path / "buildings.dbf").read_bytes())
    header = int.from_bytes(dbf[8:10], "little")
    cut = bytes(dbf).index("造".encode("cp950"), header)  # the first building's structure ends with 造
    dbf[cut + 1] = 0x20                            # keep 造's lead byte only, as a too-narrow field would
    (tmp_path / "buildings.dbf").write_bytes(bytes(dbf))
    report = run_pipeline("buildings", dst)
    assert report.status == "published"
    issue = next(i for i in report.quality["issues"] if "not valid Big5" in i["message"])
    assert "'structure' (column 構造別)" in issue["message"] and issue["rows"] == [1] and issue["count"] == 1
    with psycopg.connect(database) as conn:
        got = dict(conn.execute("SELECT building_id, structure FROM live.buildings").fetchall())
    ids = table.column("BLDG_ID").to_pylist()
    assert got[ids[0]] == expected[0][:-1] + "\ufffd"
    assert all(got[i] == v for i, v in zip(ids[1:], expected[1:]))


MALLINFO = """
import ctypes, sys
from pathlib import Path
from geocloud.etl.pipeline import Source
from geocloud.etl.sources import open_source, read_batches
class Info(ctypes.Structure):  # glibc's mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
batch = next(read_batches(open_source(Path(sys.argv[1]), Source(format="shapefile"))))()
print(len(batch.rows), libc.mallinfo2().fsmblks)
"""


def test_reading_a_shapefile_leaves_no_freed_blocks_in_fastbins(city):
    """GDAL frees small blocks by the thousand while it reads; kept in glibc's fastbins, the next
    large free walks them all to merge them (55-60 ms a 65,536-feature batch). The reading process
    keeps none: fastbins are off once it has read."""
    out = subprocess.run([sys.executable, "-c", MALLINFO, str(source_of(city, "buildings"))], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    features, in_fastbins = map(int, out.stdout.split())
    assert features == 2000 and in_fastbins == 0


def _same_rows(conn, layer: str, a: str, b: str) -> bool:
    return conn.execute(f"SELECT NOT EXISTS (SELECT * FROM {a} EXCEPT SELECT * FROM {b}) "
                        f"AND NOT EXISTS (SELECT * FROM {b} EXCEPT SELECT * FROM {a})").fetchone()[0]


def _fork_server_running() -> bool:
    """Whether this process has started multiprocessing's fork server (the ETL's worker processes)."""
    children = [int(c) for task in Path(f"/proc/{os.getpid()}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return any(b"multiprocessing.forkserver" in Path(f"/proc/{c}/cmdline").read_bytes() for c in children
               if Path(f"/proc/{c}").exists())


def test_small_batches_on_several_threads_or_processes_load_the_same_in_source_order(database, city, monkeypatch):
    """Batches are read and checked on several threads, or for a big source in worker processes (a
    shapefile at random through its .shx, other formats streamed), and merged in source order:
    splitting a file into many small batches, prepared either way, must change neither what is
    loaded nor which rows the quality report names first."""
    pipelines = {"buildings": ["buildings"], "topo": ["topo_contours", "topo_water"], "roads": ["roads"],
                 "zoning": ["zoning"]}
    first = {p: run_pipeline(p, source_of(city, p)) for p in pipelines}
    monkeypatch.setattr("geocloud.etl.sources.BATCH", 97)
    threads = {p: run_pipeline(p, source_of(city, p), force=True) for p in pipelines}
    monkeypatch.setattr("geocloud.etl.parallel.PROCESSES_FROM", 1)
    processes = {p: run_pipeline(p, source_of(city, p), force=True) for p in pipelines if p != "roads"}  # as buildings
    assert _fork_server_running()
    with psycopg.connect(database) as conn:
        for p, layers in pipelines.items():
            passes = [(threads, "history.{}__v2"), (processes, "live.{}")] if p in processes else [(threads, "live.{}")]
            for again, table in passes:
                assert again[p].counts == first[p].counts
                assert again[p].quality["issues"] == first[p].quality["issues"]
                for layer in layers:
                    assert _same_rows(conn, layer, table.format(layer), f"history.{layer}__v1"), layer
    rows = first["zoning"].quality["issues"][0]["rows"]
    assert max(rows) - min(rows) > 97  # the report's first rows come from several batches


def test_a_shapefiles_first_and_last_batches_are_smaller():
    """A shapefile is read in batches of BATCH features, but its first HEAD_BATCHES are a quarter
    batch, so that PostgreSQL starts copying sooner, and its last batches shrink (a quarter of what
    is left, at least a quarter batch), so that the batches prepared side by side at the end leave
    PostgreSQL little to copy alone; every feature is read once, in order."""
    spans = list(_spans(1_000_000, 65_536))
    assert [start for start, _ in spans] == list(itertools.accumulate([0] + [n for _, n in spans[:-1]]))
    assert sum(n for _, n in spans) == 1_000_000
    sizes = [n for _, n in spans]
    assert HEAD_BATCHES == 2 and sizes[:2] == [16_384] * 2 and sizes[2:13] == [65_536] * 11
    assert sizes[-4:-1] == [16_384] * 3 and sizes[2:] == sorted(sizes[2:], reverse=True)
    assert list(_spans(5, 97)) == [(0, 5)]


def test_worker_processes_get_every_item_run_below_the_loader_and_hold_the_fork_servers_imports_frozen():
    """A run's worker processes get every item, the first ones too, even while the fork server is
    still being started: none is prepared on the loader's own threads. They run at a lower priority
    than the loader (``WORKER_NICENESS``), so that the COPY the loader feeds, and a server's request
    threads, come first. The fork server ends with the loader and holds its stdout: it leaves the
    objects of its imports to the operating system (frozen), rather than freeing them one by one
    while a caller reading the loader's output waits. Its workers inherit them frozen."""
    def on_processes(call):
        return list(in_order(operator.call, [call] * 2 * WORKERS, Processes()))

    assert os.getpid() not in on_processes(os.getpid)
    loader = os.getpriority(os.PRIO_PROCESS, 0)
    assert set(on_processes(partial(os.getpriority, os.PRIO_PROCESS, 0))) == {min(19, loader + WORKER_NICENESS)}
    counts = on_processes(gc.get_freeze_count)
    assert all(n > 10_000 for n in counts), counts


# `geocloud etl run` with every source counted as big, noting which heavy modules the process had
# imported when it first started the fork server of the worker processes
_FIRST_START = """
import json, sys
import geocloud.etl.parallel as parallel
parallel.PROCESSES_FROM = 1
start, seen = parallel.start_processes, []
def noted():
    heavy = ("numpy", "pyarrow", "pyogrio", "psycopg", "geocloud.etl.run")
    seen.append(sorted(m for m in heavy if m in sys.modules))
    start()
parallel.start_processes = noted
sys.argv = ["geocloud", "etl", "run", "buildings", sys.argv[1]]
from geocloud.cli import main
try:
    main()
finally:
    print(json.dumps(seen), file=sys.stderr)
"""


def test_the_cli_starts_a_big_sources_worker_processes_before_it_imports_the_etl(database, city):
    """The fork server imports the ETL's modules for the worker processes (about a second): `geocloud
    etl run` on a big source starts it before importing them itself, so that both processes import
    at once, on two cores, rather than one after the other."""
    done = subprocess.run([sys.executable, "-c", _FIRST_START, str(source_of(city, "buildings"))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "buildings is now version 1" in done.stdout, done.stderr
    seen = json.loads(done.stderr.strip().splitlines()[-1])
    assert seen and seen[0] == [], seen  # then the run itself finds it running


def test_the_work_beside_the_spatial_index_has_no_parallel_workers(database):
    """PostgreSQL builds a GiST on one core, the longest of the index stage's jobs: the key index and
    the diff that run beside it on the run's connection get no parallel workers to take CPU from it,
    and the connection has its own settings back afterwards."""
    layer = get_catalog().loadable().layers["buildings"]
    settings = ("SELECT current_setting('max_parallel_maintenance_workers'), "
                "current_setting('max_parallel_workers_per_gather')")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SET max_parallel_maintenance_workers = 3")
        conn.execute("SET max_parallel_workers_per_gather = 3")
        table = stage.create_staging(conn, layer, 1)
        beside = stage.build_indexes(conn, layer, table, lambda: conn.execute(settings).fetchone())
        assert beside == ("0", "0")
        assert conn.execute(settings).fetchone() == ("3", "3")
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,)).fetchall()
        assert {r[0] for r in indexes} == {f"{table}_key", f"{table}_geom"}


def test_the_staging_copy_has_its_table_written_back_as_it_goes(database):
    """A staging table is new in its transaction, so the commit syncs it to disk: while the COPY
    writes it, the server writes it back too (``backend_flush_after``), within that transaction only,
    and the commit finds little left to wait for."""
    layer = get_catalog().loadable().layers["buildings"]
    flush = "SELECT current_setting('backend_flush_after')"
    with psycopg.connect(database, autocommit=True) as conn:
        before = conn.execute(flush).fetchone()[0]
        with conn.transaction():
            stage.create_staging(conn, layer, 1)
            stage.CopyWriter(conn).close()
            assert conn.execute(flush).fetchone()[0] == "2MB"
        assert conn.execute(flush).fetchone()[0] == before != "2MB"


def test_a_worker_process_refusing_a_batch_names_the_file_and_row(database, city, tmp_path, monkeypatch):
    """An error found while a worker process prepares a batch reaches the run as the same error, with
    its file, row and fix, and nothing is published."""
    dst = tmp_path / "buildings.shp"

    def edit(table):
        column = "wkb_geometry" if "wkb_geometry" in table.column_names else "geometry"
        geoms = shapely.from_wkb(table.column(column).to_numpy(zero_copy_only=False))
        geoms[1499] = shapely.transform(geoms[1499], lambda xy: xy + [1_000_000, 0])  # row 1500, far east
        return table.set_column(table.column_names.index(column), column, pa.array(shapely.to_wkb(geoms)))

    _rewrite_buildings(source_of(city, "buildings"), dst, edit)
    monkeypatch.setattr("geocloud.etl.sources.BATCH", 97)
    monkeypatch.setattr("geocloud.etl.parallel.PROCESSES_FROM", 1)
    with pytest.raises(InputError) as refused:
        run_pipeline("buildings", dst)
    assert refused.value.where == str(dst) and "1 feature(s) lie outside Taichung City" in refused.value.what
    assert "(rows 1500)" in refused.value.what and refused.value.fix.startswith("declare the right CRS")
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('live.buildings')").fetchone()[0] is None


def test_a_duplicate_key_in_a_later_batch_is_the_one_refused(database, city, tmp_path, monkeypatch):
    dst = tmp_path / "buildings.shp"

    def edit(table):
        ids = table.column("BLDG_ID").to_pylist()
        ids[1499] = ids[2]  # row 1500 repeats row 3's key, fifteen batches later
        return table.set_column(table.column_names.index("BLDG_ID"), "BLDG_ID", pa.array(ids))

    _rewrite_buildings(source_of(city, "buildings"), dst, edit)
    monkeypatch.setattr("geocloud.etl.sources.BATCH", 97)
    with pytest.raises(InputError) as refused:
        run_pipeline("buildings", dst)
    assert "duplicate natural key 'building_id'; row rejected (1 row(s): 1500)" in str(refused.value)
