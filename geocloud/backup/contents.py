"""What a backup holds: the platform's schemas, and the data files the dumped database refers to.

The data directory holds, besides the tile cache (derived, never backed up), one COG folder per
raster version (``rasters/<layer>/v<N>``, named in ``geocloud.layer_versions.storage``) and one
report per ETL run (``reports/run-<id>.json``). A backup copies exactly those the dump refers to:
the folders of the live and kept (history) versions, and the reports of the runs that had finished.
"""

import re

import psycopg

from geocloud.db.migrate import available

RASTER_PREFIX = "rasters/"


def platform_schemas() -> list[str]:
    """The schemas geocloud's migrations create (live, staging, history, geocloud)."""
    found = {"geocloud"}  # created by the migrations' own bookkeeping
    for migration in available():
        found |= set(re.findall(r"CREATE SCHEMA(?: IF NOT EXISTS)? (\w+)", migration.sql, re.IGNORECASE))
    return sorted(found)


def raster_layers(conn: psycopg.Connection) -> list[str]:
    """Layers with kept raster versions: those whose COG folders an ETL run may retire."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT layer FROM geocloud.layer_versions WHERE state <> 'retired' AND storage LIKE %s "
        "ORDER BY layer", (RASTER_PREFIX + "%",))]


def layers(conn: psycopg.Connection) -> dict:
    """Each layer's live version and kept versions, with the storage they are in."""
    out: dict[str, dict] = {}
    for layer, version, state, storage, count in conn.execute(
            "SELECT layer, version, state, storage, feature_count FROM geocloud.layer_versions "
            "WHERE state <> 'retired' ORDER BY layer, version DESC"):
        item = out.setdefault(layer, {"live": None, "kept": [], "storage": {}, "feature_count": None})
        item["storage"][str(version)] = storage
        if state == "live":
            item["live"], item["feature_count"] = version, count
        else:
            item["kept"].append(version)
    return out


def raster_folders(layer_facts: dict) -> list[str]:
    return sorted(s for item in layer_facts.values() for s in item["storage"].values() if s.startswith(RASTER_PREFIX))


def finished_reports(conn: psycopg.Connection) -> list[str]:
    """The report files of the runs that had finished (a report is written before its run's record
    says it ended, so these are whole)."""
    return [f"reports/run-{r[0]}.json" for r in
            conn.execute("SELECT id FROM geocloud.etl_runs WHERE status <> 'running' ORDER BY id")]


def migration(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(version), 0) FROM geocloud.schema_migrations").fetchone()[0]


def postgis(conn: psycopg.Connection) -> dict | None:
    """PostGIS's version and the schema it is installed in (migration 0001 creates it in the first
    schema of the search path: ``geocloud`` when the database user is called geocloud, else public).
    The dump carries its CREATE EXTENSION, in that schema."""
    row = conn.execute("SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = "
                       "e.extnamespace WHERE e.extname = 'postgis'").fetchone()
    return {"version": row[0], "schema": row[1]} if row else None


def present_schemas(conn: psycopg.Connection) -> list[str]:
    """Which of the platform's schemas a database already has."""
    return [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY nspname",
                                       (platform_schemas(),))]
