"""Who may manage which layer, asked of ``access.policy.can_manage`` for the caller the guard resolved,
and the answers a refusal or a failed action gets.

A caller who may not even read a layer hears of it what the read surfaces say: nothing (401 when
anonymous, 404 otherwise). One who may read it but not do the action gets 403 naming why. Errors
of the registry and the ETL become problem details (RFC 9457) carrying their what, where and fix,
and the key paths a catalog entry's errors name."""

import re

from starlette.responses import JSONResponse

from geocloud.access import Principal
from geocloud.access.policy import (
    ADMIN_ROLES,
    EDITOR_ROLES,
    MANAGE_ACTIONS,
    can_manage,
    can_read,
)
from geocloud.catalog import Catalog
from geocloud.errors import (
    ConfigError,
    Conflict,
    GeocloudError,
    GuardRefused,
    InputError,
    NotFound,
)
from geocloud.serve.guard import current, unauthorized
from geocloud.serve.http import HTTPError

PROBLEM = "application/problem+json"
_KEY = re.compile(r"key '([^']+)'")
_STATUS = ((ConfigError, 422, "InvalidEntry"), (InputError, 422, "InvalidSource"), (GuardRefused, 409, "GuardRefused"),
           (Conflict, 409, "Conflict"), (NotFound, 404, "NotFound"))


def manager(action: str, layer_id: str, catalog: Catalog, owner: str | None = None) -> Principal:
    """The caller, if they may do ``action`` to ``layer_id`` (``owner``: of a layer being registered)."""
    principal = current.get()
    if principal.anonymous:
        raise unauthorized("managing layers needs a credential (an API key, token or JWT of an agency)")
    served = catalog.layers.get(layer_id)
    layer = served or (catalog.registered[layer_id].layer if layer_id in catalog.registered else None)
    allowed = (layer is not None or action == "edit") and can_manage(principal, action, layer_id, catalog, owner)
    if allowed:  # the GIS office's admins manage layers restricted to other agencies too
        return principal
    # a layer the caller cannot read is not there, as on every surface; nor is a new id for a caller
    # who may register none (else a reader's PUT would tell a hidden layer's id, 404, from a free one)
    if (layer is None and (action != "edit" or not may_manage_some(principal))) or \
            (layer is not None and not can_read(principal, layer)):
        raise HTTPError(404, "NotFound", f"layer {layer_id!r} not found")
    raise HTTPError(403, "Forbidden", _why(principal, action, layer_id, catalog, owner))


def viewer(layer_id: str, catalog: Catalog) -> Principal:
    """The caller, if they may manage ``layer_id`` in any way (to read its entry and state); else the
    refusal ``manager`` gives (a layer not there at all is 404, whatever the caller's role)."""
    principal = current.get()
    if (layer_id in catalog.layers or layer_id in catalog.registered) and managed(principal, catalog, {layer_id}):
        return principal
    return manager("publish", layer_id, catalog)


def managed(principal: Principal, catalog: Catalog, ids=None) -> list[str]:
    """The layers (of ``ids``, default every one, retired too) the caller may manage in some way."""
    ids = {*catalog.layers, *catalog.registered} if ids is None else ids
    return [i for i in sorted(ids) if any(can_manage(principal, a, i, catalog) for a in MANAGE_ACTIONS)]


def may_manage_some(principal: Principal) -> bool:
    """Does the caller hold a role that manages layers at all (an editor's, or the GIS office admin's)?"""
    return principal.has_role(EDITOR_ROLES + ADMIN_ROLES)


def _why(principal: Principal, action: str, layer_id: str, catalog: Catalog, owner: str | None) -> str:
    if not may_manage_some(principal):
        return f"role {principal.role!r} reads layers only; managing them needs the role 'editor' (or the GIS office's 'admin')"
    if catalog.origin(layer_id) == "core" and layer_id in catalog.layers:
        return f"{layer_id!r} is a core layer: it changes in the repository (layers/{layer_id}.yml)"
    if action == "review":
        return "only the GIS office's admins review layers"
    holder = catalog.owner(layer_id) if layer_id in catalog.registered else owner
    return f"layer {layer_id!r} belongs to {holder}; {principal.agency}'s editors manage their own agency's layers"


def status_of(exc: GeocloudError) -> tuple[int, str]:
    """The HTTP status and code of a registry, ETL or access request error (the portal's forms answer
    with the same statuses as the JSON routes)."""
    return next(((s, c) for kind, s, c in _STATUS if isinstance(exc, kind)), (400, "InvalidParameterValue"))


def problem(exc: GeocloudError) -> JSONResponse:
    """A registry or ETL error as problem details: status, what, where, the fix, the key paths named."""
    status, code = status_of(exc)
    body = {"type": "about:blank", "title": code, "status": status, "code": code, "description": str(exc),
            "detail": exc.what, "where": exc.where, "fix": exc.fix, "keys": _KEY.findall(f"{exc.where or ''}\n{exc.what}")}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers={"Cache-Control": "no-store"})
