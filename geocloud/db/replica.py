"""A read replica and how far it lags behind its primary, measured by one thread per process.

The lag is the time since the last transaction the replica replayed, counted only while it has
received WAL it has not replayed yet: a replica that has replayed everything it received is
current (0 s), however long ago the primary last wrote, and also when the primary is gone (it is
then the newest data there is). A replica that cannot be reached has no lag (None): reads then go
to the primary, as they do when the lag passes GEOCLOUD_REPLICA_MAX_LAG.
"""

import logging
import threading
import time

from geocloud.config import get_settings
from geocloud.errors import DatabaseError

LOG = logging.getLogger("geocloud.db")
CHECK = 1.0  # seconds between two measurements
LAG_SQL = ("SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
           "THEN 0 ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp())) END")


class Replica:
    """The pool of one read URL, its last measured lag (seconds; None: unreachable) and whether it
    is too far behind: past GEOCLOUD_REPLICA_MAX_LAG in two measurements in a row, as a replica
    that has just received a commit after a quiet spell reads as far behind for an instant."""

    def __init__(self, pool):
        self.pool = pool
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
            with self.pool.connection() as conn:
                lag = float(conn.execute(LAG_SQL).fetchone()[0])
        except DatabaseError:  # the pool has logged why
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
