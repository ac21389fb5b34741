"""What is live right now: each layer's version, publish time, extent and feature count.

Read from ``geocloud.layer_versions`` and re-read at most every REFRESH seconds per process, so
that several workers on several machines all follow an ETL publish or rollback within seconds,
with nothing shared in memory."""

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from geocloud.serve.pool import get_pool

REFRESH = 2.0


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
class Snapshot:
    token: int                     # the newest publish/rollback event id: changes with any switch
    layers: dict[str, LiveLayer]


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
        columns = dict(conn.execute(
            "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
            "WHERE table_schema = 'live' GROUP BY table_name").fetchall())
    layers = {}
    for layer, version, at, count, *box, storage in rows:
        layers[layer] = LiveLayer(layer, version, at, count, tuple(box) if box[0] is not None else None, storage,
                                  frozenset(columns.get(layer, ())))
    return Snapshot(token, layers)


def snapshot() -> Snapshot:
    global _current
    now = time.monotonic()
    current = _current
    if current is None or now - current[0] > REFRESH:
        with _lock:
            if _current is None or now - _current[0] > REFRESH:
                _current = (now, _read())
            current = _current
    return current[1]
