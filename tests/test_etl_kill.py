"""kill -9 at every stage of a run (read, COPY, index build, publish) leaves the live layer exactly
as it was, and the next run works. The run is paused at the stage with GEOCLOUD_ETL_PAUSE_AT,
then killed with SIGKILL, as an operator's crash or an OOM kill would."""

import os
import select
import signal
import subprocess
import sys
import time

import psycopg
import pyarrow as pa
import pyogrio
import pytest

from geocloud.etl import run_pipeline
from geocloud.etl.sources import sha256

from conftest import live_state, source_of


def _start_paused(pipeline, path, stage):
    proc = subprocess.Popen([sys.executable, "-m", "geocloud", "etl", "run", pipeline, str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "GEOCLOUD_ETL_PAUSE_AT": stage})
    seen, deadline = b"", time.monotonic() + 120
    while f"paused at {stage}".encode() not in seen:
        assert proc.poll() is None, f"run ended before pausing: {seen.decode(errors='replace')}"
        assert time.monotonic() < deadline, "run never reached the stage"
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            seen += os.read(proc.stderr.fileno(), 65536)
    return proc


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def changed_buildings(city, tmp_path):
    meta, table = pyogrio.read_arrow(source_of(city, "buildings"), encoding="cp950")
    table = table.filter(pa.array([i >= 100 for i in range(table.num_rows)]))
    dst = tmp_path / "buildings.shp"
    pyogrio.write_arrow(table, dst, geometry_type="MultiPolygon", crs="EPSG:3826", encoding="cp950",
                        geometry_name=meta["geometry_name"] or "wkb_geometry")
    return dst


@pytest.mark.parametrize("stage", ["read", "copy", "index", "publish"])
def test_kill_9_leaves_live_untouched(database, city, changed_buildings, stage):
    run_pipeline("buildings", source_of(city, "buildings"))
    before = live_state(database, "buildings")
    proc = _start_paused("buildings", changed_buildings, stage)
    try:
        if stage != "publish":  # while paused inside publish the live table is locked, as it should be
            assert live_state(database, "buildings") == before
    finally:
        _kill(proc)
    assert live_state(database, "buildings") == before
    with psycopg.connect(database) as conn:
        versions = conn.execute("SELECT version, state FROM geocloud.layer_versions WHERE layer = 'buildings' "
                                "ORDER BY version").fetchall()
        assert versions == [(1, "live")]
        killed = conn.execute("SELECT id, status, source_sha256 FROM geocloud.etl_runs ORDER BY id DESC LIMIT 1").fetchone()
        assert killed[1] == "running"
        if stage in ("index", "publish"):  # recorded once the copy is staged: a late kill still says what was loaded
            assert killed[2] == sha256(changed_buildings)
    report = run_pipeline("buildings", changed_buildings)
    assert report.status == "published" and report.versions == {"buildings": 2}
    assert report.diff["buildings"]["removed"] == 100
    assert live_state(database, "buildings")[1] == before[1] - 100
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT status FROM geocloud.etl_runs WHERE id = %s", (killed[0],)).fetchone()[0] \
            == "interrupted"
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'staging'").fetchone()[0] == 0


def test_kill_9_during_raster_publish(database, city):
    run_pipeline("topo-sheets", source_of(city, "topo-sheets"))
    sat = source_of(city, "satellite")
    proc = _start_paused("satellite", sat, "publish")
    _kill(proc)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM geocloud.layer_versions WHERE layer = 'satellite'").fetchone()[0] == 0
    report = run_pipeline("satellite", sat)
    assert report.versions == {"satellite": 1}
