"""What is live right now: each layer's version, publish time, extent and feature count.

Read from ``geocloud.layer_versions`` and re-read at most every REFRESH seconds per process, so
that several workers on several machines all follow an ETL publish or rollback within seconds,
with nothing shared in memory.

While the database is unreachable the last snapshot read is kept (and the read retried at each
request, at once refused while the pool knows the database is down), so that what needs no database,
such as cached tiles and the conformance page, keeps answering through an outage."""

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from geocloud.db.pool import get_pool
from geocloud.errors import DatabaseError

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
_current: tuple[float, Snapshot] | None = None


def _read() -> Snapshot:
    with get_pool().connection() as conn:
        token = conn.execute("SELECT coalesce(max(id), 0) FROM geocloud.layer_events").fetchone()[0]
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
    return Snapshot(token, layers, listed, oldest)


def snapshot() -> Snapshot:
    """The live state, read again if older than REFRESH seconds. One request reads while the others
    go on with the snapshot they have; while the database is unreachable the last one stays (only a
    process that never read one has nothing to answer with, and raises DatabaseUnavailable)."""
    global _current
    current = _current
    if current is not None and time.monotonic() - current[0] <= REFRESH:
        return current[1]
    if not _lock.acquire(blocking=current is None):
        return current[1]  # another request is reading it now
    try:
        if _current is not current:
            return _current[1]  # read by another request meanwhile
        try:
            _current = (time.monotonic(), _read())
        except DatabaseError:  # the pool has logged the outage
            if current is None:
                raise
            return current[1]
        return _current[1]
    finally:
        _lock.release()
