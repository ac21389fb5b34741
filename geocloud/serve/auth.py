"""``POST /auth/token``: a short-lived signed token for tile URLs in web pages.

Only an API key or a JWT gets one (a token cannot renew itself), and never for longer than the
key or JWT itself is valid."""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from geocloud.access import tokens
from geocloud.db.pool import write_pool
from geocloud.serve import guard, openapi30
from geocloud.serve.http import HTTPError, bad_parameter


async def issue_token(request: Request) -> JSONResponse:
    principal = guard.current.get()
    if principal.anonymous:
        raise guard.unauthorized("authenticate with an API key to get a token")
    if principal.kind not in ("key", "jwt"):  # a token cannot renew itself, nor outlive a session's sign-out
        raise HTTPError(403, "Forbidden", f"a {principal.kind} cannot issue another token; ask with the API key or JWT")
    q = request.query_params
    try:
        seconds = int(q.get("expires_in", "3600"))
    except ValueError:
        raise bad_parameter("expires_in", f"must be a number of seconds, got {q['expires_in']!r}") from None
    if not 60 <= seconds <= tokens.MAX_SECONDS:
        raise bad_parameter("expires_in", f"must be between 60 and {tokens.MAX_SECONDS} seconds")
    layers = principal.layers
    if q.get("layers"):
        wanted = frozenset(x.strip() for x in q["layers"].split(",") if x.strip())
        allowed = guard.visible_layers()
        if not wanted <= allowed:
            raise bad_parameter("layers", "a token can only narrow the caller's own access")
        layers = wanted

    def make():
        with write_pool().connection() as conn:
            return tokens.issue(conn, principal, layers, seconds)
    token, expires = await run_in_threadpool(make)
    return JSONResponse({"token": token, "expires": expires, "use": "append ?token=<token> to tile URLs"},
                        headers={"Cache-Control": "no-store"})


routes = [Route("/auth/token", issue_token, methods=["POST"])]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
AUTH = {
    "/auth/token": {"post": {
        "summary": "a short-lived token for tile URLs (?token=), for the caller's key or JWT",
        "tags": ["Access"],
        "security": [{"apiKey": []}, {"bearer": []}, {"basic": []}],
        "parameters": [
            openapi30.query_parameter("expires_in", "seconds the token is valid", {"type": "integer", "minimum": 60, "maximum": 86400}),
            openapi30.query_parameter("layers", "comma-separated layers to narrow the token to (of those the caller may read)",
                   {"type": "string"})],
        "responses": {"200": openapi30.ok("the token", {"type": "object", "required": ["token", "expires"], "properties": {
            "token": {"type": "string"}, "expires": {"type": "integer"}}}, "application/json"),
            "403": openapi30.ref("responses", "Forbidden")}}},
}

OPENAPI_PATHS = AUTH
