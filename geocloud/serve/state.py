"""What is live right now: each layer's version, publish time, extent and feature count.

Read from ``geocloud.layer_versions`` and re-read at most every REFRESH seconds per process, so
that several workers on several machines all follow an ETL publish or rollback within seconds,
with nothing shared in memory.

While the database is unreachable the last snapshot read is kept (and the read retried at each
request, at once refused while the pool knows the database is down), so that what needs no database,
such as cached tiles and the conformance page, keeps answering through an outage.

One view per response. The snapshot is read where reads go (the read replica, when there is one),
so the versions it names are versions that database has. A request keeps the snapshot it first
saw (``pin``), and its queries read the rows of exactly those versions: in one REPEATABLE READ
transaction (``tables``), or in one statement that also says where the versions are
(``versions_located``, a vector tile), from ``live.<layer>``, or from the version's history table
when a publish or rollback came in since the snapshot was read. Metadata, items, tiles and ETags of one
response thus always belong to the same layer versions, and a node follows a switch on the primary
within the replica's lag plus REFRESH seconds."""

import threading
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from geocloud.catalog import registry
from geocloud.db.pool import Pool, get_pool
from geocloud.errors import DatabaseError, DatabaseUnavailable

REFRESH = 2.0
EVENTS_KEPT = 5_000


@dataclass(frozen=True)
class LiveLayer:
    layer: str
    version: int
    published_at: datetime
    feature_count: int | None
    extent: tuple[float, float, float, float] | None  # CRS84
    storage: str
    columns: frozenset[str] = frozenset()  # of live.<layer>: a rollback may bring back an older schema


@dataclass(frozen=True)
class Event:
    id: int
    layer: str
    bbox: tuple[float, float, float, float] | None  # changed area, CRS84; None: the whole layer


@dataclass(frozen=True)
class Snapshot:
    token: int                     # the newest publish/rollback event id: changes with any switch
    layers: dict[str, LiveLayer]
    events: tuple[Event, ...] = ()  # the most recent switches, oldest first
    oldest_event: int = 0          # events before this one are no longer listed
    catalog_version: int = 0       # the newest registry event id: changes when an agency layer does

    def layer_token(self, layer: str) -> int:
        """The id of the newest switch of ``layer`` (0 if it never switched)."""
        return max((e.id for e in self.events if e.layer == layer), default=self.oldest_event)

    def changed_since(self, token: int, layers, bounds) -> bool:
        """Did any of ``layers`` switch after event ``token`` in a way that touches the area
        ``bounds()`` gives (CRS84)? ``bounds`` is called only if some switch needs the test."""
        if token < self.oldest_event:
            return True
        box = None
        for e in self.events:
            if e.id > token and e.layer in layers:
                if e.bbox is None:
                    return True
                box = box or bounds()
                if not (e.bbox[2] < box[0] or e.bbox[0] > box[2] or e.bbox[3] < box[1] or e.bbox[1] > box[3]):
                    return True
        return False


_lock = threading.Lock()
_current: tuple[float, Snapshot, Pool] | None = None  # (when read, what, from where)
_pinned: ContextVar[list | None] = ContextVar("geocloud_snapshot", default=None)


def _read(conn: psycopg.Connection) -> Snapshot:
    token, catalog_version = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM geocloud.layer_events), "
        "(SELECT coalesce(max(id), 0) FROM geocloud.registry_events)").fetchone()
    rows = conn.execute(
        "SELECT v.layer, v.version, e.at, v.feature_count, ST_XMin(v.extent), ST_YMin(v.extent), "
        "ST_XMax(v.extent), ST_YMax(v.extent), v.storage FROM geocloud.layer_versions v "
        "JOIN LATERAL (SELECT max(at) AS at FROM geocloud.layer_events e WHERE e.layer = v.layer "
        "AND e.to_version = v.version) e ON true WHERE v.state = 'live'").fetchall()
    events = conn.execute(
        "SELECT id, layer, ST_XMin(changed_extent), ST_YMin(changed_extent), ST_XMax(changed_extent), "
        "ST_YMax(changed_extent) FROM geocloud.layer_events ORDER BY id DESC LIMIT %s", (EVENTS_KEPT,)).fetchall()
    columns = dict(conn.execute(
        "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
        "WHERE table_schema = 'live' GROUP BY table_name").fetchall())
    layers = {}
    for layer, version, at, count, *box, storage in rows:
        layers[layer] = LiveLayer(layer, version, at, count, tuple(box) if box[0] is not None else None, storage,
                                  frozenset(columns.get(layer, ())))
    listed = tuple(Event(i, layer, tuple(box) if box[0] is not None else None)
                   for i, layer, *box in reversed(events))
    oldest = listed[0].id if len(listed) == EVENTS_KEPT else 0
    return Snapshot(token, layers, listed, oldest, catalog_version)


def follow_registry() -> None:
    """Make get_catalog follow the registry version each snapshot carries: a worker re-reads the
    agency layers (where reads go) within REFRESH seconds of a change, pinned per request like the
    layer versions."""
    registry.follow(lambda: snapshot().catalog_version, lambda: get_pool().connection())


def _read_consistent(pool: Pool) -> Snapshot:
    """The snapshot as of one moment of the database (its statements in one transaction)."""
    with pool.connection() as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _read(conn)


def pin() -> Token:
    """Make the calling request keep the first snapshot it sees until ``unpin``."""
    return _pinned.set([])


def unpin(token: Token) -> None:
    _pinned.reset(token)


def snapshot() -> Snapshot:
    """The live state: the one the calling request saw first, if it is pinned; else the process's,
    read again if older than REFRESH seconds."""
    held = _pinned.get()
    if held:
        return held[0]
    snap = _latest()
    if held is not None:
        held.append(snap)
    return snap


def _latest() -> Snapshot:
    """The process's snapshot, read again if older than REFRESH seconds or read from another
    database than reads now go to (the replica fell behind, or caught up). One request reads while
    the others go on with the snapshot they have; while the database is unreachable the last one
    stays (only a process that never read one has nothing to answer with, and raises
    DatabaseUnavailable)."""
    global _current
    current, pool = _current, get_pool()
    if current is not None and time.monotonic() - current[0] <= REFRESH and current[2] is pool:
        return current[1]
    if not _lock.acquire(blocking=current is None):
        return current[1]  # another request is reading it now
    try:
        if _current is not current:
            return _current[1]  # read by another request meanwhile
        try:
            _current = (time.monotonic(), _read_consistent(pool), pool)
        except DatabaseError:  # the pool has logged the outage
            if current is None:
                raise
            return current[1]
        return _current[1]
    finally:
        _lock.release()


def tables(conn: psycopg.Connection, layer_ids) -> dict[str, sql.Composable]:
    """Start a REPEATABLE READ transaction on ``conn`` (it ends when the connection goes back to its
    pool) and give, for each of ``layer_ids``, the table holding the rows of the version the
    request's snapshot names: what the request reads on ``conn`` then belongs to those versions.

    A version this database does not have (a replica behind the primary this snapshot was read
    from, or a version retired since) is answered 503 with Retry-After, and the process's snapshot
    read again."""
    layer_ids = sorted(set(layer_ids))  # one order for every request: no deadlock between two of them
    if not layer_ids:
        return {}
    snap = snapshot()
    wanted = sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.Literal(i), sql.Literal(snap.layers[i].version))
                                for i in layer_ids)
    # Table names are not versioned like rows: a switch committed between reading where a version
    # is and reading its rows would hand over another version's table. The lock on the live tables,
    # taken before the transaction's view is, makes any switch of these layers wait until the
    # request is done (on a replica, its replay waits; up to max_standby_streaming_delay).
    live = sql.SQL(", ").join(sql.Identifier("live", i) for i in layer_ids)
    cur = conn.execute(sql.SQL(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE {} IN ACCESS SHARE MODE; "
        "SELECT layer, storage FROM geocloud.layer_versions WHERE (layer, version) IN ({}) AND state <> 'retired'"
    ).format(live, wanted))
    cur.nextset()
    cur.nextset()
    found = located(layer_ids, dict(cur.fetchall()))
    return {layer: sql.Identifier(*storage.split(".", 1)) for layer, storage in found.items()}


def versions_located(count: int) -> str:
    """A scalar subquery for one statement that reads the rows of ``count`` layers' versions (its
    parameters: layer id and version, ``count`` times, see ``version_parameters``): the JSON object
    of the table each version is in, leaving out versions this database does not have (see
    ``located``).

    The alternative to ``tables`` for a request that reads in ONE statement (a vector tile): the
    statement locks the tables it names before it takes its view of the data, so the tables those
    versions are in cannot change under it, and the same view reads where the versions are and
    their rows. If the tables it named were not those (a switch came in since the snapshot was
    read), the caller reads again from the tables this gave."""
    pairs = ", ".join(["(%s, %s)"] * count)
    return ("(SELECT json_object_agg(layer, storage) FROM geocloud.layer_versions "
            f"WHERE (layer, version) IN ({pairs}) AND state <> 'retired')")


def version_parameters(layer_ids) -> list:
    """The parameters of ``versions_located`` for ``layer_ids``: the versions of the request's snapshot."""
    layers = snapshot().layers
    return [x for i in layer_ids for x in (i, layers[i].version)]


def located(layer_ids, found: dict[str, str] | None) -> dict[str, str]:
    """``found`` (layer id -> the table holding its version), when it names every one of
    ``layer_ids``; otherwise DatabaseUnavailable (503 with Retry-After), and the process's snapshot
    is read again: a version this database does not have (a replica behind the primary this snapshot
    was read from, or a version retired since)."""
    global _current
    found = found or {}
    if len(found) < len(set(layer_ids)):
        if (current := _current) is not None:
            _current = (float("-inf"), *current[1:])  # read again by the next request
        missing = ", ".join(sorted(set(layer_ids) - set(found)))
        raise DatabaseUnavailable(f"this node is switching to another version of {missing}; try again in a moment")
    return found


def live_column(name: str, columns) -> sql.Composable:
    """``t.<name>``, or NULL when the live table (its ``columns``) predates the field, after a
    rollback: the one rule the feature provider and the vector tiles share."""
    if columns and name not in columns:
        return sql.SQL("NULL")
    return sql.SQL("t.{}").format(sql.Identifier(name))
