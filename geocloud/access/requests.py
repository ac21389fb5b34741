"""Access requests: a principal of an agency asks for a layer it cannot read (restricted, or internal
to city agencies) and says why; the owning agency's editors or the GIS office's admins
(``policy.can_decide``) approve it, which grants the layer to the requester's agency and role
(optionally until an expiry), or reject it with a reason. The requester sees the decision; every
request and decision is audited.

A request tells the requester nothing about the catalog: "a visitor sees exactly the layers they may
read; nothing else is hinted at" holds here too. A request names a layer by id (learnt from its owner,
a colleague, a link), and any well-formed id the caller cannot read is taken alike and answered alike,
whether or not such a layer exists: only its deciders ever see it, and a request for an id no layer
has simply waits (if one is registered under it later, its owners see the request). No list of
requestable layers exists.

An approved request adds a row to ``geocloud.layer_grants`` (the catalog's ``Grant`` model, folded
into the layer's grants by ``catalog.grants``) and a registry event, so every worker follows it."""

import json
import re
from datetime import datetime, timezone

import psycopg

from geocloud.access import audit, keys
from geocloud.access.policy import can_decide, can_read
from geocloud.access.principal import Principal
from geocloud.catalog import Catalog, registry
from geocloud.catalog.models import LAYER_ID
from geocloud.errors import ConfigError, Conflict, InputError, NotFound

REASON_MAX = 2000
PENDING_MAX = 20  # a principal's requests awaiting a decision at once
DECISIONS = ("approve", "reject")
_COLUMNS = ("id", "layer", "agency", "role", "principal", "reason", "state", "created_at", "decided_by",
            "decided_at", "decision_reason", "expires_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM geocloud.access_requests"


def requester(principal: Principal) -> str:
    """Whose requests are "mine": the person or service (a credential's id when it names none)."""
    return principal.name or principal.id or "-"


def _row(values) -> dict:
    return dict(zip(_COLUMNS, values))


def _reason(text, where: str, required: bool) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        if required:
            raise InputError("a reason is required", where=where, fix="say in a sentence or two why")
        return None
    if not isinstance(text, str) or len(text) > REASON_MAX or "\x00" in text:
        raise InputError(f"the reason must be text of at most {REASON_MAX} characters", where=where,
                         fix="shorten it (and leave out control characters)")
    return text.strip()


def create(conn: psycopg.Connection, principal: Principal, layer_id, reason, catalog: Catalog) -> dict:
    """Record ``principal``'s request for ``layer_id``, whether or not such a layer exists (see the
    module's docstring). Conflict for a layer it reads already or asked for and awaits."""
    if not isinstance(layer_id, str) or not re.fullmatch(LAYER_ID, layer_id):
        raise InputError(f"{layer_id!r} is not a layer id", where="key 'layer'",
                         fix="give the layer's id: lower-case letters, digits and _, starting with a letter")
    reason = _reason(reason, "key 'reason'", required=True)
    layer = catalog.layers.get(layer_id)
    if layer is not None and can_read(principal, layer):
        raise Conflict(f"you may read layer {layer_id!r} already", where="key 'layer'",
                       fix=f"use it: /collections/{layer_id}")
    if principal.agency is None or not principal.role:
        raise InputError("your credential names no agency or role, and a grant is to an agency and role",
                         fix="sign in, or use a key of your agency with your role")
    with conn.transaction():
        pending = conn.execute("SELECT layer, id FROM geocloud.access_requests WHERE agency = %s AND principal = %s "
                               "AND state = 'pending' FOR UPDATE", (principal.agency, requester(principal))).fetchall()
        asked = dict(pending).get(layer_id)
        if asked is not None:
            raise Conflict(f"you asked for layer {layer_id!r} already (request {asked}), and it awaits a decision",
                           fix="wait for the decision: GET /manage/requests")
        if len(pending) >= PENDING_MAX:
            raise Conflict(f"you have {len(pending)} requests awaiting a decision, the most there may be",
                           fix="wait for their decisions: GET /manage/requests")
        try:
            row = _row(conn.execute(
                "INSERT INTO geocloud.access_requests (layer, agency, role, principal, reason) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING " + ", ".join(_COLUMNS),
                (layer_id, principal.agency, principal.role, requester(principal), reason)).fetchone())
        except psycopg.errors.UniqueViolation:  # the same request, sent twice at once
            raise Conflict(f"you asked for layer {layer_id!r} already, and it awaits a decision") from None
        audit.record(conn, "access-requested", principal.name, principal.agency, layer_id, "requests",
                     {"request": row["id"], "role": principal.role, "reason": reason})
    return row


def get(conn: psycopg.Connection, request_id: int) -> dict | None:
    row = conn.execute(_SELECT + " WHERE id = %s", (request_id,)).fetchone()
    return row and _row(row)


def mine(principal: Principal, request: dict) -> bool:
    return (request["agency"], request["principal"]) == (principal.agency, requester(principal))


def listing(conn: psycopg.Connection, principal: Principal, catalog: Catalog) -> dict:
    """The caller's own requests (every state, newest first) and the pending ones it may decide
    (not its own: nobody grants themselves a layer)."""
    own = [_row(r) for r in conn.execute(_SELECT + " WHERE agency = %s AND principal = %s ORDER BY id DESC",
                                         (principal.agency, requester(principal))).fetchall()]
    pending = [_row(r) for r in conn.execute(_SELECT + " WHERE state = 'pending' ORDER BY id").fetchall()]
    return {"mine": own, "to_decide": [r for r in pending if can_decide(principal, r["layer"], catalog)
                                       and not mine(principal, r)]}


def parse_expires(text) -> datetime | None:
    """An approval's expiry: an ISO 8601 date or time (UTC unless it says), or a duration (90d, 12h)."""
    if text is None or text == "":
        return None
    try:
        value = keys.parse_expiry(text) if isinstance(text, str) else None
    except (ConfigError, ValueError, OverflowError):  # not a date, or a duration beyond the calendar
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
