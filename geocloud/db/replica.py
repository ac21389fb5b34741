"""A read replica and how far it lags behind its primary, measured by one thread per process.

The lag is the time since the last transaction the replica replayed, counted only while it misses
WAL the primary had written when asked (a moment before): a replica that has replayed all that is
current (0 s), however long ago the primary last wrote. Measured against the primary, a replica
cut off from it (its WAL receiver down, the link between sites cut) is seen falling behind even
though it has replayed all it received. With no primary to ask (it is down), a replica that has
replayed all it received is current: it holds the newest data there is. A replica that cannot be
reached has no lag (None): reads then go to the primary, as they do when the lag passes
GEOCLOUD_REPLICA_MAX_LAG.
"""

import logging
import threading
import time

import psycopg

from geocloud.config import get_settings
from geocloud.errors import DatabaseError

LOG = logging.getLogger("geocloud.db")
CHECK = 1.0  # seconds between two measurements
PRIMARY_SQL = "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END"
LAG_SQL = ("SELECT CASE WHEN NOT pg_is_in_recovery() OR coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, "
           "pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()) THEN 0 "
           "ELSE greatest(0, coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)) END")


class Replica:
    """The pool of one read URL, its last measured lag (seconds; None: unreachable) and whether it
    is too far behind: past GEOCLOUD_REPLICA_MAX_LAG in two measurements in a row, as a replica
    that has just received a commit after a quiet spell reads as far behind for an instant."""

    def __init__(self, pool, primary):
        self.pool, self.primary = pool, primary  # primary: a function giving the primary's pool
        self.lag: float | None = None
        self.behind = False
        self._over = False
        self._measure(quiet=True)
        threading.Thread(target=self._watch, name="geocloud-replica-lag", daemon=True).start()

    def usable(self) -> bool:
        return self.lag is not None and not self.behind

    def _measure(self, quiet: bool = False) -> None:
        was = self.usable()
        try:
            with self.primary().connection() as conn:
                written = conn.execute(PRIMARY_SQL).fetchone()[0]
        except (DatabaseError, psycopg.Error):  # down: the replica is measured on its own
            written = None
        try:
            with self.pool.connection() as conn:
                lag = float(conn.execute(LAG_SQL, (written,)).fetchone()[0])
        except (DatabaseError, psycopg.Error):  # the pool has logged an outage
            lag = None
        limit = get_settings().replica_max_lag
        over = lag is not None and lag > limit
        self.lag, self.behind, self._over = lag, over and self._over, over
        if was and self.behind:
            LOG.warning("the read replica is %.1f s behind its primary (GEOCLOUD_REPLICA_MAX_LAG %g s): reading "
                        "from the primary until it catches up", lag, limit)
        elif was != self.usable() and not quiet:
            LOG.warning("reading from the %s", "replica again" if self.usable() else "primary: the replica is unreachable")

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK)
            self._measure()
