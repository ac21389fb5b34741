"""Signing in and out of the portal: ``/signin`` offers the city's single sign-on (an OpenID
Connect authorization-code flow with PKCE: ``/signin/sso`` starts it, ``/signin/callback`` ends
it) and, as the fallback, an API key pasted into a form; ``/signout`` ends the session on the
server. Both ways open a session (access/sessions.py) the guard resolves from its cookie.

The forms before sign-in have no session to carry a CSRF token, so they repeat a random value the
``geocloud_signin`` cookie holds (a double submit: another site can make the browser send the
cookie, not read it into the form). The SSO's state is held the same way for the callback
(``geocloud_state``): a callback is taken only by the browser that started that sign-in, once,
within ten minutes, with its nonce and PKCE verifier from PostGIS.
"""

import hmac
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from geocloud.access import audit, keys, oidc, sessions, sso
from geocloud.config import get_settings
from geocloud.db.pool import write_pool
from geocloud.serve import session
from geocloud.serve.http import HTTPError, base_url
from geocloud.serve.portal.render import render

FORM_COOKIE, STATE_COOKIE = "geocloud_signin", "geocloud_state"
PERSONAL = {"Cache-Control": "private, no-store"}


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int, path: str) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def _page(request: Request, status: int = 200, error: str | None = None) -> Response:
    """The sign-in page (its form token kept in the cookie, or a new one)."""
    token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
    expired = session.refused(request) or request.query_params.get("expired") == "1"
    response = render(request, "signin.html", status=status, headers=PERSONAL, form_token=token, error=error,
                      expired=expired, signed_out=request.query_params.get("out") == "1", sso=sso.enabled())
    _cookie(response, request, FORM_COOKIE, token, 3600, "/signin")
    return response


async def signin_page(request: Request) -> Response:
    return _page(request)


def _start(principal, subject: str, key_id: str | None, via: str) -> str:
    with write_pool().connection() as conn:
        secret = sessions.start(conn, subject, principal.name, principal.agency, principal.roles or {principal.role},
                                key_id)
        audit.record(conn, "signed-in", f"{principal.name}@{principal.agency}", principal.agency,
                     surface="portal", detail={"via": via, **({"key": key_id} if key_id else {})})
    return secret


def _signed_in(request: Request, secret: str) -> Response:
    response = RedirectResponse(f"{base_url(request)}/account", status_code=303, headers=PERSONAL)
    response.headers.append("set-cookie", session.cookie_header(request.scope, secret,
                                                                get_settings().session_max).decode("latin-1"))
    return response


async def signin_with_key(request: Request) -> Response:
    """The fallback: a session for an API key pasted into the form."""
    form = await session.read_form(request)
    cookie = request.cookies.get(FORM_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), str(form.get("csrf", "")).encode()) or \
            not session.same_origin(request):
        raise HTTPError(403, "Forbidden", "the sign-in form's token is missing or wrong, or it came from another "
                                          "site; reload /signin and submit it again")
    presented = str(form.get("api_key", "")).strip()
    if not keys.KEY.match(presented):
        return _page(request, 400, "api_key")

    def check():
        with write_pool().connection() as conn:
            return keys.verify(conn, presented)
    principal = await run_in_threadpool(check)
    if principal is None:
        return _page(request, 400, "api_key")
    return _signed_in(request, await run_in_threadpool(_start, principal, f"key:{principal.id}", principal.id, "key"))


async def start_sso(request: Request) -> Response:
    """Off to the city's SSO, with a new state, nonce and PKCE verifier."""
    if not sso.enabled():
        raise HTTPError(404, "NotFound", "sign-in with the city's SSO is not configured (GEOCLOUD_OIDC_CLIENT_ID)")

    def begin():
        url, state, nonce, verifier = sso.authorization(base_url(request))
        with write_pool().connection() as conn:
            sessions.begin_flow(conn, state, nonce, verifier)
        return url, state
    try:
        url, state = await run_in_threadpool(begin)
    except sso.SignInRefused as exc:
        return _page(request, 502, str(exc))
    response = RedirectResponse(url, status_code=303, headers=PERSONAL)
    _cookie(response, request, STATE_COOKIE, state, sessions.FLOW_SECONDS, "/signin/callback")
    return response


async def callback(request: Request) -> Response:
    """Back from the SSO: the state must be this browser's, then the code is exchanged and the ID
    token checked; its claims give the agency and roles as a bearer JWT's would."""
    q = request.query_params
    state, cookie = q.get("state", ""), request.cookies.get(STATE_COOKIE, "")
    if q.get("error"):
        return _page(request, 400, f"the sign-on service said: {q.get('error_description') or q['error']}")
    if not (state and cookie and hmac.compare_digest(state.encode(), cookie.encode())):
        return _page(request, 400, "the sign-in's state does not match this browser's: start again from /signin")
    if q.get("iss") and q["iss"].rstrip("/") != (get_settings().oidc_issuer or "").rstrip("/"):
        return _page(request, 400, f"the answer names another issuer ({q['iss']}): start again")

    def finish():
        with write_pool().connection() as conn:
            flow = sessions.take_flow(conn, state)
        if flow is None:
            raise sso.SignInRefused("this sign-in is unknown, used already or older than ten minutes: start again")
        claims = sso.claims(base_url(request), q.get("code", ""), *flow)
        with write_pool().connection() as conn:
            principal = oidc.principal_from_claims(conn, claims, "session")
        if principal is None:
            agency = claims.get(get_settings().oidc_agency_claim)
            raise sso.SignInRefused(f"your agency ({agency!r}) is not one geocloud knows: ask the GIS office")
        return _start(principal, claims["sub"], None, "sso")
    try:
        secret = await run_in_threadpool(finish)
    except sso.SignInRefused as exc:
        response = _page(request, 400, str(exc))
    else:
        response = _signed_in(request, secret)
    response.delete_cookie(STATE_COOKIE, path="/signin/callback")
    return response


async def signout(request: Request) -> Response:
    """Ends the session on the server: its cookie, even replayed, signs nobody in again."""
    form = await session.read_form(request)
    principal = session.form_principal(request, form)
    secret = session.presented(request.scope) or ""

    def end():
        with write_pool().connection() as conn:
            sessions.end(conn, secret)
            audit.record(conn, "signed-out", f"{principal.name}@{principal.agency}", principal.agency, surface="portal")
    await run_in_threadpool(end)
    response = RedirectResponse(f"{base_url(request)}/signin?out=1", status_code=303, headers=PERSONAL)
    response.headers.append("set-cookie", session.cookie_header(request.scope, "", 0).decode("latin-1"))
    return response


routes = [Route("/signin", signin_page, methods=["GET"]), Route("/signin", signin_with_key, methods=["POST"]),
          Route("/signin/sso", start_sso, methods=["GET"]), Route("/signin/callback", callback, methods=["GET"]),
          Route("/signout", signout, methods=["POST"])]

PAGE = {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
# the form's page naming the wrong field, or (a form of more fields than a form has) a JSON error
BAD_FORM = {"description": "the form again, saying what is wrong; a JSON error for a form no page sends",
            "content": {**PAGE["content"], "application/json": {"schema": {"type": "object"}}}}
SEE_OTHER = {"description": "on to the next page (Location)", "headers": {"Location": {"schema": {"type": "string"}}}}
FORBIDDEN = {"403": {"$ref": "#/components/responses/Forbidden"},
             # a form over session.FORM_MAX_BYTES or FORM_MAX_FIELDS
             "413": {"$ref": "#/components/responses/PayloadTooLarge"}}


def form(required: list[str], **fields: dict) -> dict:
    """An HTML form's body, for OPENAPI_PATHS."""
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": required, "properties": fields}}}}


CSRF = {"type": "string", "description": "the form's CSRF token, as the page wrote it"}
OPENAPI_PATHS = {
    "/signin": {
        "get": {"summary": "the sign-in page: the city's single sign-on, or an API key", "tags": ["Portal"],
                "responses": {"200": PAGE}},
        "post": {"summary": "sign in with an API key (the form on /signin)", "tags": ["Portal"],
                 "requestBody": form(["csrf", "api_key"], csrf=CSRF, api_key={"type": "string"}),
                 "responses": {"303": SEE_OTHER, "400": BAD_FORM, **FORBIDDEN}}},
    "/signin/sso": {"get": {"summary": "start signing in with the city's single sign-on (OpenID Connect, PKCE)",
                            "tags": ["Portal"], "responses": {"303": SEE_OTHER, "502": PAGE,
                                                              "404": {"$ref": "#/components/responses/NotFound"}}}},
    "/signin/callback": {"get": {
        "summary": "where the single sign-on sends the browser back (code and state)", "tags": ["Portal"],
        "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                       for n in ("code", "state", "iss", "error", "error_description")],
        "responses": {"303": SEE_OTHER, "400": PAGE}}},
    "/signout": {"post": {"summary": "sign out: the session ends on the server", "tags": ["Portal"],
                          "requestBody": form(["csrf"], csrf=CSRF), "responses": {"303": SEE_OTHER, **FORBIDDEN}}},
}
