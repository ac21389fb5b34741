"""``geocloud backup create``: the database and the data files it refers to, consistent with each other.

Consistency. pg_dump reads the database in one snapshot, which this module exports from its own
REPEATABLE READ transaction and reads first: the manifest and the list of data files to copy come
from exactly the state that is dumped. Vector ETL runs may go on meanwhile (their staging tables are
not dumped; a publish waits for pg_dump's table locks, up to the ETL's lock timeout). Raster files
are the one risk: a raster run publishing a new version retires (deletes) the folder of its oldest
kept version, which the dump may still list. So the backup holds the layer locks every ETL run and
rollback takes (the same advisory locks) for the raster layers, from before the snapshot until their
files are copied: a raster run started meanwhile is told the layer is busy, and one under way is
waited for (up to ``wait`` seconds) before the backup starts. Holding locks was chosen over copying
files first and dumping after, since only the dump can say which files belong to it, and over a
global lock, since vector loads, the bulk of the ETL, need not wait.
"""

import getpass
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

import geocloud
from geocloud.backup import contents, pgtools
from geocloud.backup.manifest import DATA, DUMP, FORMAT, copy_hashed, entry, write
from geocloud.config import get_settings, operator
from geocloud.db.connect import redacted, connect, database_url
from geocloud.errors import ConfigError, Conflict, DatabaseError
from geocloud.etl.stage import lock_layers

RETRY = 1.0  # seconds between attempts at the layer locks


def create(folder: Path, *, wait: float = 600) -> dict:
    """Back up GEOCLOUD_DATABASE_URL and GEOCLOUD_DATA_DIR into ``folder`` (new or empty); return the manifest."""
    url, data_dir = database_url(), get_settings().data_path
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise Conflict("the backup folder is not empty", where=str(folder),
                       fix="name a new folder for each backup (e.g. one per date); nothing was written")
    with connect(url, autocommit=True) as conn:
        pg_dump = pgtools.find_tool("pg_dump", pgtools.server_major(conn))
        if "geocloud" not in contents.present_schemas(conn):
            raise DatabaseError("the database holds no geocloud installation (no geocloud schema)",
                                where=redacted(url), fix="check GEOCLOUD_DATABASE_URL")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            _lock(conn, contents.raster_layers(conn), wait)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            manifest = _facts(conn, url, data_dir, str(pg_dump))
            reports = contents.finished_reports(conn)
            pgtools.run(pg_dump, ["--format=custom", f"--file={folder / DUMP}", f"--snapshot={snapshot}",
                                  "--no-unlogged-table-data", "--exclude-table=staging.*", "--extension=postgis",
                                  *(f"--schema={s}" for s in manifest["schemas"])], url, " to dump the database")
            conn.execute("COMMIT")
            (folder / DUMP).chmod(0o600)
            files = [entry(folder, DUMP)]
            files += _copy_rasters(data_dir, folder, manifest["layers"])
            copied, missing = _copy_reports(data_dir, folder, reports)
        except BaseException:
            _empty(folder)  # a backup is whole or absent
            raise
        finally:
            if not conn.closed:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                conn.execute("SELECT pg_advisory_unlock_all()")
    manifest |= {"files": files + copied, "reports_missing": missing}
    write(folder, manifest)
    return manifest


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _lock(conn: psycopg.Connection, layers: list[str], wait: float) -> None:
    """The raster layers' ETL locks, retried while a run holds one, for at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            lock_layers(conn, layers)
            return
        except Conflict as exc:
            conn.execute("SELECT pg_advisory_unlock_all()")  # try all again, none held twice
            if time.monotonic() >= deadline:
                raise Conflict(f"{exc.what}; the backup waited {wait:g} s for it",
                               fix="take the backup once the run has finished (or raise --wait); nothing was "
                                   "written") from None
            time.sleep(RETRY)


def _facts(conn: psycopg.Connection, url: str, data_dir: Path, pg_dump: str) -> dict:
    """The manifest's description of the snapshot being dumped."""
    dumped_at, server = conn.execute("SELECT now(), current_setting('server_version')").fetchone()
    return {
        "format": FORMAT,
        "geocloud_version": geocloud.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "snapshot_at": dumped_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "created_by": {"os_user": getpass.getuser(), "operator": operator(), "host": socket.gethostname()},
        "source": {"database": redacted(url), "data_dir": str(data_dir)},
        "postgresql": {"server": server, "server_major": pgtools.server_major(conn), "pg_dump": pg_dump,
                       "pg_dump_major": pgtools.tool_major(Path(pg_dump))},
        "postgis": contents.postgis(conn),
        "migration": contents.migration(conn),
        "schemas": contents.platform_schemas(),
        "layers": contents.layers(conn),
    }


def _copy_rasters(data_dir: Path, folder: Path, layers: dict) -> list[dict]:
    """Copy every file of each raster version folder the dump refers to."""
    out = []
    for relative in contents.raster_folders(layers):
        src = data_dir / relative
        if not src.is_dir():
            raise ConfigError(f"the COG folder {relative} of a live or kept raster version is missing",
                              where=str(data_dir), fix="check that GEOCLOUD_DATA_DIR is this database's data "
                                                       "directory; re-run the layer's ETL to rebuild the version")
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            name = path.relative_to(data_dir).as_posix()
            out.append({"path": f"{DATA}/{name}", **copy_hashed(path, folder / DATA / name)})
    return out


def _copy_reports(data_dir: Path, folder: Path, reports: list[str]) -> tuple[list[dict], list[str]]:
    """Copy the finished runs' reports; name those no longer on disk (an operator may prune them)."""
    copied, missing = [], []
    for name in reports:
        if (data_dir / name).is_file():
            copied.append({"path": f"{DATA}/{name}", **copy_hashed(data_dir / name, folder / DATA / name)})
        else:
            missing.append(name)
    return copied, missing
