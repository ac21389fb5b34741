"""Rate limits per API key (or token or JWT subject) and per anonymous client address.

Counts live in PostGIS (``geocloud.rate_counts``, one row per client and minute) so that every
worker on every machine shares them; each worker adds its own counts in one batched statement
every FLUSH seconds and learns the totals back, so a request never waits for the database. A
client over its limit is answered 429 with ``Retry-After`` (seconds to the next minute).
"""

import threading
import time

from geocloud.access import background
from geocloud.config import get_settings
from geocloud.db.pool import write_pool

FLUSH = 0.5
_lock = threading.Lock()
_pending: dict[tuple[str, int], int] = {}
_totals: dict[tuple[str, int], int] = {}


def limit_for(client: str) -> int:
    s = get_settings()
    return s.rate_limit_anonymous if client.startswith("ip:") else s.rate_limit_key


def hit(client: str) -> int | None:
    """Count one request; return seconds to wait if the client is over its limit, else None."""
    now = time.time()
    key = (client, int(now // 60))
    _start()
    with _lock:
        _pending[key] = pending = _pending.get(key, 0) + 1
        seen = _totals.get(key, 0) + pending
    if seen > limit_for(client):
        return max(1, int(60 - now % 60))
    return None


def _start() -> None:
    background.ensure("geocloud-ratelimit", _flusher)


def _flusher() -> None:
    """Add this worker's counts to the shared ones and learn the totals back. A count leaves
    ``_pending`` only once written, so while the database is down (this thread then waits for it)
    limits go on from the last totals plus this worker's own counts: they still hold, per worker."""
    while True:
        time.sleep(FLUSH)
        with _lock:
            batch = dict(_pending)
        if not batch:
            continue
        try:
            with write_pool().connection() as conn:
                rows = conn.execute(
                    "INSERT INTO geocloud.rate_counts AS r (client, minute, count) "
                    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::int[]) "
                    "ON CONFLICT (client, minute) DO UPDATE SET count = r.count + excluded.count "
                    "RETURNING client, minute, count",
                    ([k[0] for k in batch], [k[1] for k in batch], list(batch.values()))).fetchall()
                _note_key_use(conn, batch)
                if int(time.time()) % 60 < FLUSH * 2:
                    conn.execute("DELETE FROM geocloud.rate_counts WHERE minute < %s", (int(time.time() // 60) - 2,))
        except Exception:  # noqa: BLE001 - counting must never break serving; the counts are sent next time
            continue
        current = int(time.time() // 60)
        with _lock:
            for k, v in batch.items():
                if (left := _pending.pop(k) - v) > 0:
                    _pending[k] = left
            for client, minute, count in rows:
                _totals[(client, minute)] = count
            for k in [k for k in _totals if k[1] < current - 1]:
                del _totals[k]


def _note_key_use(conn, batch: dict) -> None:
    """The API keys among the counted clients were used now (the portal's account page lists it);
    written at most once a minute a key."""
    used = sorted({client[4:] for client, _ in batch if client.startswith("key:")})
    if used:
        conn.execute("UPDATE geocloud.api_keys SET last_used_at = now() WHERE id = ANY(%s) "
                     "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')", (used,))
