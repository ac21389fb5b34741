"""``/health/live`` and ``/health/ready``, for load balancers and orchestrators.

Live: the process answers (restart it if not). Ready: the node can serve correctly now, so a load
balancer sends it requests: reads have a database (the replica within GEOCLOUD_REPLICA_MAX_LAG of
its primary, else the primary) and a snapshot of the live versions. A primary that is down does
not make a node unready (reads go on; writes answer 503), but the answer says so. Public, and it
names no host, port, user or layer: only roles, reachability, lag and the catalog's version.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from geocloud.config import get_settings
from geocloud.db.pool import Pool, replica, write_pool
from geocloud.errors import DatabaseError
from geocloud.serve import openapi30
from geocloud.serve.state import snapshot

NO_STORE = {"Cache-Control": "no-store"}


def replica_lag() -> float | None:
    """Seconds the read replica is behind its primary, as last measured (about every second); None
    without GEOCLOUD_DATABASE_READ_URL or while the replica cannot be reached."""
    watched = replica()
    return None if watched is None else watched.lag


def _reachable(pool: Pool) -> bool:
    try:
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def readiness() -> tuple[bool, dict]:
    """(ready?, the answer's body)."""
    primary = _reachable(write_pool())
    watched = replica()
    databases = {"primary": {"reachable": primary}}
    if watched is not None:
        databases["replica"] = {"reachable": watched.lag is not None,
                                "lag_seconds": None if watched.lag is None else round(watched.lag, 3),
                                "max_lag_seconds": get_settings().replica_max_lag,
                                "too_far_behind": watched.behind}
    reads = "replica" if watched is not None and watched.usable() else "primary"
    try:
        snap = snapshot()
        # the versions only, no layer count: anonymous callers must not learn of restricted layers
        catalog = {"version": snap.token, "registry_version": snap.catalog_version}
    except DatabaseError:
        catalog = None
    ready = (reads == "replica" or primary) and catalog is not None
    return ready, {"status": "ready" if ready else "not ready", "reads_from": reads,
                   "writes": "available" if primary else "unavailable", "databases": databases, "catalog": catalog}


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "live"}, headers=NO_STORE)


async def ready(request: Request) -> JSONResponse:
    ok, body = await run_in_threadpool(readiness)
    headers = NO_STORE if ok else {**NO_STORE, "Retry-After": str(get_settings().db_retry_after)}
    return JSONResponse(body, status_code=200 if ok else 503, headers=headers)


routes = [Route("/health/live", live), Route("/health/ready", ready)]


READY = {"type": "object", "required": ["status", "reads_from", "writes", "databases", "catalog"], "properties": {
    "status": {"type": "string", "enum": ["ready", "not ready"]},
    "reads_from": {"type": "string", "enum": ["replica", "primary"]},
    "writes": {"type": "string", "enum": ["available", "unavailable"]}, "databases": openapi30.OBJECT,
    "catalog": {"type": "object", "nullable": True}}}
OPENAPI_PATHS = {
    "/health/live": openapi30.get("the process answers", "Health", openapi30.ok("live", openapi30.OBJECT, "application/json")),
    "/health/ready": openapi30.get("the node can serve correctly: database roles, replica lag, catalog version", "Health",
                          openapi30.ok("ready", READY, "application/json"),
                          more={"503": {"description": "not ready (the body says why); see Retry-After",
                                        "content": {"application/json": {"schema": READY}}}}),
}
