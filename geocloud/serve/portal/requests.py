"""The access-request pages: ``/requests`` lists my requests with their decisions and, for the
owning agency's editors and the GIS office's admins, the pending queue with approve and reject forms;
``/requests/new?layer=ID`` asks for a layer by its id (the form says nothing of whether it exists).
The forms post to ``/requests`` and ``/requests/{id}/decision`` with the session's CSRF token (``session.form_principal``), and do what
the JSON API (``/manage/requests``) does, through the same functions; a refused form is shown again
with the reason, and a done one redirects to ``/requests`` (so a reload sends nothing twice)."""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from geocloud.access import requests as access_requests
from geocloud.access.policy import can_read
from geocloud.catalog import get_catalog
from geocloud.catalog.models import LAYER_ID
from geocloud.db.pool import write_pool
from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve import guard, session
from geocloud.serve.http import base_url
from geocloud.serve.manage.permission import status_of
from geocloud.serve.manage.requests import decide
from geocloud.serve.openapi30 import path_parameter, query_parameter
from geocloud.serve.portal.render import render
from geocloud.serve.portal.signin import (
    CSRF,
    FORBIDDEN,
    PAGE,
    PERSONAL,
    SEE_OTHER,
    form,
)


def _listed(principal) -> tuple[dict, dict]:
    """The caller's requests and those it decides on, and the titles of the layers they name."""
    catalog = get_catalog()  # before the connection: reading the registry takes one of the pool's own
    with write_pool().connection() as conn:  # the primary: the request just sent is listed
        listed = access_requests.listing(conn, principal, catalog)
    return listed, titles(principal, catalog, listed)


def titles(principal, catalog, listed: dict) -> dict:
    """The titles of the layers the page lists: those the caller decides on, and of its own requests'
    layers those it may read now (a requester learns nothing more of a layer it cannot read)."""
    named = {r["layer"] for r in listed["to_decide"]} | {
        r["layer"] for r in listed["mine"] if r["layer"] in catalog.layers and can_read(principal, catalog.layers[r["layer"]])}
    return {i: catalog.layers[i].title for i in named if i in catalog.layers}


def _signin_first(request: Request) -> Response:
    """A page of requests is someone's: sign in first (as /account)."""
    return RedirectResponse(f"{base_url(request)}/signin", status_code=303, headers=PERSONAL)


async def requests_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    principal = guard.current.get()
    if principal.anonymous:
        return _signin_first(request)
    listed, named = await run_in_threadpool(_listed, principal)
    return render(request, "requests.html", status=status, headers=PERSONAL, mine=listed["mine"],
                  to_decide=listed["to_decide"], titles=named,
                  csrf=session.csrf_token(request), error=error,
                  done=request.query_params.get("done"))


async def new_page(request: Request) -> Response:
    return await _new(request, request.query_params.get("layer", ""))


async def _new(request: Request, layer_id: str, error: str | None = None, status: int = 200,
               reason: str = "") -> Response:
    if guard.current.get().anonymous:
        return _signin_first(request)
    return render(request, "request_new.html", status=status, headers=PERSONAL, layer_id=layer_id[:41],
                  id_pattern=LAYER_ID, csrf=session.csrf_token(request), error=error, reason=reason)


def _create(principal, fields) -> dict:
    catalog = get_catalog()  # before the connection: reading the registry takes one of the pool's own
    with write_pool().connection() as conn:  # access_requests.create is one transaction of its own
        return access_requests.create(conn, principal, fields.get("layer"), fields.get("reason"), catalog)


async def submit(request: Request) -> Response:
    fields = await session.read_form(request)
    principal = session.form_principal(request, fields)
    try:
        await run_in_threadpool(_create, principal, fields)
    except DatabaseError:
        raise  # the app's one handler: 503 with Retry-After, not the form again
    except GeocloudError as exc:
        return await _new(request, fields.get("layer", ""), error=exc.what, status=status_of(exc)[0],
                          reason=fields.get("reason", ""))
    return RedirectResponse(f"{base_url(request)}/requests?done=requested", status_code=303)


async def decision(request: Request) -> Response:
    fields = await session.read_form(request)
    principal = session.form_principal(request, fields)
    request_id = request.path_params["request_id"]
    body = {"decision": fields.get("decision"), "reason": fields.get("reason"), "expires": fields.get("expires") or None}
    try:
        await run_in_threadpool(decide, principal, request_id, body)
    except DatabaseError:
        raise
    except GeocloudError as exc:
        return await requests_page(request, error=f"#{request_id}: {exc.what}", status=status_of(exc)[0])
    return RedirectResponse(f"{base_url(request)}/requests?done={body['decision']}", status_code=303)


routes = [Route("/requests", requests_page, methods=["GET"]), Route("/requests", submit, methods=["POST"]),
          Route("/requests/new", new_page, methods=["GET"]),
          Route("/requests/{request_id:int}/decision", decision, methods=["POST"])]

_FORM_AGAIN = {"description": "the form again, saying what to fix", "content": {"text/html": {"schema": {"type": "string"}}}}
_DONE = {"303": SEE_OTHER, "401": {"$ref": "#/components/responses/Unauthorized"}, **FORBIDDEN,
         "404": {"$ref": "#/components/responses/NotFound"}, "409": _FORM_AGAIN,
         "413": {"$ref": "#/components/responses/PayloadTooLarge"}, "422": _FORM_AGAIN}
OPENAPI_PATHS = {
    "/requests": {
        "get": {"summary": "page: my access requests and their decisions; the pending ones I may decide (sign in "
                           "first)", "tags": ["Portal"], "parameters": [], "responses": {"200": PAGE, "303": SEE_OTHER}},
        "post": {"summary": "form: ask for access to a layer by its id (a signed-in session)", "tags": ["Portal"],
                 "parameters": [], "requestBody": form(["csrf", "layer", "reason"], csrf=CSRF,
                                                       layer={"type": "string"}, reason={"type": "string"}),
                 "responses": _DONE}},
    "/requests/new": {"get": {
        "summary": "page: the form asking for access to a layer (sign in first)", "tags": ["Portal"],
        "parameters": [query_parameter("layer", "the layer asked for", {"type": "string"})],
        "responses": {"200": PAGE, "303": SEE_OTHER}}},
    "/requests/{requestId}/decision": {"post": {
        "summary": "form: approve or reject an access request", "tags": ["Portal"],
        "parameters": [path_parameter("requestId", "the request's id", {"type": "integer", "minimum": 1})],
        "requestBody": form(["csrf", "decision"], csrf=CSRF,
                            decision={"type": "string", "enum": list(access_requests.DECISIONS)},
                            reason={"type": "string"}, expires={"type": "string"}),
        "responses": _DONE}},
}
