"""``/account``: who the browser is signed in as (agency, roles) and their API keys: create one (its
secret shown once, in the answer to the form, never again), see when each was made and last used,
revoke one. Keys are made by people signed in with the city's SSO; they belong to the SSO subject
and carry the agency and one of the roles the SSO gave. A session opened with an API key shows that
key but makes no others: a key is a service's credential, not a person's. Every change is audited.
"""

from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from geocloud.access import audit, keys
from geocloud.db.pool import write_pool
from geocloud.serve import guard, session
from geocloud.serve.http import HTTPError, base_url
from geocloud.serve.openapi30 import path_parameter
from geocloud.serve.portal.render import render
from geocloud.serve.portal.signin import (
    CSRF,
    FORBIDDEN,
    PAGE,
    PERSONAL,
    SEE_OTHER,
    form,
)

EXPIRIES = (30, 90, 365)  # days a new key may live; the form offers these


def _mine(found) -> tuple[dict, list]:
    principal = found.principal
    with write_pool().connection() as conn:
        agency = conn.execute("SELECT code, name_zh, name_en FROM geocloud.agencies WHERE code = %s",
                              (principal.agency,)).fetchone()
        rows = conn.execute(
            "SELECT id, role, created_at, last_used_at, expires_at, revoked_at, "
            "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) FROM geocloud.api_keys "
            "WHERE (subject = %s OR id = %s) AND agency = %s ORDER BY created_at DESC",
            (found.subject, found.key_id, principal.agency)).fetchall()
    return {"code": agency[0], "zh": agency[1], "en": agency[2]}, rows


async def _page(request: Request, new_key: str | None = None, status: int = 200) -> Response:
    found = session.of(request)
    agency, rows = await run_in_threadpool(_mine, found)
    return render(request, "account.html", status=status, headers=PERSONAL, me=found.principal, agency=agency,
                  keys=rows, csrf=found.csrf, new_key=new_key, by_key=found.key_id, expiries=EXPIRIES)


async def account(request: Request) -> Response:
    if guard.current.get().kind != "session":
        expired = "?expired=1" if session.refused(request) else ""
        return RedirectResponse(f"{base_url(request)}/signin{expired}", status_code=303, headers=PERSONAL)
    return await _page(request)


async def create_key(request: Request) -> Response:
    form = await session.read_form(request)
    principal = session.form_principal(request, form)
    if session.of(request).key_id:
        raise HTTPError(403, "Forbidden", "a session opened with an API key makes no keys: sign in with the city's SSO")
    role, days = str(form.get("role", "")), str(form.get("days", ""))
    if role not in principal.roles:
        raise HTTPError(400, "InvalidParameterValue",
                        f"role: {role!r} is not one of yours ({', '.join(sorted(principal.roles))})")
    if days not in {str(d) for d in EXPIRIES}:
        raise HTTPError(400, "InvalidParameterValue", f"days: must be one of {', '.join(map(str, EXPIRIES))}")
    subject = session.of(request).subject

    def create() -> str:
        with write_pool().connection() as conn, conn.transaction():
            key = keys.create(conn, principal.agency, principal.name, role, None,
                              datetime.now(UTC) + timedelta(days=int(days)))
            key_id = keys.KEY.match(key).group(1)
            conn.execute("UPDATE geocloud.api_keys SET subject = %s WHERE id = %s", (subject, key_id))
            audit.record(conn, "key-created", f"{principal.name}@{principal.agency}", principal.agency,
                         surface="portal", detail={"key": key_id, "role": role, "days": int(days)})
        return key
    return await _page(request, await run_in_threadpool(create), 201)


async def revoke_key(request: Request) -> Response:
    form = await session.read_form(request)
    principal = session.form_principal(request, form)
    key_id, subject = request.path_params["key_id"], session.of(request).subject

    def revoke() -> bool:
        if not keys.KEY_ID.match(key_id):  # not an id (PostgreSQL refuses some characters outright)
            return False
        with write_pool().connection() as conn, conn.transaction():
            if conn.execute("SELECT 1 FROM geocloud.api_keys WHERE id = %s AND subject = %s AND revoked_at IS NULL",
                            (key_id, subject)).fetchone() is None:
                return False
            keys.revoke(conn, key_id)
            audit.record(conn, "key-revoked", f"{principal.name}@{principal.agency}", principal.agency,
                         surface="portal", detail={"key": key_id})
        keys.forget(key_id)
        return True
    if not await run_in_threadpool(revoke):
        raise HTTPError(404, "NotFound", f"you have no active key {key_id!r}")
    return RedirectResponse(f"{base_url(request)}/account", status_code=303, headers=PERSONAL)


routes = [Route("/account", account, methods=["GET"]), Route("/account/keys", create_key, methods=["POST"]),
          Route("/account/keys/{key_id}/revoke", revoke_key, methods=["POST"])]

OPENAPI_PATHS = {
    "/account": {"get": {"summary": "my account: agency, roles, API keys (sign in first)", "tags": ["Portal"],
                         "responses": {"200": PAGE, "303": SEE_OTHER}}},
    "/account/keys": {"post": {
        "summary": "make an API key (its secret is shown once, in the answer)", "tags": ["Portal"],
        "requestBody": form(["csrf", "role", "days"], csrf=CSRF, role={"type": "string"},
                            days={"type": "string", "enum": [str(d) for d in EXPIRIES]}),
        "responses": {"201": PAGE, **FORBIDDEN}}},
    "/account/keys/{key_id}/revoke": {"post": {
        "summary": "revoke one of my API keys", "tags": ["Portal"],
        "parameters": [path_parameter("key_id", "the key's id (the part after gck_)")],
        "requestBody": form(["csrf"], csrf=CSRF),
        "responses": {"303": SEE_OTHER, "404": {"$ref": "#/components/responses/NotFound"}, **FORBIDDEN}}},
}
