"""``/metrics`` in Prometheus' text format (prometheus-client), for the operators' monitoring only.

**Who may read it** (GEOCLOUD_METRICS): ``off`` (the default: 404, as if there were no such route
and nothing is counted, so requests pay nothing for it); ``key``: callers whose API key, token or
JWT has the role ``metrics`` (the normal guard checks the credential; ``geocloud keys create
--role metrics``); or addresses and networks (``127.0.0.1,10.0.0.0/8``): the client address as the
guard sees it (a trusted proxy's ``X-Forwarded-For`` counts, serve/headers.py). ``key`` and
networks may be combined: either admits.

**What is counted** per node, over all its workers (prometheus-client's multiprocess mode:
``geocloud serve`` gives the workers one private PROMETHEUS_MULTIPROC_DIR, so one scrape covers them
all): requests and latency by surface (a fixed set of names, never a path or an id), method and
status; tiles served from the cache and rendered; the database pools (connections open, idle,
waiting requests, time waited). **Read from PostGIS at scrape time**: ETL runs and their durations
and publishing results. An ETL run is a CLI process that is gone before anyone scrapes it, so it
cannot count itself: the runs and attempts tables are the record, read as counters (runs, seconds)
and gauges (last success) per pipeline and target.
"""

import os
import time
from functools import lru_cache
from ipaddress import ip_address, ip_network

import psycopg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geocloud.config import get_settings
from geocloud.db.pool import get_pool, open_pools
from geocloud.errors import ConfigError, DatabaseError
from geocloud.serve import guard, health, openapi30
from geocloud.serve.http import HTTPError

ROLE = "metrics"
METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("geocloud_http_requests", "Requests answered, by surface, method and status code",
                   ["surface", "method", "code"])
LATENCY = Histogram("geocloud_http_request_duration_seconds", "Time to answer, by surface and status class",
                    ["surface", "status"], buckets=BUCKETS)
TILES = Counter("geocloud_tile_cache", "Tiles answered from the tile cache (hit) or rendered (miss)",
                ["surface", "result"])
POOL = Gauge("geocloud_db_pool_connections", "Database connections of this node's pools, by state",
             ["database", "state"], multiprocess_mode="livesum")
POOL_WAITING = Gauge("geocloud_db_pool_waiting_requests", "Requests waiting for a pooled connection",
                     ["database"], multiprocess_mode="livesum")
POOL_DOWN = Gauge("geocloud_db_pool_unavailable", "1 while a pool's circuit breaker answers 503",
                  ["database"], multiprocess_mode="livemax")
POOL_WAITED = Counter("geocloud_db_pool_wait_seconds", "Time requests waited for a pooled connection",
                      ["database"])


def replica_lag_seconds() -> float | None:
    """How far this node's read replica is behind the primary, in seconds (as /health/ready measures
    it), or None without a replica or while it cannot be reached."""
    return health.replica_lag()


def surface(path: str) -> str:
    """The surface a path belongs to: one of a fixed set of names (a metric label must never hold a
    path or an id)."""
    parts = path.strip("/").split("/")
    head = parts[0]
    if head == "collections":
        if len(parts) < 3 or parts[2] in ("queryables", "sortables", "schema"):
            return "features"
        return {"items": "items", "tiles": "tiles", "download": "downloads", "coverage": "coverages",
                "map": "rasters", "styles": "styles"}.get(parts[2], "other")
    return _HEADS.get(head, "other")


_HEADS = {"": "landing", "openapi": "openapi", "conformance": "landing", "api": "openapi", "tiles": "tiles",
          "tileMatrixSets": "tiles", "rasters": "rasters", "wmts": "wmts", "geocode": "geocode",
          "reverse": "geocode", "metadata": "metadata", "catalog": "metadata", "styles": "styles", "map": "viewer",
          "static": "viewer", "auth": "auth", "health": "health", "metrics": "metrics"}


def observe(path: str, method: str, status: int, seconds: float, tile_cache: bytes | None) -> None:
    """Count one answered request."""
    key = (surface(path), method if method in METHODS else "other", status, tile_cache)
    found = _children.get(key)
    if found is None:  # labels() costs more than the count itself: each label set is looked up once
        name = key[0]
        tiles = TILES.labels(name, tile_cache.decode()) if tile_cache in (b"hit", b"miss") else None
        found = _children[key] = (REQUESTS.labels(name, key[1], str(status)),
                                  LATENCY.labels(name, f"{status // 100}xx"), tiles)
    found[0].inc()
    found[1].observe(seconds)
    if found[2] is not None:
        found[2].inc()
    _pools_now()


_children: dict[tuple, tuple] = {}  # bounded: surfaces x 5 methods x statuses x tile states

_pools_seen: dict[str, float] = {}
_pools_at = 0.0


def _pools_now(every: float = 1.0) -> None:
    """This worker's pool figures into the shared gauges, at most once a second."""
    global _pools_at
    now = time.monotonic()
    if now - _pools_at < every:
        return
    _pools_at = now
    for name, pool in open_pools():
        stats = pool.stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        POOL.labels(name, "idle").set(idle)
        POOL.labels(name, "used").set(size - idle)
        POOL_WAITING.labels(name).set(stats.get("requests_waiting", 0))
        POOL_DOWN.labels(name).set(1 if pool.down_since is not None else 0)
        waited = stats.get("requests_wait_ms", 0) / 1000
        POOL_WAITED.labels(name).inc(max(0.0, waited - _pools_seen.get(name, 0.0)))
        _pools_seen[name] = waited


class Access:
    """Who may read /metrics, from GEOCLOUD_METRICS."""

    def __init__(self, value: str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        self.on = items not in ([], ["off"])
        self.key = "key" in items
        try:
            self.networks = tuple(ip_network(v, strict=False) for v in items if v not in ("key", "off"))
        except ValueError as exc:
            raise ConfigError(f"GEOCLOUD_METRICS: {exc}", fix="use off, key, or IP addresses/networks "
                                                              "(comma-separated), e.g. 127.0.0.1,10.0.0.0/8") from None

    def allows(self, client: str | None, principal) -> bool:
        if self.key and not principal.anonymous and principal.has_role({ROLE}):
            return True
        try:
            return client is not None and any(ip_address(client) in net for net in self.networks)
        except ValueError:
            return False


def access() -> Access:
    return _access(get_settings().metrics)


@lru_cache(maxsize=4)
def _access(value: str) -> Access:
    return Access(value)


def enabled() -> bool:
    return access().on


async def metrics(request: Request) -> Response:
    rule = access()
    if not rule.on:
        raise HTTPError(404, "NotFound", f"no route {request.url.path}")
    principal = guard.current.get()
    if not rule.allows((request.scope.get("client") or (None,))[0], principal):
        if rule.key and principal.anonymous:
            raise guard.unauthorized("authenticate with a key whose role is 'metrics'")
        raise HTTPError(403, "Forbidden", "this client may not read /metrics (GEOCLOUD_METRICS)")
    body = await run_in_threadpool(_exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _exposition() -> bytes:
    _pools_now(every=0)
    registry = CollectorRegistry()
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        _forget_dead_workers(folder)
        MultiProcessCollector(registry, path=folder)
    else:
        for metric in (REQUESTS, LATENCY, TILES, POOL, POOL_WAITING, POOL_DOWN, POOL_WAITED):
            registry.register(metric)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def _forget_dead_workers(folder: str) -> None:
    """A worker that died (and was replaced) no longer counts in the live gauges (its counters stay)."""
    for name in os.listdir(folder):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = int(name.rsplit("_", 1)[1][:-3])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                mark_process_dead(pid, folder)
            except PermissionError:
                pass


class DatabaseCollector:
    """ETL runs and publishing results from PostGIS, read at scrape time; the replica's lag."""

    def collect(self):
        up = GaugeMetricFamily("geocloud_database_up", "1 if the scrape could read the ETL and publishing records")
        lag = replica_lag_seconds()
        if lag is not None:
            yield GaugeMetricFamily("geocloud_replica_lag_seconds", "How far the read replica is behind", value=lag)
        try:
            with get_pool().connection() as conn:
                runs = conn.execute(
                    "SELECT pipeline, status, count(*), coalesce(sum(extract(epoch FROM finished_at - started_at)), 0) "
                    "FROM geocloud.etl_runs WHERE NOT dry_run GROUP BY 1, 2").fetchall()
                last = conn.execute(
                    "SELECT pipeline, extract(epoch FROM max(finished_at)) FROM geocloud.etl_runs "
                    "WHERE status IN ('published', 'unchanged') AND NOT dry_run GROUP BY 1").fetchall()
                pushes = conn.execute(
                    "SELECT target, ok, count(*), extract(epoch FROM max(at)) FROM geocloud.publish_attempts "
                    "GROUP BY 1, 2").fetchall()
        except (DatabaseError, psycopg.Error):  # down, or not migrated yet: say so, count the rest
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        duration = SummaryMetricFamily("geocloud_etl_run_seconds", "ETL runs (not dry runs) by pipeline and "
                                       "outcome: how many, and their total duration", labels=["pipeline", "status"])
        for pipeline, status, count, seconds in runs:
            duration.add_metric([pipeline, status], count_value=count, sum_value=float(seconds))
        yield duration
        success = GaugeMetricFamily("geocloud_etl_last_success_timestamp_seconds",
                                    "When a run of the pipeline last finished published or unchanged",
                                    labels=["pipeline"])
        for pipeline, at in last:
            success.add_metric([pipeline], float(at))
        yield success
        attempts = CounterMetricFamily("geocloud_publish_attempts", "Pushes to the portals (TGOS, data.gov.tw) "
                                       "by target and result", labels=["target", "result"])
        latest = GaugeMetricFamily("geocloud_publish_last_success_timestamp_seconds",
                                   "When a push to the target last succeeded", labels=["target"])
        for target, ok, count, at in pushes:
            attempts.add_metric([target, "ok" if ok else "failed"], count)
            if ok:
                latest.add_metric([target], float(at))
        yield attempts
        yield latest


routes = [Route("/metrics", metrics, methods=["GET"])]


OPENAPI_PATHS = {
    "/metrics": openapi30.get("Prometheus metrics (GEOCLOUD_METRICS: off by default, then 404)", "Health",
                     openapi30.ok("the metrics", {"type": "string"}, "text/plain"),
                     more={**openapi30.NOT_FOUND, "403": openapi30.ref("responses", "Forbidden")}),
}
