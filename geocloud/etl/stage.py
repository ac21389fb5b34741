"""Staging in PostGIS: COPY into ``staging.<layer>__r<run>``, build its indexes, diff it with live.

The staging table is created, filled and indexed in one transaction, so a run killed before that
commit leaves nothing behind; one killed after it leaves a table that the next run for the layer
drops (it holds the layer's advisory lock, so no other run can be using it).
"""

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
import pgpq
import pyarrow as pa
from psycopg import sql

from geocloud.catalog.models import SQL_TYPES, WEB_MERCATOR_GEOM, Layer
from geocloud.db.connect import connect
from geocloud.errors import Conflict

SAMPLE_KEYS = 20
T = TypeVar("T")


def staging_name(layer_id: str, run_id: int) -> str:
    return f"{layer_id}__r{run_id}"


def _lock_key(layer_id: str) -> sql.Composable:
    return sql.SQL("hashtextextended({}, 0)").format(sql.Literal(f"geocloud.layer:{layer_id}"))


def lock_layers(conn: psycopg.Connection, layer_ids: list[str]) -> None:
    """Take each layer's session advisory lock, or fail at once naming the run that holds it.

    The lock dies with the connection, so a killed run never leaves a layer locked."""
    for layer_id in layer_ids:
        got = conn.execute(sql.SQL("SELECT pg_try_advisory_lock({})").format(_lock_key(layer_id))).fetchone()[0]
        if not got:
            row = conn.execute(
                "SELECT id, operator, started_at FROM geocloud.etl_runs WHERE status = 'running' "
                "AND %s = ANY(layers) ORDER BY id DESC LIMIT 1", (layer_id,)).fetchone()
            who = f" (run {row[0]} by {row[1]} since {row[2]:%Y-%m-%d %H:%M})" if row else ""
            raise Conflict(f"layer {layer_id!r} is being updated by another run{who}",
                           fix="wait for that run to finish, then try again")


def unlock_layers(conn: psycopg.Connection, layer_ids: list[str]) -> None:
    """Give the layers' locks back now. Closing the connection would too, but only once the server
    process has exited, which a next run started at once can beat."""
    for layer_id in layer_ids:
        conn.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(_lock_key(layer_id)))


def clear_leftovers(conn: psycopg.Connection, layer_ids: list[str], current_run: int) -> list[int]:
    """Mark earlier runs that died mid-way as interrupted and drop their staging tables."""
    stale = [r[0] for r in conn.execute(
        "UPDATE geocloud.etl_runs SET status = 'interrupted', finished_at = now(), "
        "error = 'the process stopped before finishing (killed or crashed)' "
        "WHERE status = 'running' AND id <> %s AND layers && %s RETURNING id", (current_run, layer_ids))]
    for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'staging' AND tablename LIKE ANY(%s)",
            ([f"{lid}\\_\\_r%" for lid in layer_ids],)).fetchall():
        if name != staging_name(name.rsplit("__r", 1)[0], current_run):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS staging.{}").format(sql.Identifier(name)))
    return stale


def create_staging(conn: psycopg.Connection, layer: Layer, run_id: int) -> str:
    name = staging_name(layer.id, run_id)
    columns = [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(SQL_TYPES[f.type])) for f in layer.fields]
    columns.append(sql.SQL("geom geometry({}, {}) NOT NULL").format(sql.SQL(layer.geometry), sql.Literal(layer.srid)))
    mercator = layer.srid != 3857  # projected once here rather than once per feature in every Web Mercator tile
    if mercator:
        columns.append(sql.SQL("{} geometry({}, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED").format(
            sql.Identifier(WEB_MERCATOR_GEOM), sql.SQL(layer.geometry)))
    conn.execute(sql.SQL("CREATE TABLE staging.{} ({})").format(sql.Identifier(name), sql.SQL(", ").join(columns)))
    if mercator:  # no query selects by it (tiles find features by geom): ANALYZE, ours and autovacuum's,
        # skips it rather than spend 0.2 s a million rows on its statistics
        conn.execute(sql.SQL("ALTER TABLE staging.{} ALTER COLUMN {} SET STATISTICS 0").format(
            sql.Identifier(name), sql.Identifier(WEB_MERCATOR_GEOM)))
    return name


def copy_statement(layer: Layer, table: str) -> sql.Composed:
    cols = [sql.Identifier(f.name) for f in layer.fields] + [sql.Identifier("geom")]
    return sql.SQL("COPY staging.{} ({}) FROM STDIN (FORMAT binary, FREEZE)").format(
        sql.Identifier(table), sql.SQL(", ").join(cols))


class CopyWriter:
    """Streams Arrow tables as binary COPY (pgpq encodes them) from a thread of its own, so that
    PostgreSQL parses and stores one batch while the next is read and validated (two cores both
    busy). Binary COPY spares both sides the text round trip: no hex WKB, no number formatting and
    parsing. Tables are written one after the other on the one connection, keeping everything in
    the caller's staging transaction. One table waits while another is written: the database is
    the slower side, and whatever waits when the last batch is ready, it then copies alone, on one
    core (three waiting tables made that tail ~0.3 s longer on 1,000,000 buildings)."""

    def __init__(self, conn: psycopg.Connection):
        # The transaction's new table is synced to disk at its commit (wal_level=minimal writes it no
        # WAL): written back as it is copied, it leaves the commit almost nothing to wait for, where
        # one core would idle (1,000,000 buildings: 0.19 -> 0.02 s, the copy no slower).
        conn.execute("SET LOCAL backend_flush_after = '2MB'")
        self.conn, self.error = conn, None
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.thread = threading.Thread(target=self._run, name="geocloud-copy", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        current, copy, ctx, encoder = None, None, None, None
        try:
            while (item := self.queue.get()) is not None:
                statement, table = item
                if statement != current:
                    if ctx is not None:
                        copy.write(encoder.finish())
                        ctx.__exit__(None, None, None)
                    ctx = self.conn.cursor().copy(statement)
                    copy, current = ctx.__enter__(), statement
                    encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
                    copy.write(encoder.write_header())
                for batch in table.to_batches():
                    copy.write(encoder.write_batch(batch))
                self.queue.task_done()
            if ctx is not None:
                copy.write(encoder.finish())
                ctx.__exit__(None, None, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in close()
            self.error = exc
            while self.queue.get() is not None:  # unblock the producer
                self.queue.task_done()
        finally:
            self.queue.task_done()

    def write(self, statement: sql.Composed, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((statement.as_string(self.conn), table))

    def drain(self) -> None:
        """Wait until everything written so far has reached the server."""
        self.queue.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


# What ``conn`` does beside the spatial index, it does on one core: PostgreSQL builds a GiST with no
# parallel workers, and it is the longest job (1.8 s for 1,000,000 buildings, against 1.2 s for the
# key index and 0.7 s for a first load's diff, each alone on one core), so parallel workers for the
# others only take CPU from it: beside them it took 2.6 s on two cores.
BESIDE_THE_SPATIAL_INDEX = {"max_parallel_maintenance_workers": "0", "max_parallel_workers_per_gather": "0"}


def build_indexes(conn: psycopg.Connection, layer: Layer, table: str, meanwhile: Callable[[], T]) -> T:
    """Build the key, spatial and catalog indexes of a committed staging table, and return what
    ``meanwhile`` (e.g. the diff against live) returns, which runs on ``conn`` after the key index.
    The spatial index, the longest build, runs all the while on a second connection: two cores,
    two jobs (``conn`` works with ``BESIDE_THE_SPATIAL_INDEX`` meanwhile, then gets its settings
    back). The Web Mercator geometry needs no index of its own: tiles find features by ``geom``."""
    ident = sql.Identifier(table)
    errors: list[BaseException] = []

    def spatial_index():
        try:
            with connect(autocommit=True) as other:
                other.execute(sql.SQL("CREATE INDEX {} ON staging.{} USING gist (geom)").format(
                    sql.Identifier(f"{table}_geom"), ident))
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            errors.append(exc)

    second = threading.Thread(target=spatial_index, name="geocloud-index", daemon=True)
    second.start()
    before = {name: _set(conn, name, value) for name, value in BESIDE_THE_SPATIAL_INDEX.items()}
    try:
        conn.execute(sql.SQL("CREATE UNIQUE INDEX {} ON staging.{} ({})").format(
            sql.Identifier(f"{table}_key"), ident, sql.Identifier(layer.key)))
        for i, columns in enumerate(layer.indexes):  # the catalog's extra indexes (lookups by parts)
            conn.execute(sql.SQL("CREATE INDEX {} ON staging.{} ({})").format(
                sql.Identifier(f"{table}_i{i}"), ident, sql.SQL(", ").join(map(sql.Identifier, columns))))
        result = meanwhile()
    finally:
        second.join()
    if errors:
        raise errors[0]
    for name, value in before.items():
        _set(conn, name, value)
    conn.execute(sql.SQL("ANALYZE staging.{}").format(ident))
    return result


def _set(conn: psycopg.Connection, name: str, value: str) -> str:
    """Set a session setting of ``conn``; return the value it had."""
    was = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
    conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return was


@dataclass
class Diff:
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    bbox: list[float] | None = None          # changed area in the layer's CRS
    bbox_crs84: list[float] | None = None    # the same, lon/lat
    extent_crs84: list[float] | None = None  # the whole new version, lon/lat: the layer's extent once live
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict:
        return vars(self).copy()


def table_columns(conn: psycopg.Connection, qualified: str) -> list[str]:
    schema, table = qualified.split(".", 1)
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (schema, table)).fetchall()]


def _table(qualified: str) -> sql.Composable:
    schema, table = qualified.split(".", 1)
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def diff(conn: psycopg.Connection, layer: Layer, old_name: str | None, new_name: str) -> Diff:
    """Added, removed and changed features by natural key between two tables (``schema.table``),
    and the changed area. When the catalog gained or lost fields between the two, every feature
    present in both counts as changed: its published form differs."""
    key = sql.Identifier(layer.key)
    old = _table(old_name) if old_name else None
    new = _table(new_name)
    if old is None:
        row = conn.execute(sql.SQL(
            "SELECT n, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT count(*) AS n, ST_Extent(geom) AS e FROM {}) s").format(new)).fetchone()
        result = Diff(added=row[0], bbox=list(row[1:]) if row[0] else None)
        whole = result.bbox
        keys = conn.execute(sql.SQL("SELECT {}::text FROM {} ORDER BY 1 LIMIT %s").format(key, new),
                            (SAMPLE_KEYS,)).fetchall()
        result.samples = {"added": [k[0] for k in keys]}
    else:
        old_cols, new_cols = ([c for c in table_columns(conn, name) if c != WEB_MERCATOR_GEOM]  # derived from geom
                              for name in (old_name, new_name))
        common = [c for c in new_cols if c in old_cols and c != "geom"]
        reshaped = sql.SQL("true") if old_cols != new_cols else sql.SQL("false")
        attrs = sql.SQL(", ").join(sql.SQL("o.{}").format(sql.Identifier(c)) for c in common)
        attrs_n = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in common)
        q = sql.SQL("""
            WITH d AS (
                SELECT o.{key} AS okey, n.{key} AS nkey, o.geom AS ogeom, n.geom AS ngeom,
                       (o.{key} IS NOT NULL AND n.{key} IS NOT NULL AND
                        ({reshaped} OR ROW({attrs}) IS DISTINCT FROM ROW({attrs_n})
                        OR NOT ST_OrderingEquals(o.geom, n.geom)))
                       AS changed
                FROM {old} o FULL JOIN {new} n ON o.{key} = n.{key})
            SELECT count(*) FILTER (WHERE okey IS NULL),
                   count(*) FILTER (WHERE nkey IS NULL),
                   count(*) FILTER (WHERE changed),
                   count(*) FILTER (WHERE okey IS NOT NULL AND nkey IS NOT NULL AND NOT changed),
                   ST_Extent(ogeom) FILTER (WHERE nkey IS NULL OR changed)::geometry,
                   ST_Extent(ngeom) FILTER (WHERE okey IS NULL OR changed)::geometry,
                   (array_agg(nkey::text ORDER BY nkey) FILTER (WHERE okey IS NULL))[1:{n}],
                   (array_agg(okey::text ORDER BY okey) FILTER (WHERE nkey IS NULL))[1:{n}],
                   (array_agg(nkey::text ORDER BY nkey) FILTER (WHERE changed))[1:{n}],
                   ST_XMin(ST_Extent(ngeom)), ST_YMin(ST_Extent(ngeom)), ST_XMax(ST_Extent(ngeom)),
                   ST_YMax(ST_Extent(ngeom))
            FROM d""").format(key=key, attrs=attrs, attrs_n=attrs_n, old=old, new=new, n=sql.Literal(SAMPLE_KEYS),
                         reshaped=reshaped)
        a, r, c, u, e_old, e_new, s_a, s_r, s_c, *whole = conn.execute(q).fetchone()
        whole = whole if whole[0] is not None else None
        result = Diff(a, r, c, u, samples={"added": s_a or [], "removed": s_r or [], "changed": s_c or []})
        extent = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(g) AS e FROM unnest(ARRAY[%s::geometry, %s::geometry]) g) s",
            (e_old, e_new)).fetchone() if (e_old or e_new) else None
        result.bbox = list(extent) if extent and extent[0] is not None else None
    if result.bbox:
        result.bbox_crs84 = bbox_crs84(conn, result.bbox, layer.srid)
    if whole:
        result.extent_crs84 = result.bbox_crs84 if whole == result.bbox else bbox_crs84(conn, whole, layer.srid)
    return result


def bbox_crs84(conn: psycopg.Connection, bbox: list[float], srid: int) -> list[float]:
    row = conn.execute(
        "SELECT ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g) FROM "
        "(SELECT ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, %s), 4326) AS g) s", (*bbox, srid)).fetchone()
    return [round(v, 7) for v in row]
