"""Make a staged version live, roll back to a kept one, and retire old versions.

Each switch is one short transaction: readers see the old version or the new one, never a mix.
Vector versions are tables moved between ``live`` and ``history``; raster versions are COG
folders under the data directory, switched by the ``geocloud.layer_versions`` row alone.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from geocloud.catalog.models import Layer
from geocloud.errors import NotFound
from geocloud.etl.guard import Limits, refuse, review
from geocloud.etl.stage import Diff, bbox_crs84, diff

KEEP_VERSIONS = 3  # previous versions kept for rollback, besides the live one
LOCK_TIMEOUT = "30s"


@dataclass
class Staged:
    layer: Layer
    storage: str          # staging table name, or a raster version folder relative to the data dir
    count: int
    diff: Diff


def _env_box(bbox_crs84_: list[float] | None) -> tuple:
    """Parameters of _EXTENT_SQL: a null check, then xmin, ymin, xmax, ymax."""
    return (bbox_crs84_[0], *bbox_crs84_) if bbox_crs84_ else (None,) * 5


def live_version(conn: psycopg.Connection, layer_id: str, lock: bool = False) -> tuple[int, str] | None:
    q = "SELECT version, storage FROM geocloud.layer_versions WHERE layer = %s AND state = 'live'"
    return conn.execute(q + (" FOR UPDATE" if lock else ""), (layer_id,)).fetchone()


def _demote_live(conn: psycopg.Connection, layer: Layer, version: int) -> None:
    if layer.kind == "vector":
        hist = f"{layer.id}__v{version}"
        conn.execute(sql.SQL("ALTER TABLE live.{} RENAME TO {}").format(sql.Identifier(layer.id), sql.Identifier(hist)))
        conn.execute(sql.SQL("ALTER TABLE live.{} SET SCHEMA history").format(sql.Identifier(hist)))
        storage = f"history.{hist}"
    else:
        storage = conn.execute("SELECT storage FROM geocloud.layer_versions WHERE layer = %s AND version = %s",
                               (layer.id, version)).fetchone()[0]
    conn.execute("UPDATE geocloud.layer_versions SET state = 'history', storage = %s WHERE layer = %s AND version = %s",
                 (storage, layer.id, version))


def _promote(conn: psycopg.Connection, layer: Layer, schema: str, table: str) -> str:
    """Move a vector table (staging or history) to live.<layer>; return the new storage name."""
    conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA live").format(sql.Identifier(schema), sql.Identifier(table)))
    conn.execute(sql.SQL("ALTER TABLE live.{} RENAME TO {}").format(sql.Identifier(table), sql.Identifier(layer.id)))
    return f"live.{layer.id}"


def publish(conn: psycopg.Connection, run_id: int, staged: list[Staged], operator: str, data_dir: Path,
            before_commit=lambda: None, *, limits: Limits, force: bool = False) -> tuple[dict, dict]:
    """Make every staged layer of a run live at once; return ({layer: new version}, the guard's
    record: what a forced publish overrode, {} when the guard found nothing).

    The guard reviews the staged versions against the live ones first (their rows locked, so no
    other switch slips in between): beyond ``limits`` it raises ``GuardRefused`` and nothing
    changes, unless ``force``; a forced publish records what it overrode in the run's record, in
    the same transaction."""
    versions, doomed = {}, []
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        current_of = {item.layer.id: live_version(conn, item.layer.id, lock=True) for item in staged}
        findings = review(conn, staged, limits)
        if findings and not force:
            raise refuse(findings)
        guard = {"findings": findings, "forced": True, "operator": operator} if findings else {}
        if guard:
            conn.execute("UPDATE geocloud.etl_runs SET guard = %s WHERE id = %s", (Jsonb(guard), run_id))
        for item in staged:
            layer = item.layer
            current = current_of[layer.id]
            version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM geocloud.layer_versions WHERE layer = %s",
                                   (layer.id,)).fetchone()[0]
            if current:
                _demote_live(conn, layer, current[0])
            storage = _promote(conn, layer, "staging", item.storage) if layer.kind == "vector" else item.storage
            box = _env_box(item.diff.bbox_crs84)
            conn.execute(
                "INSERT INTO geocloud.layer_versions (layer, version, run_id, state, storage, feature_count, extent) "
                "VALUES (%s, %s, %s, 'live', %s, %s, " + _EXTENT_SQL + ")",
                (layer.id, version, run_id, storage, item.count, *_env_box(item.diff.extent_crs84)))
            conn.execute(
                "INSERT INTO geocloud.layer_events (layer, action, from_version, to_version, run_id, operator, "
                "changed_extent) VALUES (%s, 'publish', %s, %s, %s, %s, " + _EXTENT_SQL + ")",
                (layer.id, current[0] if current else None, version, run_id, operator, *box))
            versions[layer.id] = version
            doomed += _retire(conn, layer)
        before_commit()
    for folder in doomed:  # raster files go only once the switch is committed
        shutil.rmtree(data_dir / folder, ignore_errors=True)
    return versions, guard


_EXTENT_SQL = "CASE WHEN %s::float8 IS NULL THEN NULL ELSE ST_MakeEnvelope(%s, %s, %s, %s, 4326) END"


def _retire(conn: psycopg.Connection, layer: Layer) -> list[str]:
    """Retire versions beyond KEEP_VERSIONS: drop their tables; return raster folders to delete."""
    folders = []
    old = conn.execute(
        "SELECT version, storage FROM geocloud.layer_versions WHERE layer = %s AND state = 'history' "
        "ORDER BY version DESC OFFSET %s", (layer.id, KEEP_VERSIONS)).fetchall()
    for version, storage in old:
        if layer.kind == "vector":
            schema, table = storage.split(".", 1)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        else:
            folders.append(storage)
        conn.execute("UPDATE geocloud.layer_versions SET state = 'retired' WHERE layer = %s AND version = %s",
                     (layer.id, version))
    return folders


def rollback(conn: psycopg.Connection, layer: Layer, to_version: int | None, operator: str) -> tuple[int, int, Diff]:
    """Make a kept version live again; the current one is kept, so a rollback can itself be undone."""
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        current = live_version(conn, layer.id, lock=True)
        if current is None:
            raise NotFound(f"layer {layer.id!r} has no live version to roll back from",
                           fix="load it first with `geocloud etl run`")
        kept = conn.execute(
            "SELECT version, storage, feature_count FROM geocloud.layer_versions WHERE layer = %s AND state = 'history' "
            "ORDER BY version DESC", (layer.id,)).fetchall()
        if not kept:
            raise NotFound(f"layer {layer.id!r} has no earlier version kept", fix="nothing to roll back to")
        target = kept[0] if to_version is None else next((k for k in kept if k[0] == to_version), None)
        if target is None:
            raise NotFound(f"version {to_version} of {layer.id!r} is not kept",
                           fix=f"kept versions: {', '.join(str(k[0]) for k in kept)} (see `geocloud etl history {layer.id}`)")
        if layer.kind == "vector":
            change = diff(conn, layer, current[1], target[1])
        else:
            change = _raster_change(conn, layer.id, current[0], target[0])
        _demote_live(conn, layer, current[0])
        storage = _promote(conn, layer, "history", target[1].split(".", 1)[1]) if layer.kind == "vector" else target[1]
        conn.execute("UPDATE geocloud.layer_versions SET state = 'live', storage = %s WHERE layer = %s AND version = %s",
                     (storage, layer.id, target[0]))
        conn.execute(
            "INSERT INTO geocloud.layer_events (layer, action, from_version, to_version, operator, changed_extent) "
            "VALUES (%s, 'rollback', %s, %s, %s, " + _EXTENT_SQL + ")",
            (layer.id, current[0], target[0], operator, *_env_box(change.bbox_crs84)))
    return current[0], target[0], change


def _raster_change(conn: psycopg.Connection, layer_id: str, a: int, b: int) -> Diff:
    row = conn.execute(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(extent) e FROM "
        "geocloud.layer_versions WHERE layer = %s AND version IN (%s, %s)) s", (layer_id, a, b)).fetchone()
    box = list(row) if row[0] is not None else None
    return Diff(changed=1, bbox_crs84=box)


def raster_diff(conn: psycopg.Connection, layer_id: str, bounds_3826: list[float], srid: int) -> Diff:
    """A new raster replaces the whole image: the changed area is the old and new extents together."""
    new = extent = bbox_crs84(conn, bounds_3826, srid)
    current = live_version(conn, layer_id)
    if current:
        old = conn.execute("SELECT ST_XMin(extent), ST_YMin(extent), ST_XMax(extent), ST_YMax(extent) "
                           "FROM geocloud.layer_versions WHERE layer = %s AND version = %s",
                           (layer_id, current[0])).fetchone()
        if old[0] is not None:
            new = [min(new[0], old[0]), min(new[1], old[1]), max(new[2], old[2]), max(new[3], old[3])]
    return Diff(added=0 if current else 1, changed=1 if current else 0, bbox=bounds_3826, bbox_crs84=new,
                extent_crs84=extent)
