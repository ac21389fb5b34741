"""Access requests: a principal of a city agency asks for a restricted layer it cannot read and says
why; the owning agency's editors or the GIS office's admins (``policy.can_decide``) approve it, which
grants the layer to the requester's agency and role (optionally until an expiry), or reject it with a
reason. The requester sees the decision; every request and decision is audited.

Which layers may be requested (``requestable``): the restricted layers a principal of a *city agency*
cannot read. The catalog of the city's layers is no secret among city staff (the data of a restricted
layer is), so a city principal may learn a restricted layer's id, title and owner to ask for it. An
anonymous caller and a principal of an outside agency learn nothing: to them an unreadable layer
does not exist, as on every surface (404), and they cannot request it. Internal layers are read by
every city principal already; outside agencies are granted layers by the GIS office in the catalog.

An approved request adds a row to ``geocloud.layer_grants`` (the catalog's ``Grant`` model, folded
into the layer's grants by ``catalog.grants``) and a registry event, so every worker follows it."""

import json
from datetime import datetime, timezone

import psycopg

from geocloud.access import audit, keys
from geocloud.access.policy import can_decide, can_read
from geocloud.access.principal import Principal
from geocloud.catalog import Catalog, Layer, registry
from geocloud.errors import ConfigError, Conflict, InputError, NotFound

REASON_MAX = 2000
DECISIONS = ("approve", "reject")
_COLUMNS = ("id", "layer", "agency", "role", "principal", "reason", "state", "created_at", "decided_by",
            "decided_at", "decision_reason", "expires_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM geocloud.access_requests"


def may_request(principal: Principal, layer: Layer) -> bool:
    """A city principal may ask for a restricted layer it cannot read (within its key's scope)."""
    return (not principal.anonymous and principal.agency is not None and principal.city_agency
            and layer.access.level == "restricted" and (principal.layers is None or layer.id in principal.layers)
            and not can_read(principal, layer))


def requestable(principal: Principal, catalog: Catalog) -> list[Layer]:
    """The layers ``principal`` may ask for, by id."""
    return sorted((layer for layer in catalog.layers.values() if may_request(principal, layer)), key=lambda x: x.id)


def _row(values) -> dict:
    return dict(zip(_COLUMNS, values))


def _reason(text, where: str, required: bool) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        if required:
            raise InputError("a reason is required", where=where, fix="say in a sentence or two why")
        return None
    if not isinstance(text, str) or len(text) > REASON_MAX:
        raise InputError(f"the reason must be text of at most {REASON_MAX} characters", where=where,
                         fix="shorten it")
    return text.strip()


def create(conn: psycopg.Connection, principal: Principal, layer_id, reason, catalog: Catalog) -> dict:
    """Record ``principal``'s request for ``layer_id``. NotFound for a layer it may not ask for
    (unknown, or unknown to it), Conflict for one it reads already or asked for and awaits."""
    if not isinstance(layer_id, str) or not layer_id:
        raise InputError("the layer to request is missing", where="key 'layer'", fix="give the layer's id")
    reason = _reason(reason, "key 'reason'", required=True)
    layer = catalog.layers.get(layer_id)
    if layer is not None and can_read(principal, layer):
        raise Conflict(f"you may read layer {layer_id!r} already", where="key 'layer'",
                       fix=f"use it: /collections/{layer_id}")
    if layer is None or not may_request(principal, layer):
        raise NotFound(f"no layer {layer_id!r} you may request", where="key 'layer'",
                       fix="request a restricted layer of the catalog by its id (see /requests/new)")
    if not principal.role:
        raise InputError("your credential names no role, and a grant is to an agency and role",
                         fix="sign in or use a key with a role")
    with conn.transaction():
        found = conn.execute(_SELECT + " WHERE layer = %s AND agency = %s AND role = %s AND principal = %s "
                             "AND state = 'pending'", (layer_id, principal.agency, principal.role,
                                                       principal.name)).fetchone()
        if found is not None:
            raise Conflict(f"you asked for layer {layer_id!r} already (request {found[0]}), and it awaits a decision",
                           fix="wait for the decision: GET /manage/requests")
        row = _row(conn.execute(
            "INSERT INTO geocloud.access_requests (layer, agency, role, principal, reason) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING " + ", ".join(_COLUMNS), (layer_id, principal.agency, principal.role, principal.name,
                                                 reason)).fetchone())
        audit.record(conn, "access-requested", principal.name, principal.agency, layer_id, "requests",
                     {"request": row["id"], "role": principal.role, "reason": reason})
    return row


def get(conn: psycopg.Connection, request_id: int) -> dict | None:
    row = conn.execute(_SELECT + " WHERE id = %s", (request_id,)).fetchone()
    return row and _row(row)


def mine(principal: Principal, request: dict) -> bool:
    return (request["agency"], request["principal"]) == (principal.agency, principal.name)


def listing(conn: psycopg.Connection, principal: Principal, catalog: Catalog) -> dict:
    """The caller's own requests (every state, newest first) and the pending ones it may decide."""
    own = [_row(r) for r in conn.execute(_SELECT + " WHERE agency = %s AND principal = %s ORDER BY id DESC",
                                         (principal.agency, principal.name)).fetchall()]
    pending = [_row(r) for r in conn.execute(_SELECT + " WHERE state = 'pending' ORDER BY id").fetchall()]
    return {"mine": own, "to_decide": [r for r in pending if can_decide(principal, r["layer"], catalog)]}


def parse_expires(text) -> datetime | None:
    """An approval's expiry: an ISO 8601 date or time (UTC unless it says), or a duration (90d, 12h)."""
    if text is None or text == "":
        return None
    try:
        value = keys.parse_expiry(text) if isinstance(text, str) else None
    except ConfigError:
        value = None
    if value is None:
        raise InputError(f"expires {text!r} is not a date, time or duration", where="key 'expires'",
                         fix="write e.g. 2027-06-30, 2027-06-30T17:00:00+08:00 or 90d; leave it out for no expiry")
    if value <= datetime.now(timezone.utc):
        raise InputError(f"expires {text!r} is in the past: the grant would never work", where="key 'expires'",
                         fix="give a future date or a duration, or leave it out for no expiry")
    return value


def decide(conn: psycopg.Connection, request_id: int, decision, reason, expires, decider: Principal,
           operator: str, catalog: Catalog) -> dict:
    """Approve (grant the layer to the requester's agency and role, until ``expires``) or reject a
    pending request; the caller has checked ``can_decide``. Conflict if it was decided already."""
    if decision not in DECISIONS:
        raise InputError(f"decision {decision!r} is neither approve nor reject", where="key 'decision'",
                         fix="send \"approve\" or \"reject\"")
    reason = _reason(reason, "key 'reason'", required=decision == "reject")
    until = parse_expires(expires) if decision == "approve" else None
    with conn.transaction():
        found = conn.execute(_SELECT + " WHERE id = %s FOR UPDATE", (request_id,)).fetchone()
        if found is None:
            raise NotFound(f"no access request {request_id}", fix="see GET /manage/requests")
        request = _row(found)
        if request["state"] != "pending":
            raise Conflict(f"request {request_id} was {request['state']} already, by {request['decided_by']}",
                           fix="a decision stands; the requester may ask again")
        state = "approved" if decision == "approve" else "rejected"
        request = _row(conn.execute(
            "UPDATE geocloud.access_requests SET state = %s, decided_by = %s, decided_at = now(), "
            "decision_reason = %s, expires_at = %s WHERE id = %s RETURNING " + ", ".join(_COLUMNS),
            (state, operator, reason, until, request_id)).fetchone())
        detail = {"request": request_id, "decision": state, "reason": reason, "requester": request["principal"],
                  "requester_agency": request["agency"], "role": request["role"], "expires": until and until.isoformat()}
        if state == "approved":
            grant = conn.execute(
                "INSERT INTO geocloud.layer_grants (layer, agency, roles, expires_at, request_id, granted_by) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (request["layer"], request["agency"], [request["role"]], until, request_id, operator)).fetchone()[0]
            detail["grant"] = grant
            conn.execute("INSERT INTO geocloud.registry_events (layer, action, operator, after) "
                         "VALUES (%s, 'grant', %s, %s)", (request["layer"], operator, json.dumps(detail)))
        audit.record(conn, f"access-{state}", decider.name, decider.agency, request["layer"], "requests", detail)
    registry.forget()
    return request
