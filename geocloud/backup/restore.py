"""``geocloud backup restore``: a verified backup into an empty PostGIS database and data directory.

Refuses, changing nothing, when the target database already has any of geocloud's schemas or the
data directory holds anything: a restore over a working installation could destroy the only good
copy, so clearing a target is left to a deliberate act of its own (``dropdb``, a new folder), and
there is no ``--force``. The order keeps a failure harmless: the files are copied into a hidden
folder inside the data directory first, then pg_restore runs in a single transaction, and only when
it has committed are the files moved into place.
"""

import shutil
from pathlib import Path

from geocloud.backup import contents, pgtools
from geocloud.backup.manifest import DATA, DUMP, BackupDamaged, copy_hashed
from geocloud.backup.verify import pg_restore, verify
from geocloud.config import get_settings
from geocloud.db.connect import redacted, connect, database_url
from geocloud.db.migrate import available
from geocloud.errors import Conflict, DatabaseError

STAGING = ".geocloud-restore"  # inside the data directory: the final moves are renames on one file system


def restore(folder: Path) -> dict:
    """Restore ``folder`` into GEOCLOUD_DATABASE_URL and GEOCLOUD_DATA_DIR; return the backup's manifest
    and the migrations newer than the backup (``geocloud db upgrade`` applies them)."""
    manifest = verify(folder)
    url, data_dir = database_url(), get_settings().data_path
    with connect(url, autocommit=True) as conn:
        major = pgtools.server_major(conn)
        _check_target(conn, url, data_dir, manifest, major)
        tool = pg_restore(manifest)
        stage = data_dir / STAGING
        try:
            _stage_files(folder, manifest, stage)
            pgtools.run(tool, ["--single-transaction", "--exit-on-error", "--no-owner", str(folder / DUMP)],
                        url, " to restore the database (nothing was restored)")
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        for entry in stage.iterdir():
            entry.rename(data_dir / entry.name)
        stage.rmdir()
        # pg_restore leaves the planner without statistics: the same queries would take other plans,
        # slower ones, and return rows in another order (a vector tile's features, byte for byte)
        conn.execute("ANALYZE")
    pending = [m.version for m in available() if m.version > manifest["migration"]]
    return {"manifest": manifest, "pending_migrations": pending}


def _check_target(conn, url: str, data_dir: Path, manifest: dict, major: int) -> None:
    """Refuse a target that is not empty, or a server older than the backup's."""
    where = redacted(url)
    if major < manifest["postgresql"]["server_major"]:
        raise DatabaseError(f"the target server runs PostgreSQL {major}, older than the backup's "
                            f"{manifest['postgresql']['server']}", where=where,
                            fix=f"restore into PostgreSQL {manifest['postgresql']['server_major']} or newer")
    present = contents.present_schemas(conn)
    if present:
        raise Conflict(f"the target database already has geocloud's schemas ({', '.join(present)}); nothing was "
                       "changed", where=where,
                       fix="restore into a new, empty database (createdb NAME; point GEOCLOUD_DATABASE_URL at it), "
                           "or drop this one first if it is really to be replaced")
    postgis = contents.postgis(conn)
    if postgis and postgis["schema"] != manifest["postgis"]["schema"]:
        raise Conflict(f"the target database has PostGIS in schema {postgis['schema']}, the backup's tables use it "
                       f"from schema {manifest['postgis']['schema']}; nothing was changed", where=where,
                       fix="restore into a database created without PostGIS (createdb -T template0 NAME)")
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        names = sorted(p.name for p in data_dir.iterdir())[:5] if data_dir.is_dir() else []
        raise Conflict(f"the data directory is not empty ({', '.join(names)}{' …' if len(names) == 5 else ''}); "
                       "nothing was changed", where=str(data_dir),
                       fix="point GEOCLOUD_DATA_DIR at a new, empty folder")


def _stage_files(folder: Path, manifest: dict, stage: Path) -> None:
    """Copy the backup's data files into ``stage``, checking each against the manifest once more on the
    way (a copy read back from slow storage may differ from the one verified)."""
    for item in manifest["files"]:
        if item["path"] == DUMP:
            continue
        relative = Path(item["path"]).relative_to(DATA)
        got = copy_hashed(folder / item["path"], stage / relative, private=False)
        if got != {"size": item["size"], "sha256": item["sha256"]}:
            raise BackupDamaged(f"{item['path']} changed while it was being restored", where=str(folder),
                                fix="use another copy of the backup; nothing was restored")
