"""One connection pool per server process and database, opened on first use, that fails fast while
the database is down and is whole again as soon as the database is back.

Workers share nothing in memory: each has its own pools. Reads (``get_pool``) go to
GEOCLOUD_DATABASE_READ_URL's replica while it keeps within GEOCLOUD_REPLICA_MAX_LAG of its primary
(geocloud.db.replica watches it), else to the primary; what a request writes (audit records, rate
counts, tokens' secret) goes to GEOCLOUD_DATABASE_URL (``write_pool``). Without a read URL both
are the one pool.

Outages. A request waits at most GEOCLOUD_DB_TIMEOUT for a connection, and every statement stops
after GEOCLOUD_DB_STATEMENT_TIMEOUT. A connection lost under a request (the server shut down or
restarted: psycopg's AdminShutdown, a broken socket) or no connection in time marks the database
down: a circuit breaker. While it is down, requests are refused at once with DatabaseUnavailable
(503 with Retry-After) instead of each waiting the full timeout, and one thread tries to connect
every PROBE seconds. When the probe gets through after failing, the pool is replaced by a fresh one:
the old pool's connections are all dead, and psycopg_pool would reconnect them with its exponential
backoff (1, 2, 4 ... s), which once kept a server from answering for 21 s after a 40 s outage.
Threads that asked to wait (``wait_while_down``: the audit writer, the rate counter) wait for the
database instead of being refused, and write when it is back; requests never wait for them.
"""

import atexit
import logging
import select
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed

from geocloud.config import get_settings
from geocloud.db.connect import redacted, connect, connection_options, database_url
from geocloud.db.replica import Replica
from geocloud.errors import DatabaseError, DatabaseUnavailable

# Short, indexed API queries: JIT compilation and parallel workers cost more time than they save.
# Custom plans always: psycopg prepares a statement after its fifth run, and PostgreSQL's generic
# plan for it cannot see the bbox, guesses a handful of matches and walks the spatial index then
# sorts: 220 ms for a city-scale page whose custom plan (the key's index, filtered) takes 2 ms.
# (bench/ gives the peers the same settings, from here)
SESSION_SETTINGS = {"jit": "off", "max_parallel_workers_per_gather": "0", "plan_cache_mode": "force_custom_plan"}

LOG = logging.getLogger("geocloud.db")
PROBE = 0.25  # seconds between connection attempts while the database is down
UNAVAILABLE = "the database is unavailable; try again shortly"
_patient = threading.local()


def wait_while_down() -> None:
    """Make the calling (background) thread wait for the database while it is down, instead of
    being refused like a request."""
    _patient.on = True


def _outage(exc: Exception, conn: psycopg.Connection | None) -> bool:
    """Does ``exc`` mean the connection or the server is gone (rather than one statement failing)?"""
    if isinstance(exc, psycopg.InterfaceError):
        return conn is not None and conn.closed
    state = getattr(exc, "sqlstate", None) or ""
    # 08: connection exceptions; 57P01-03: admin or crash shutdown, cannot connect now
    return (conn is not None and conn.broken) or state.startswith(("08", "57P")) or not state


def _dead(conn: psycopg.Connection) -> bool:
    """Is an idle pooled connection dead? An idle connection that has something to read was sent its
    server's goodbye (or EOF): only then is the round trip of a real check spent."""
    if not select.select([conn.fileno()], [], [], 0)[0]:
        return False
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return True
    return False


class Pool:
    """The connections to one database, behind a circuit breaker."""

    def __init__(self, url: str):
        self.url = url
        self.down_since: float | None = None
        self._lock = threading.Lock()
        self._back = threading.Event()
        self._back.set()
        self._pool = self._open()

    def _open(self) -> ConnectionPool:
        s = get_settings()
        # a runaway statement is cancelled by the server
        settings = {**SESSION_SETTINGS, "statement_timeout": str(round(s.db_statement_timeout * 1000))}
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        return ConnectionPool(self.url, min_size=1, max_size=8, name="geocloud", open=True, timeout=s.db_timeout,
                              reconnect_timeout=s.db_timeout,
                              kwargs={"autocommit": True, "options": options, **connection_options(s.db_timeout)})

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, or DatabaseUnavailable within GEOCLOUD_DB_TIMEOUT (at once while the
        database is known to be down). Errors meaning the database went away become DatabaseUnavailable
        too, and a cancelled statement (statement_timeout) says how long it was allowed."""
        pool, conn = self._get()
        try:
            with conn:
                yield conn
        except psycopg.errors.QueryCanceled as exc:
            LOG.warning("statement stopped: %s", str(exc).strip())
            raise DatabaseUnavailable(
                f"the query ran longer than {get_settings().db_statement_timeout:g} s and was stopped; "
                "narrow it (bbox, filter, limit) or try again later") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if not _outage(exc, conn):
                LOG.error("database error: %s", exc)
                raise DatabaseUnavailable("the database could not answer this request; try again shortly") from None
            self._down(f"{type(exc).__name__}: {str(exc).strip()}")
            raise DatabaseUnavailable(UNAVAILABLE) from None
        finally:
            pool.putconn(conn)

    def _get(self) -> tuple[ConnectionPool, psycopg.Connection]:
        while True:
            if self.down_since is not None:
                if not getattr(_patient, "on", False):
                    raise DatabaseUnavailable(UNAVAILABLE)
                self._back.wait()
            pool = self._pool
            deadline = time.monotonic() + get_settings().db_timeout
            try:
                conn = pool.getconn()
                if _dead(conn):  # the server went away since the connection was used
                    pool.putconn(conn)  # returned broken: the pool opens another
                    pool.check()  # and replaces its idle siblings, dead too
                    connect(self.url, timeout=1).close()  # is it back? Fails at once if it is still down
                    conn = pool.getconn(timeout=max(0.01, deadline - time.monotonic()))
                return pool, conn
            except PoolClosed:
                continue  # replaced by a fresh pool while this request was on its way
            except (psycopg.OperationalError, DatabaseError) as exc:  # PoolTimeout, or down: no connection
                self._down(" ".join(str(exc).split()))
                if not getattr(_patient, "on", False):
                    raise DatabaseUnavailable(UNAVAILABLE) from None

    def _down(self, reason: str) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self._back.clear()
        LOG.error("database unavailable (%s): answering 503 until it is back", reason)
        threading.Thread(target=self._probe, name="geocloud-db-probe", daemon=True).start()

    def _probe(self) -> None:
        """Connect every PROBE seconds until it works; then let requests through again, on a fresh
        pool if the database really was gone."""
        failed = False
        while True:
            try:
                connect(self.url, timeout=get_settings().db_timeout).close()
                break
            except DatabaseError as exc:
                if not failed:
                    LOG.error("%s", exc)
                failed = True
                time.sleep(PROBE)
        old = None
        if failed:
            old, self._pool = self._pool, self._open()
        LOG.warning("database available again after %.1f s", time.monotonic() - self.down_since)
        with self._lock:
            self.down_since = None
            self._back.set()
        if old is not None:
            old.close(timeout=1.0)

    def stats(self) -> dict:
        """psycopg_pool's figures (pool_size, pool_available, requests_waiting...), for /metrics."""
        return self._pool.get_stats()

    def close(self) -> None:
        self._pool.close()


_lock = threading.RLock()
_pools: dict[str, Pool] = {}
_replicas: dict[str, Replica] = {}


def _once(made: dict, url: str, make):
    """``made[url]``, made by ``make(url)`` the first time, once however many threads ask."""
    found = made.get(url)
    if found is None:
        with _lock:
            found = made.get(url)
            if found is None:
                found = made[url] = make(url)
    return found


def write_pool() -> Pool:
    """The primary's pool: for everything a request writes."""
    return _once(_pools, database_url(), Pool)


def replica() -> Replica | None:
    """The watched read replica, None without GEOCLOUD_DATABASE_READ_URL."""
    url = get_settings().database_read_url
    return _once(_replicas, url, lambda u: Replica(_once(_pools, u, Pool), write_pool)) if url else None


_primary_only: tuple = (None, None)  # (settings that name no replica, the primary's pool for them)


def get_pool() -> Pool:
    """The pool reads go to: the replica while it is reachable and within GEOCLOUD_REPLICA_MAX_LAG of
    its primary, else the primary (whose outage then answers reads 503 with Retry-After). Without a
    replica, the primary's pool is kept for the settings it was found for (every request asks, some
    twice; pools are never let go)."""
    global _primary_only
    settings = get_settings()
    if _primary_only[0] is settings:
        return _primary_only[1]
    watched = replica()
    if watched is not None and watched.usable():
        return watched.pool
    pool = write_pool()
    if watched is None:
        _primary_only = (settings, pool)
    return pool


def open_pools() -> list[tuple[str, Pool]]:
    """(host:port/database, pool) of every pool this process opened, for /metrics."""
    return [(redacted(url), pool) for url, pool in list(_pools.items())]


@atexit.register
def _close_all() -> None:
    for pool in _pools.values():
        pool.close()
