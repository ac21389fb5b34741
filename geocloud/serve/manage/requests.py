"""The access-request routes (``/manage/requests``): a principal of an agency asks for a layer it
cannot read (``POST``), sees its requests and the ones it may decide (``GET``), and the owning agency's editors
or the GIS office's admins approve or reject one (``POST .../decision``). The rules are
``geocloud.access.requests``'; here they meet HTTP: 401 anonymous, 403 for a caller who may not
decide, 404 for a request the caller may not see, 409 for a request decided or asked already, 422
for a bad body (problem details naming the key). A request for a layer the caller cannot read is
answered alike whether the layer exists or not (see ``access.requests``)."""

from datetime import datetime

from starlette.requests import Request
from starlette.routing import Route

from geocloud.access import requests as access_requests
from geocloud.access.policy import can_decide
from geocloud.catalog.models import LAYER_ID
from geocloud.db.pool import write_pool
from geocloud.serve.guard import current, unauthorized
from geocloud.serve.http import HTTPError
from geocloud.serve.manage.acting import (
    fresh_catalog,
    in_thread,
    json_answer,
    operator_of,
)
from geocloud.serve.manage.openapi import TAG, _json, _problem
from geocloud.serve.manage.upload import read_entry
from geocloud.serve.openapi30 import path_parameter

MAX_ID = 2 ** 31 - 1


def _iso(request: dict) -> dict:
    """A request as JSON: times in ISO 8601 (RFC 3339), as the document says."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in request.items()}


def _caller():
    principal = current.get()
    if principal.anonymous:
        raise unauthorized("access requests need a credential (sign in, or an API key, token or JWT of an agency)")
    return principal


async def _body(request: Request) -> dict:
    body = await read_entry(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "InvalidParameterValue", "the body must be a JSON object")
    return body


def _create(principal, body: dict):
    catalog = fresh_catalog()  # before the connection: reading the registry takes one of the pool's own
    with write_pool().connection() as conn:  # access_requests.create is one transaction of its own
        made = access_requests.create(conn, principal, body.get("layer"), body.get("reason"), catalog)
    return json_answer(_iso(made), 201)


async def create(request: Request):
    principal = _caller()
    return await in_thread(principal, _create, principal, await _body(request))


def _listing(principal):
    catalog = fresh_catalog()
    with write_pool().connection() as conn:  # the primary: a request just made is listed at once
        listed = access_requests.listing(conn, principal, catalog)
    return json_answer({part: [_iso(r) for r in rows] for part, rows in listed.items()})


async def listing(request: Request):
    principal = _caller()
    return await in_thread(principal, _listing, principal)


def decide(principal, request_id: int, body: dict) -> dict:
    """Approve or reject request ``request_id`` as ``principal``: the decided request, or HTTPError
    (403, 404) and the model's errors (409, 422). The portal's decision form uses it too."""
    catalog = fresh_catalog()
    with write_pool().connection() as conn, conn.transaction():
        found = access_requests.get(conn, request_id) if request_id <= MAX_ID else None
        if found is None or not (can_decide(principal, found["layer"], catalog) or access_requests.mine(principal, found)):
            raise HTTPError(404, "NotFound", f"no access request {request_id} you may see")
        if not can_decide(principal, found["layer"], catalog):
            raise HTTPError(403, "Forbidden", "the owning agency's editors and the GIS office's admins decide access "
                                              "requests; a requester waits for their decision")
        if access_requests.mine(principal, found):  # a decider asking for a layer they cannot read
            raise HTTPError(403, "Forbidden", "you asked for this access yourself: another of the layer's deciders "
                                              "(its agency's editors or the GIS office's admins) decides it")
        decided = access_requests.decide(conn, request_id, body.get("decision"), body.get("reason"),
                                         body.get("expires"), principal, operator_of(principal), catalog)
    return decided


def _decide(principal, request_id: int, body: dict):
    return json_answer(_iso(decide(principal, request_id, body)))


async def decision(request: Request):
    principal = _caller()
    return await in_thread(principal, _decide, principal, request.path_params["request_id"], await _body(request))


routes = [Route("/manage/requests", listing, methods=["GET"]), Route("/manage/requests", create, methods=["POST"]),
          Route("/manage/requests/{request_id:int}/decision", decision, methods=["POST"])]

_REF = "#/components/responses/{}".format
REQUEST = {"type": "object", "required": ["id", "layer", "state"], "properties": {
    "id": {"type": "integer"}, "layer": {"type": "string"}, "agency": {"type": "string"}, "role": {"type": "string"},
    "principal": {"type": "string"}, "reason": {"type": "string"},
    "state": {"type": "string", "enum": ["pending", "approved", "rejected"]},
    "created_at": {"type": "string", "format": "date-time"},
    "decided_by": {"type": "string", "nullable": True},
    "decided_at": {"type": "string", "format": "date-time", "nullable": True},
    "decision_reason": {"type": "string", "nullable": True},
    "expires_at": {"type": "string", "format": "date-time", "nullable": True,
                   "description": "when the grant an approval made stops working"}}}
BAD_BODY = _problem("the body is not valid: the key named, what is wrong and the fix")
OPENAPI_PATHS = {
    "/manage/requests": {
        "get": {"summary": "my access requests with their decisions, and the pending ones I may decide",
                "tags": [TAG], "parameters": [],
                "responses": {"200": _json("the requests", {"type": "object", "required": ["mine", "to_decide"],
                                                            "properties": {
                    "mine": {"type": "array", "items": REQUEST}, "to_decide": {"type": "array", "items": REQUEST}}}),
                              "401": {"$ref": _REF("Unauthorized")}}},
        "post": {"summary": "ask for access to a layer the caller cannot read, by its id, saying why (taken alike "
                            "whether the layer exists or not: only its deciders see it)",
                 "tags": [TAG], "parameters": [],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["layer", "reason"], "properties": {
                         "layer": {"type": "string", "pattern": LAYER_ID},
                         "reason": {"type": "string", "maxLength": 2000}}}}}},
                 "responses": {"201": _json("the request, pending", REQUEST), "401": {"$ref": _REF("Unauthorized")},
                               "409": _problem("the caller reads the layer already, awaits a decision on it, or "
                                               "awaits too many"),
                               "422": BAD_BODY}}},
    "/manage/requests/{requestId}/decision": {"post": {
        "summary": "approve (a grant to the requester's agency and role, optionally until expires) or reject "
                   "(with a reason) an access request", "tags": [TAG],
        "parameters": [path_parameter("requestId", "the request's id", {"type": "integer", "minimum": 1,
                                                                         "maximum": MAX_ID})],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["decision"], "properties": {
                "decision": {"type": "string", "enum": list(access_requests.DECISIONS)},
                "reason": {"type": "string", "maxLength": 2000, "description": "required to reject"},
                "expires": {"type": "string", "description": "the grant's expiry: an ISO 8601 date or time, or a "
                                                             "duration such as 90d or 12h; none: no expiry"}}}}}},
        "responses": {"200": _json("the request, decided", REQUEST), "401": {"$ref": _REF("Unauthorized")},
                      "403": {"$ref": _REF("Forbidden")}, "404": {"$ref": _REF("NotFound")},
                      "409": _problem("the request was decided already"), "422": BAD_BODY}}},
}
