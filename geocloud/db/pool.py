"""One connection pool per server process, opened on first use.

Workers share nothing in memory: each has its own pool onto the same PostGIS (point
GEOCLOUD_DATABASE_URL at a read replica for read-only workers)."""

import atexit
import threading

from psycopg_pool import ConnectionPool

from geocloud.db.connect import connect, database_url

_lock = threading.Lock()
_pools: dict[str, ConnectionPool] = {}


def get_pool() -> ConnectionPool:
    url = database_url()
    pool = _pools.get(url)
    if pool is None:
        with _lock:
            pool = _pools.get(url)
            if pool is None:
                connect(url).close()  # a clear DatabaseError now rather than a pool timeout later
                # Short, indexed API queries: JIT compilation and parallel workers cost more time than
                # they save, and a runaway query is stopped after a minute.
                options = "-c jit=off -c max_parallel_workers_per_gather=0 -c statement_timeout=60000"
                pool = ConnectionPool(url, min_size=1, max_size=8, name="geocloud", open=True,
                                      kwargs={"autocommit": True, "options": options})
                _pools[url] = pool
    return pool


@atexit.register
def _close_all() -> None:
    for pool in _pools.values():
        pool.close()
