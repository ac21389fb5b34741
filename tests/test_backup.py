"""Backups: `geocloud backup create`, `verify` and `restore`, run as the real command against real
PostGIS databases, and a restored system served beside the original that answers byte for byte alike."""

import getpass
import hashlib
import json
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import morecantile
import psycopg
import pytest
from psycopg import sql

from conftest import _admin, _drop, _url_for, city_database, geocloud_cli, source_of, start_server, stop_server
from test_outage import Cluster
from geocloud.backup import pgtools, verify
from geocloud.backup.manifest import BackupDamaged
from geocloud.catalog import get_catalog
from geocloud.db.migrate import available
from geocloud.errors import DatabaseError
from geocloud.etl.stage import lock_layers

WEB = morecantile.tms.get("WebMercatorQuad")


def env_of(db_url: str, data_dir: Path) -> dict:
    return {"GEOCLOUD_DATABASE_URL": db_url, "GEOCLOUD_DATA_DIR": str(data_dir), "GEOCLOUD_OPERATOR": "tester"}


def new_database(names: list) -> str:
    """An empty database (template0: no PostGIS, no schemas of geocloud's), dropped at the module's end."""
    name = f"geocloud_bk_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    names.append(name)
    return _url_for(name)


@pytest.fixture(scope="module")
def databases():
    names = []
    yield names
    for name in names:
        _drop(name)


@pytest.fixture(scope="module")
def source(loaded_city, databases, tmp_path_factory):
    """The sample city loaded through the real ETL (a copy of ``loaded_city``), the scanned sheets
    loaded twice (so that version 1 is a kept version whose COGs a backup must carry too), and a tile
    cache a backup must leave out."""
    data_dir = tmp_path_factory.mktemp("source-data")
    name, db_url = city_database(loaded_city, "geocloud_bk", data_dir)
    databases.append(name)
    keys = dict(loaded_city.keys)
    again = geocloud_cli("etl", "run", "topo-sheets", source_of(loaded_city.city, "topo-sheets"), "--force",
                         env=env_of(db_url, data_dir))
    assert again.returncode == 0, again.stderr
    cached = data_dir / "tile-cache" / "roads" / "stale.mvt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"derived")
    return db_url, data_dir, keys


@pytest.fixture(scope="module")
def backup(source, tmp_path_factory) -> Path:
    db_url, data_dir, _ = source
    folder = tmp_path_factory.mktemp("backups") / "nightly"
    done = geocloud_cli("backup", "create", folder, env=env_of(db_url, data_dir))
    assert done.returncode == 0, done.stderr
    assert "backup written" in done.stdout
    return folder


def test_backup_holds_the_dump_and_exactly_the_files_it_refers_to(source, backup):
    db_url, data_dir, _ = source
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    files = {f["path"]: f for f in manifest["files"]}
    with psycopg.connect(db_url) as conn:
        kept = [r[0] for r in conn.execute("SELECT storage FROM geocloud.layer_versions WHERE state <> 'retired' "
                                           "AND storage LIKE 'rasters/%' ORDER BY storage")]
        runs = [r[0] for r in conn.execute("SELECT id FROM geocloud.etl_runs ORDER BY id")]
        server = conn.execute("SELECT current_setting('server_version')").fetchone()[0]
    assert "rasters/topo_sheets/v1" in kept and "rasters/topo_sheets/v2" in kept  # live and kept
    expected = {f"data/{p.relative_to(data_dir).as_posix()}" for folder in kept for p in (data_dir / folder).iterdir()}
    expected |= {f"data/reports/run-{i}.json" for i in runs}
    assert set(files) == expected | {"database.dump"}  # no tile cache, nothing else
    for path, item in files.items():  # sizes and checksums as the files have them
        body = (backup / path).read_bytes()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (item["size"], item["sha256"]), path
    assert manifest["layers"]["topo_sheets"]["live"] == 2 and manifest["layers"]["topo_sheets"]["kept"] == [1]
    assert manifest["layers"]["roads"]["live"] == 1 and manifest["layers"]["roads"]["storage"] == {"1": "live.roads"}
    assert manifest["created_by"] == {"os_user": getpass.getuser(), "operator": "tester",
                                      "host": manifest["created_by"]["host"]}
    assert manifest["postgresql"]["server"] == server and manifest["postgresql"]["pg_dump_major"] >= 15
    assert manifest["migration"] == max(m.version for m in available()) and manifest["schemas"] == ["geocloud", "history", "live", "staging"]
    assert manifest["postgis"]["version"].startswith("3.") and manifest["geocloud_version"]
    assert (backup.stat().st_mode & 0o777) == 0o700  # it holds key hashes and the token-signing secret
    assert ((backup / "database.dump").stat().st_mode & 0o777) == 0o600


@pytest.fixture
def fresh_cluster():
    """A PostgreSQL cluster of its own, as a restore onto a new machine would find one."""
    cluster = Cluster()
    yield cluster
    cluster.remove()


def test_a_restored_system_answers_identically(source, backup, fresh_cluster, tmp_path):
    db_url, data_dir, keys = source
    target, target_dir = fresh_cluster.url(), tmp_path / "restored-data"
    done = geocloud_cli("backup", "restore", backup, env=env_of(target, target_dir))
    assert done.returncode == 0, done.stderr
    assert not (target_dir / "tile-cache").exists()
    upgrade = geocloud_cli("db", "upgrade", env=env_of(target, target_dir))
    assert upgrade.returncode == 0 and "0 migration(s) applied now" in upgrade.stdout, upgrade.stderr

    servers = [start_server(db_url, data_dir), start_server(target, target_dir)]
    try:
        import httpx

        # restored key hashes: the internal layers are compared too; one Host for both, as behind one
        # load balancer (links, and so ETags, are built for the host a request names)
        auth = {"X-API-Key": keys["fire"], "Host": "127.0.0.1:8000"}
        (_, original), (_, restored) = servers
        paths = _surfaces(original, auth, db_url)
        assert len(paths) > 60
        drawn = set()  # layers with a tile that is not empty
        with httpx.Client(headers=auth, timeout=60) as client, ThreadPoolExecutor(4) as pool:
            answers = pool.map(lambda path: (path, client.get(original + path), client.get(restored + path)), paths)
            answers = list(answers)
        for path, a, b in answers:
            assert a.status_code == 200 or (a.status_code == 204 and "/tiles/" in path), path
            if "/tiles/" in path and a.status_code == 200:
                drawn.add(path.split("/")[2])
            assert (b.status_code, b.headers.get("content-type")) == (a.status_code, a.headers.get("content-type")), path
            for header in ("etag", "last-modified"):
                assert b.headers.get(header) == a.headers.get(header), (path, header)
            assert _timeless(b.content, path) == _timeless(a.content, path), path
        assert drawn == set(get_catalog().layers)
    finally:
        for proc, _ in servers:
            stop_server(proc)


def _surfaces(base: str, auth: dict, db_url: str) -> list[str]:
    """Every collection, an items page and tiles of every layer, metadata records: paths to compare."""
    import httpx

    paths = ["/collections", "/collections?f=html", "/catalog/dcat.jsonld", "/wmts/1.0.0/WMTSCapabilities.xml",
             "/metadata/services/wmts.xml"]
    with psycopg.connect(db_url) as conn:
        for layer in get_catalog().layers.values():
            paths.append(f"/metadata/{layer.id}.xml")
            if layer.kind == "vector":  # tiles around a point of one of its features
                lon, lat = conn.execute(sql.SQL(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) p FROM live.{} "
                    "ORDER BY {} LIMIT 1) s").format(sql.Identifier(layer.id), sql.Identifier(layer.key))).fetchone()
                items = f"/collections/{layer.id}/items?limit=20"
                first = httpx.get(base + items, headers=auth, timeout=60).json()["features"][0]["id"]
                paths += [f"/collections/{layer.id}", items, f"/collections/{layer.id}/items/{first}"]
                tile = "/collections/{id}/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}"
            else:  # tiles around the image's centre
                lon, lat = conn.execute("SELECT ST_X(ST_Centroid(extent)), ST_Y(ST_Centroid(extent)) FROM "
                                        "geocloud.layer_versions WHERE layer = %s AND state = 'live'",
                                        (layer.id,)).fetchone()
                paths += [f"/rasters/{layer.id}/info", f"/rasters/{layer.id}/WebMercatorQuad/tilejson.json"]
                tile = "/rasters/{id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
            low = max(layer.zooms.min, 11)  # a city district is less than a pixel at zoom 3
            for z in sorted({low, min(low + 3, layer.zooms.max)}):
                paths.append(tile.format(id=layer.id, t=WEB.tile(lon, lat, z)))
    return paths


def _timeless(body: bytes, path: str) -> bytes:
    """The bytes of a response less those that carry the time of the request: pygeoapi's items pages
    say when they were made (``timeStamp``)."""
    if "/items" in path and "/items/" not in path:
        doc = json.loads(body)
        doc.pop("timeStamp")
        return json.dumps(doc, sort_keys=True).encode()
    return body


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, named", [
    ("dump", "database.dump: SHA-256 differs"),
    ("cog", "data/rasters/topo_sheets/v1/topo_sheets.tif: SHA-256 differs"),
    ("truncated", "data/rasters/satellite/v1/satellite.tif: 1000 bytes, the manifest says"),
    ("missing report", "data/reports/run-1.json: missing"),
    ("manifest", "the manifest is not valid JSON"),
    ("no manifest", "the manifest is missing"),
    ("link", "data/reports/run-1.json: a link"),
])
def test_verify_names_the_damaged_file(backup, tmp_path, damage, named):
    copy = tmp_path / "copy"
    shutil.copytree(backup, copy)
    assert verify(copy)["files"]
    if damage == "dump":
        _flip(copy / "database.dump", (copy / "database.dump").stat().st_size // 2)
    elif damage == "cog":
        _flip(copy / "data/rasters/topo_sheets/v1/topo_sheets.tif", 5000)
    elif damage == "truncated":
        with (copy / "data/rasters/satellite/v1/satellite.tif").open("r+b") as f:
            f.truncate(1000)
    elif damage == "missing report":
        (copy / "data/reports/run-1.json").unlink()
    elif damage == "link":  # the same bytes, but outside the backup: a restore must not read there
        outside = tmp_path / "elsewhere.json"
        shutil.move(copy / "data/reports/run-1.json", outside)
        (copy / "data/reports/run-1.json").symlink_to(outside)
    elif damage == "manifest":
        (copy / "manifest.json").write_text((copy / "manifest.json").read_text()[:-40])
    else:
        (copy / "manifest.json").unlink()
    with pytest.raises(BackupDamaged) as info:
        verify(copy)
    assert named in str(info.value) and str(copy) in str(info.value) and info.value.exit_code == 11


def test_a_damaged_backup_fails_verify_and_restore_changing_nothing(backup, databases, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(backup, copy)
    good = geocloud_cli("backup", "verify", copy)
    assert good.returncode == 0 and "backup is whole" in good.stdout, good.stderr
    _flip(copy / "database.dump", (copy / "database.dump").stat().st_size // 2)
    bad = geocloud_cli("backup", "verify", copy)
    assert bad.returncode == 11 and "database.dump: SHA-256 differs" in bad.stderr, bad.stderr
    target, target_dir = new_database(databases), tmp_path / "target-data"
    refused = geocloud_cli("backup", "restore", copy, env=env_of(target, target_dir))
    assert refused.returncode == 11 and "database.dump: SHA-256 differs" in refused.stderr, refused.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('geocloud', 'live')").fetchone()[0] == 0
    assert not target_dir.exists()


def test_restore_refuses_a_target_that_is_not_empty(backup, databases, template_db, tmp_path):
    # a database that already has geocloud's schemas (a migrated one, as any live installation)
    name = f"geocloud_bk_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    databases.append(name)
    migrated, empty_dir = _url_for(name), tmp_path / "empty"
    refused = geocloud_cli("backup", "restore", backup, env=env_of(migrated, empty_dir))
    assert refused.returncode == 7, refused.stderr
    assert "already has geocloud's schemas (geocloud, history, live, staging); nothing was changed" in refused.stderr
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM geocloud.layer_versions").fetchone()[0] == 0
    assert not empty_dir.exists()

    # an empty database, but a data directory that holds a file
    target, busy_dir = new_database(databases), tmp_path / "busy"
    busy_dir.mkdir()
    (busy_dir / "notes.txt").write_text("keep me")
    refused = geocloud_cli("backup", "restore", backup, env=env_of(target, busy_dir))
    assert refused.returncode == 7 and "the data directory is not empty (notes.txt)" in refused.stderr, refused.stderr
    assert str(busy_dir) in refused.stderr
    assert [p.name for p in busy_dir.iterdir()] == ["notes.txt"]
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'geocloud'").fetchone()[0] == 0


def test_create_waits_for_a_raster_run_and_never_overwrites(source, tmp_path):
    """A raster run may retire (delete) a kept version's COGs: a backup holds the layer locks ETL runs
    take, and waits for a run that holds one."""
    db_url, data_dir, _ = source
    with psycopg.connect(db_url, autocommit=True) as etl:
        lock_layers(etl, ["topo_sheets"])  # as a raster run under way does
        busy = geocloud_cli("backup", "create", tmp_path / "b1", "--wait", "1", env=env_of(db_url, data_dir))
        assert busy.returncode == 7 and "'topo_sheets' is being updated by another run" in busy.stderr, busy.stderr
        assert "waited 1 s" in busy.stderr and list((tmp_path / "b1").iterdir()) == []  # whole or absent

        finish = threading.Timer(3, etl.execute, ["SELECT pg_advisory_unlock_all()"])  # the run ends in 3 s
        t0 = time.monotonic()
        finish.start()
        done = geocloud_cli("backup", "create", tmp_path / "b1", "--wait", "60", env=env_of(db_url, data_dir))
        assert done.returncode == 0 and time.monotonic() - t0 >= 3, done.stderr
    assert verify(tmp_path / "b1")["layers"]["topo_sheets"]["live"] == 2
    again = geocloud_cli("backup", "create", tmp_path / "b1", env=env_of(db_url, data_dir))
    assert again.returncode == 7 and "the backup folder is not empty" in again.stderr, again.stderr


def test_pg_tools_fit_the_server_and_the_password_stays_off_the_command_line():
    with pytest.raises(DatabaseError) as info:
        pgtools.find_tool("pg_dump", 99)
    assert "PostgreSQL 99" in str(info.value) and "postgresql-client-99" in str(info.value)
    assert pgtools.tool_major(pgtools.find_tool("pg_dump", 15)) >= 15
    conninfo, env = pgtools.libpq_target("postgresql://geocloud:s3cret@127.0.0.1:54329/city")
    assert "s3cret" not in conninfo and "dbname=city" in conninfo and env["PGPASSWORD"] == "s3cret"
