"""Hostile sources, over HTTP (POST /manage/layers/{id}/data on a real server) and through the ETL
the CLI runs: a zip bomb, a zip member climbing out (``../``), an absolute or linked member, a 10 GB
GeoJSON, a polygon with too many vertices, a file whose name or Content-Type lies about its format.
Each is refused with a clear error naming the file, member or feature, in bounded memory and time,
and nothing live changes: the live version and its rows, no staging table left, no upload kept."""

import io
import json
import os
import stat
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyogrio
import pytest
from conftest import agency_server, geocloud_cli, live_state
from test_manage import call, csv_body
from test_registry import BIKES, STATIONS

from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.errors import InputError
from geocloud.etl import run_pipeline

MAX_VERTICES, MAX_GEOJSON = 2000, 1_000_000  # the server's limits, lowered to keep the files small
PARCELS = {**BIKES, "id": "hostile_parcels", "geometry": "Polygon", "key": "parcel_id",
           "title": {"zh-TW": "測試地籍", "en": "Test parcels"},
           "fields": [{"name": "parcel_id", "type": "text", "required": True, "title": {"zh-TW": "地號", "en": "Parcel"}},
                      {"name": "name", "type": "text", "title": {"zh-TW": "名稱", "en": "Name"}}]}
DOCKS = {**BIKES, "id": "hostile_docks"}


def polygon_geojson(vertices: int, parcel: str = "P1") -> bytes:
    """One polygon (a circle of ``vertices`` points, closed) in EPSG:3826 around Taichung City Hall."""
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    ring = np.column_stack([214000 + 500 * np.cos(angles), 2673000 + 500 * np.sin(angles)]).round(2)
    ring = np.vstack([ring, ring[:1]]).tolist()
    return json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3826"}},
                       "features": [{"type": "Feature", "properties": {"parcel_id": parcel, "name": "大地號"},
                                     "geometry": {"type": "Polygon", "coordinates": [ring]}}]}).encode()


def polygon_gpkg(path, teeth: int) -> int:
    """A GeoPackage of one polygon, a comb of ``teeth`` teeth 2 mm wide (valid however many), its WKB
    made by numpy; returns its number of vertices (the closing one counted, as PostGIS does)."""
    x = np.repeat(214000 + np.arange(2 * teeth) * 0.001, 2)
    y = np.tile([2673000.0, 2673100.0, 2673100.0, 2673000.0], teeth)
    ring = np.column_stack([np.append(x, [x[-1], x[0], x[0]]), np.append(y, [2672900.0, 2672900.0, y[0]])])
    wkb = struct.pack("<BIII", 1, 3, 1, len(ring)) + ring.astype("<f8").tobytes()
    table = pa.table({"parcel_id": ["P9"], "name": ["comb"], "wkb_geometry": pa.array([wkb], pa.binary())})
    pyogrio.write_arrow(table, path, layer="parcels", geometry_name="wkb_geometry", geometry_type="Polygon",
                        crs="EPSG:3826", layer_options={"SPATIAL_INDEX": "NO"})
    return len(ring)


@pytest.fixture(scope="module")
def server(template_db, tmp_path_factory):
    """A server with an editor of TCG-TRANS, a point and a polygon layer of theirs, each live."""
    data = tmp_path_factory.mktemp("hostile-data")
    env = {"GEOCLOUD_ETL_MAX_VERTICES": str(MAX_VERTICES), "GEOCLOUD_ETL_MAX_GEOJSON_BYTES": str(MAX_GEOJSON)}
    keys = {"editor": ("TCG-TRANS", "editor-TCG-TRANS", "editor")}
    with agency_server(template_db, data, keys, env) as (base, url, made):
        editor = {"X-API-Key": made["editor"]}
        for entry, body, media in ((DOCKS, csv_body(), "text/csv"),
                                   (PARCELS, polygon_geojson(MAX_VERTICES - 10), "application/geo+json")):
            assert call(base, "PUT", f"/manage/layers/{entry['id']}", editor, json=entry).status_code == 201
            r = call(base, "POST", f"/manage/layers/{entry['id']}/data", editor, content=body, media=media)
            assert r.status_code == 200 and r.json()["status"] == "published", r.text
        yield base, url, data, editor


def unchanged(url: str, data, before: dict) -> None:
    """The live layers as they were, no staging table left, no upload kept."""
    assert {layer: live_state(url, layer) for layer in before} == before
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'staging'").fetchone() == (0,)
    assert not list((data / "uploads").iterdir())


def live(url: str) -> dict:
    return {layer: live_state(url, layer) for layer in ("hostile_docks", "hostile_parcels")}


@pytest.fixture(scope="module")
def shapefile(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The stations as the files of a UTF-8 shapefile (suffix -> bytes), with field names in ASCII
    and in Chinese (which the .dbf's 10 bytes cut in the middle of a character)."""
    x, y = np.array([s[2] for s in STATIONS]), np.array([s[3] for s in STATIONS])
    wkb = pa.array([struct.pack("<BIdd", 1, 1, a, b) for a, b in zip(x, y)], pa.binary())
    files = {}
    for names in (("station_id", "name"), ("站點代號", "站名")):
        folder = tmp_path_factory.mktemp("shapefile")
        table = pa.table({names[0]: [s[0] for s in STATIONS], names[1]: [s[1] for s in STATIONS], "wkb_geometry": wkb})
        with warnings.catch_warnings():  # GDAL says it cut the name
            warnings.simplefilter("ignore", RuntimeWarning)
            pyogrio.write_arrow(table, folder / "stations.shp", geometry_name="wkb_geometry", geometry_type="Point",
                                crs="EPSG:3826", encoding="UTF-8")
        files[names[0]] = {p.suffix: p.read_bytes() for p in folder.iterdir()}
    return files


def zipped(members: list[tuple[zipfile.ZipInfo | str, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w", method) as zf:
        for info, content in members:
            zf.writestr(info, content)
    return body.getvalue()


def test_a_zip_bomb_or_a_member_climbing_out_is_refused_naming_the_member(server, shapefile):
    base, url, data, editor = server
    before = live(url)
    link = zipfile.ZipInfo("stations.prj")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    plain = [(f"stations{suffix}", content) for suffix, content in shapefile["station_id"].items()]
    hostile = {
        "bomb": (zipped([m for m in plain if not m[0].endswith(".dbf")] + [("stations.dbf", bytes(8 * 1024 ** 2))],
                        zipfile.ZIP_BZIP2),
                 "member 'stations.dbf': the member expands", "a zip bomb"),
        "climbing": (zipped([(f"../../{name}", content) for name, content in plain]),
                     "member '../../stations.", "climbs out of the archive"),
        "absolute": (zipped([(f"/tmp/{name}", content) for name, content in plain]),
                     "member '/tmp/stations.", "is absolute"),
        "link": (zipped([m for m in plain if not m[0].endswith(".prj")] + [(link, b"/etc/passwd")]),
                 "member 'stations.prj'", "a symbolic link"),
    }
    for case, (body, member, why) in hostile.items():
        r = call(base, "POST", "/manage/layers/hostile_docks/data", editor, content=body, media="application/zip")
        assert r.status_code == 422 and r.json()["code"] == "InvalidSource", (case, r.text)
        assert member in r.json()["description"] and why in r.json()["description"], (case, r.text)
        assert r.json()["fix"], r.text
    unchanged(url, data, before)
    with psycopg.connect(url) as conn:  # each refusal is a failed run on record, the source never hashed
        assert conn.execute("SELECT status, source_sha256 FROM geocloud.etl_runs WHERE error LIKE '%a zip bomb%'"
                            ).fetchall() == [("failed", None)]
    # the same files zipped plainly load: the refusals are the members', not the shapefile's
    r = call(base, "POST", "/manage/layers/hostile_docks/data?dry_run=true", editor, content=zipped(plain),
             media="application/zip")
    assert r.status_code == 200 and r.json()["status"] == "planned", r.text
    cut = zipped([(f"stations{suffix}", content) for suffix, content in shapefile["站點代號"].items()])
    r = call(base, "POST", "/manage/layers/hostile_docks/data", editor, content=cut, media="application/zip")
    assert r.status_code == 422 and "a field name is not valid UTF-8" in r.json()["description"], r.text
    unchanged(url, data, before)


def test_a_geojson_over_its_limit_is_refused_as_it_streams_in(server):
    base, url, data, editor = server
    before = live(url)
    big = polygon_geojson(60_000)
    assert len(big) > MAX_GEOJSON

    def chunks():  # no Content-Length: refused once the count passes the limit
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]
    for body in (big, chunks()):
        r = call(base, "POST", "/manage/layers/hostile_parcels/data", editor, content=body, media="application/geo+json")
        assert r.status_code == 413, r.text
        text = r.json()["description"]
        assert f"{MAX_GEOJSON:,} bytes" in text and "GEOCLOUD_ETL_MAX_GEOJSON_BYTES" in text and "GeoPackage" in text
    assert f"{len(big):,} bytes" in text or "larger than" in text
    unchanged(url, data, before)


def test_a_feature_with_too_many_vertices_is_refused_naming_it(server):
    base, url, data, editor = server
    before = live(url)
    r = call(base, "POST", "/manage/layers/hostile_parcels/data", editor, content=polygon_geojson(MAX_VERTICES + 500),
             media="application/geo+json")
    assert r.status_code == 422, r.text
    assert f"feature 1 has {MAX_VERTICES + 501:,} vertices, more than the {MAX_VERTICES:,}" in r.json()["description"]
    assert "GEOCLOUD_ETL_MAX_VERTICES" in r.json()["description"] and "simplify" in r.json()["fix"]
    unchanged(url, data, before)


def test_a_body_lying_about_its_format_is_named_for_what_it_is(server):
    base, url, data, editor = server
    before = live(url)
    pdf, png = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    for layer, body, media, says in (
            ("hostile_docks", pdf, "application/zip",
             "the body is not a shapefile file (a zip archive): it starts with '%PDF-1.7', a PDF document"),
            ("hostile_parcels", png, "application/geo+json",
             "the body is not a geojson file (JSON text): it starts with '\\x89PNG\\r\\n\\x1a\\n', a PNG image"),
            ("hostile_parcels", csv_body(), "application/geopackage+sqlite3",
             "the body is not a geopackage file (an SQLite database): it starts with '\\xe7"),
            ("hostile_parcels", polygon_geojson(10), "image/tiff",
             "the body is not a readable GeoTIFF (a TIFF image): it starts with '{\"type\":', JSON text")):
        r = call(base, "POST", f"/manage/layers/{layer}/data", editor, content=body, media=media)
        assert r.status_code == 422 and says in r.json()["description"], (media, r.text)
    unchanged(url, data, before)


def _high_water_kb(pid: int) -> int:
    """A running process's peak resident memory (VmHWM), 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def test_the_cli_refuses_a_sparse_10_gb_geojson_at_once_and_names_a_lying_zip(server, tmp_path):
    _, url, data, _ = server
    before = live(url)
    env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(data), "GEOCLOUD_OPERATOR": "tester"}
    huge = tmp_path / "parcels.geojson"
    with huge.open("wb") as fh:  # a valid start, then a hole: 10 GB on paper, nothing on disk
        fh.write(b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, ')
        fh.truncate(10 * 1024 ** 3)
    t0 = time.monotonic()
    with (tmp_path / "stderr").open("w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "geocloud", "etl", "run", "hostile_parcels", str(huge)],
                                stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "COLUMNS": "200", **env})
        peak = 0  # the CLI's own high-water mark (wait4's ru_maxrss would count this big test process it forked from)
        while proc.poll() is None:
            peak = max(peak, _high_water_kb(proc.pid))
            time.sleep(0.02)
        status = proc.returncode
        seconds = time.monotonic() - t0
        stderr.seek(0)
        err = " ".join(stderr.read().split())
    assert status == 5, err
    assert f"{huge} is {10 * 1024 ** 3:,} bytes, more than the {1024 ** 3:,} bytes" in err, err
    assert "GEOCLOUD_ETL_MAX_GEOJSON_BYTES" in err and "GeoPackage" in err and "Traceback" not in err
    # refused by its size: not hashed or parsed (reading 10 GB takes far longer), in a CLI's memory
    assert seconds < 60 and 0 < peak < 400 * 1024, (seconds, peak)

    pdf = tmp_path / "stations.shp.zip"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(1000))
    out = geocloud_cli("etl", "run", "hostile_docks", pdf, env=env)
    assert out.returncode == 5, out.stderr
    assert f"{pdf} is not a shapefile file (a zip archive): it starts with '%PDF-1.4', a PDF document" in \
        " ".join(out.stderr.split()), out.stderr
    unchanged(url, data, before)


@pytest.fixture
def etl(server, monkeypatch):
    """The ETL in this process (what `geocloud etl run` calls) against the server's database."""
    _, url, data, _ = server
    monkeypatch.setenv("GEOCLOUD_DATABASE_URL", url)
    monkeypatch.setenv("GEOCLOUD_DATA_DIR", str(data))
    monkeypatch.setenv("GEOCLOUD_OPERATOR", "tester")
    monkeypatch.delenv("GEOCLOUD_PROJECT_DIR", raising=False)

    def refused(layer: str, path, *texts, **limits):
        for name, value in limits.items():
            monkeypatch.setenv(f"GEOCLOUD_{name.upper()}", str(value))
        get_settings.cache_clear()
        get_catalog.cache_clear()
        with pytest.raises(InputError) as caught:
            run_pipeline(layer, path)
        for text in texts:
            assert text in str(caught.value), str(caught.value)
        for name in limits:
            monkeypatch.delenv(f"GEOCLOUD_{name.upper()}")
        get_settings.cache_clear()
        return str(caught.value)
    yield refused
    get_settings.cache_clear()
    get_catalog.cache_clear()


def test_lying_names_and_zip_limits_through_the_etl(server, etl, shapefile, tmp_path):
    _, url, data, _ = server
    before = live(url)
    cases = {"parcels.gpkg": (csv_body(), "is not a geopackage file (an SQLite database): it starts with "
                                          "'\\xe7\\xab\\x99\\xe9\\xbb\\x9e\\xe4\\xbb', text"),
             "parcels.geojson": (b"\x1f\x8b\x08\x00" + bytes(100), "is not a geojson file (JSON text): it starts "
                                                                   "with '\\x1f\\x8b\\x08\\x00", "a gzip archive")}
    for name, (content, *says) in cases.items():
        (tmp_path / name).write_bytes(content)
        etl("hostile_parcels", tmp_path / name, str(tmp_path / name), *says)
    sparse = tmp_path / "districts.geojson"  # 10 GB on paper, for a shapefile pipeline: refused before it is hashed
    with sparse.open("wb") as fh:
        fh.truncate(10 * 1024 ** 3)
    t0 = time.monotonic()
    etl("districts", sparse, "expected a shapefile file (.shp, .zip), got '.geojson'")
    assert time.monotonic() - t0 < 10
    fake = tmp_path / "satellite.tif"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))  # GDAL would open a PNG whatever its name
    etl("satellite", fake, f"{fake} is not a readable GeoTIFF (a TIFF image)", "a PNG image")

    plain = [(f"stations{suffix}", content) for suffix, content in shapefile["station_id"].items()]
    many = tmp_path / "many.zip"
    many.write_bytes(zipped(plain + [(f"readme{i}.txt", b"x") for i in range(20)]))
    etl("hostile_docks", many, f"the zip holds {len(plain) + 20} members, more than 10 (GEOCLOUD_ETL_ZIP_MAX_MEMBERS)",
        etl_zip_max_members=10)
    etl("hostile_docks", many, "member 'stations.", "expand to more than 1,000 bytes (GEOCLOUD_ETL_ZIP_MAX_BYTES",
        "GeoPackage", etl_zip_max_bytes=1000)
    unchanged(url, data, before)


def test_the_vertex_limit_at_its_default_lets_a_real_boundary_through(server, etl, tmp_path):
    _, url, _, _ = server
    over = tmp_path / "over.gpkg"
    vertices = polygon_gpkg(over, 300_000)
    before = live(url)
    etl("hostile_parcels", over, f"feature 1 has {vertices:,} vertices, more than the 1,000,000 a feature may have")
    assert live(url) == before
    # GDAL's GeoJSON reader stops at a feature over OGR_GEOJSON_MAX_OBJ_SIZE (200 MB; 1 MB here)
    (tmp_path / "huge.geojson").write_bytes(polygon_geojson(60_000))
    with pytest.MonkeyPatch.context() as gdal:
        gdal.setenv("OGR_GEOJSON_MAX_OBJ_SIZE", "1")
        etl("hostile_parcels", tmp_path / "huge.geojson", "a feature's GeoJSON is larger than GDAL reads as one "
            "object", "At line 1, character", "GeoPackage")
    boundary = tmp_path / "boundary.gpkg"  # a district boundary surveyed to the centimetre
    vertices = polygon_gpkg(boundary, 75_000)
    get_settings.cache_clear()
    get_catalog.cache_clear()
    assert get_settings().etl_max_vertices == 1_000_000
    report = run_pipeline("hostile_parcels", boundary, force=True)  # it replaces the parcel: the guard objects
    assert report.status == "published" and report.counts["loaded"] == {"hostile_parcels": 1}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT ST_NPoints(geom) FROM live.hostile_parcels").fetchone() == (vertices,)
