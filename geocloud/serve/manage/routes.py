"""The /manage routes. Each asks ``permission.manager`` first (before reading a body), then does
the action with the functions the CLI uses (registry, ETL, rollback) on a worker thread, acting for
the caller (recorded as the operator of the change and the run), and audits it: who, which layer,
what, and for entry changes the entry before and after.

Every request re-reads the registry (``registry.forget``): a layer registered through one worker
is managed through any other at once, not after the few seconds the read surfaces may lag."""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from geocloud.access import audit
from geocloud.access.policy import can_read, is_admin
from geocloud.catalog import core_catalog, registry
from geocloud.db.pool import write_pool
from geocloud.errors import ConfigError, Conflict, NotFound
from geocloud.etl.run import rollback_layer
from geocloud.serve.guard import current, unauthorized
from geocloud.serve.http import HTTPError
from geocloud.serve.manage import audit as audit_route
from geocloud.serve.manage import loads, openapi, requests, review  # noqa: F401 (openapi: its OPENAPI_PATHS describe these routes)
from geocloud.serve.manage.acting import (
    NO_STORE,
    audited,
    fresh_catalog,
    in_thread,
    json_answer,
    operator_of,
)
from geocloud.serve.manage.permission import (
    managed,
    manager,
    may_manage_some,
    viewer,
)
from geocloud.serve.manage.upload import read_entry

# -- GET /manage/layers, GET /manage/layers/{id} ------------------------------------------------------

def _listing(principal, catalog, only: str | None = None) -> list[dict]:
    ids = managed(principal, catalog, None if only is None else {only})
    with write_pool().connection() as conn:  # the primary: a load or change just made shows at once
        live = dict(conn.execute("SELECT layer, version FROM geocloud.layer_versions WHERE state = 'live' "
                                 "AND layer = ANY(%s)", (ids,)).fetchall())
        runs = {r[0]: {"run": r[1], "status": r[2], "dry_run": r[3], "operator": r[4],
                       "finished_at": r[5] and r[5].isoformat()} for r in conn.execute(
            "SELECT DISTINCT ON (l) l, id, status, dry_run, operator, finished_at FROM geocloud.etl_runs, "
            "unnest(layers) AS l WHERE l = ANY(%s) ORDER BY l, id DESC", (ids,)).fetchall()}
    out = []
    for i in ids:
        reg = catalog.registered.get(i)
        layer = reg.layer if reg else catalog.layers[i]
        out.append({"id": i, "title": layer.title.model_dump(by_alias=True), "origin": catalog.origin(i),
                    "owner": catalog.owner(i), "state": reg.state if reg else "live", "access": layer.access.level,
                    "live_version": live.get(i), "last_run": runs.get(i), "review": reg and reg.review})
    return out


async def list_layers(request: Request):
    principal = current.get()
    if principal.anonymous:
        raise unauthorized("managing layers needs a credential (an API key, token or JWT of an agency)")
    return JSONResponse({"layers": await run_in_threadpool(_listing, principal, fresh_catalog())}, headers=NO_STORE)


def _one(layer_id: str, principal, catalog) -> JSONResponse:
    listed = _listing(principal, catalog, layer_id)[0]
    reg = catalog.registered.get(layer_id)
    layer = reg.layer if reg else catalog.layers[layer_id]
    entry = layer.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return json_answer({**listed, "entry": entry, "updated_by": reg and reg.updated_by,
                        "updated_at": reg and reg.updated_at})


async def get_layer(request: Request):
    layer_id = request.path_params["layer_id"]
    catalog = fresh_catalog()
    return await run_in_threadpool(_one, layer_id, viewer(layer_id, catalog), catalog)


# -- PUT /manage/layers/{id}: the catalog entry --------------------------------------------------------

def _state_after(entry: dict, admin: bool, before: dict | None) -> str:
    """A new (or retired) entry is a draft; a change keeps the state, but a live layer an editor
    makes public awaits the GIS office's review, a rejected one changed is in review again, and one
    in review made non-public needs none."""
    if before is None or before["state"] == "retired":
        return "draft"
    if before["state"] in registry.IN_REVIEW:
        return "pending_review" if _public(entry) else "live"
    made_public = _public(entry) and not _public(before["entry"])
    return "pending_review" if before["state"] == "live" and made_public and not admin else before["state"]


def _public(entry) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("access"), dict) and entry["access"].get("level") == "public"


def _register(layer_id: str, entry, owner: str, principal) -> JSONResponse:
    catalog = core_catalog()
    where = f"PUT /manage/layers/{layer_id}"
    if isinstance(entry, dict) and entry.get("id", layer_id) != layer_id:
        raise ConfigError(f"the entry's id {entry['id']!r} differs from the path's {layer_id!r}",
                          where=f"{where}: key 'id'", fix="send the entry to the URL of its id")
    entry = {**entry, "id": layer_id} if isinstance(entry, dict) else entry
    with write_pool().connection() as conn, conn.transaction():
        before = registry.row(conn, layer_id)
        state = _state_after(entry, is_admin(principal, catalog), before)
        registry.register(conn, entry, before["owner"] if before else owner, operator_of(principal), catalog,
                          where=where, state=state)
        after = registry.row(conn, layer_id)
        audit.record(conn, "layer-registered" if before is None else "layer-changed", operator_of(principal),
                     principal.agency, layer_id, "manage", {"before": before, "after": after})
    return JSONResponse({"id": layer_id, **after}, status_code=200 if before else 201, headers=NO_STORE)


async def put_layer(request: Request):
    layer_id = request.path_params["layer_id"]
    principal = current.get()
    catalog = fresh_catalog()
    owner = request.query_params.get("owner") or principal.agency
    core = catalog.layers.get(layer_id) if catalog.origin(layer_id) == "core" else None
    if not (core and may_manage_some(principal) and can_read(principal, core)):  # a core id: the registry's 409
        manager("edit", layer_id, catalog, owner if layer_id not in catalog.registered else None)
    entry = await read_entry(request)
    return await in_thread(principal, _register, layer_id, entry, owner, principal)


# -- publish, rollback, retire ---------------------------------------------------------------------------

def _publish(layer_id: str, principal) -> JSONResponse:
    """A draft goes live (a public one an editor publishes: into review). Review is the one way out of
    review: an admin's publish of a layer in review is a 409 pointing to it; an editor's publish of a
    rejected layer asks for review again."""
    catalog = core_catalog()
    admin = is_admin(principal, catalog)
    with write_pool().connection() as conn, conn.transaction():
        before = registry.row(conn, layer_id)
        if before is None:
            raise NotFound(f"layer {layer_id!r} is not registered")
        if before["state"] == "retired":
            raise Conflict(f"layer {layer_id!r} is retired", fix="PUT its entry again to register it as a draft")
        if admin and before["state"] in registry.IN_REVIEW:
            raise Conflict(f"layer {layer_id!r} is in review ({before['state']}): a review decides it",
                           fix=f"POST /manage/layers/{layer_id}/review with decision approve or reject and a comment")
        state = "live" if admin or not _public(before["entry"]) else "pending_review"
        if before["state"] in ("live", state):  # published already (or awaiting review)
            state = before["state"]
        else:
            registry.register(conn, before["entry"], before["owner"], operator_of(principal), catalog,
                              where=f"POST /manage/layers/{layer_id}/publish", state=state)
            audit.record(conn, "layer-published", operator_of(principal), principal.agency, layer_id, "manage",
                         {"before": {"state": before["state"]}, "after": {"state": state}})
    return JSONResponse({"id": layer_id, "state": state}, headers=NO_STORE)


async def publish(request: Request):
    layer_id = request.path_params["layer_id"]
    principal = manager("publish", layer_id, fresh_catalog())
    return await in_thread(principal, _publish, layer_id, principal)


def _rollback(layer_id: str, to: int | None, principal) -> JSONResponse:
    try:
        result = rollback_layer(layer_id, to)
    except NotFound as exc:  # nothing to roll back to: the layer itself exists
        raise Conflict(exc.what, where=exc.where, fix=exc.fix) from None
    audited(principal, "layer-rolled-back", layer_id, {"before": {"version": result["from_version"]},
                                                      "after": {"version": result["to_version"]}})
    return JSONResponse(result, headers=NO_STORE)


async def rollback(request: Request):
    layer_id = request.path_params["layer_id"]
    principal = manager("publish", layer_id, fresh_catalog())
    to = request.query_params.get("to")
    if to is not None and not (to.isdigit() and 0 < int(to) < 2 ** 31):
        raise HTTPError(400, "InvalidParameterValue", f"to: {to!r} is not a version number (see GET /manage/layers)")
    return await in_thread(principal, _rollback, layer_id, int(to) if to else None, principal)


def _retire(layer_id: str, principal) -> JSONResponse:
    with write_pool().connection() as conn, conn.transaction():
        before = registry.row(conn, layer_id)
        registry.retire(conn, layer_id, operator_of(principal), core_catalog())
        audit.record(conn, "layer-retired", operator_of(principal), principal.agency, layer_id, "manage",
                     {"before": before and {"state": before["state"]}, "after": {"state": "retired"}})
    return JSONResponse({"id": layer_id, "state": "retired"}, headers=NO_STORE)


async def retire(request: Request):
    layer_id = request.path_params["layer_id"]
    principal = manager("retire", layer_id, fresh_catalog())
    return await in_thread(principal, _retire, layer_id, principal)


routes = [
    Route("/manage/layers", list_layers, methods=["GET"]),
    Route("/manage/layers/{layer_id}", get_layer, methods=["GET"]),
    Route("/manage/layers/{layer_id}", put_layer, methods=["PUT"]),
    Route("/manage/layers/{layer_id}", retire, methods=["DELETE"]),
    *loads.routes,
    Route("/manage/layers/{layer_id}/publish", publish, methods=["POST"]),
    Route("/manage/layers/{layer_id}/rollback", rollback, methods=["POST"]),
    *review.routes,
    *audit_route.routes,
    *requests.routes,
]
