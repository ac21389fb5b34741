"""The portal's session cookie at the guard, and the CSRF checks that keep it from being ridden.

The guard (serve/guard.py) asks ``resolve`` for the principal of a request that carries no other
credential but the session cookie. A cookie that names no live session (tampered, expired, signed
out) counts as none: the caller is anonymous, the answer clears the cookie (``clearing``) and the
pages say why (``refused``).

A browser sends the cookie with requests other sites make it send, so a cookie authenticates a
state-changing request (any method but GET, HEAD, OPTIONS) only with proof that the portal's own
page made it: scripts send the session's token in the ``X-CSRF-Token`` header (checked here, for
every JSON route, /manage included), forms send it in the ``csrf`` field, which the form's handler
checks with ``form_principal`` (a form body is the route's to read). Without that proof the cookie
counts for nothing: a JSON route sees an anonymous caller (401) and a form answers 403. Such
requests must also come from the portal's own origin when the browser says where from (Origin).

A page with a form: write ``csrf_token(request)`` into a hidden ``csrf`` field; its POST handler
starts with ``principal = form_principal(request, await read_form(request))``: ``read_form`` reads at
most FORM_MAX_BYTES (Starlette's ``request.form()`` keeps a field of any size in memory, and the
sign-in forms are anyone's to post to).
"""

from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request, cookie_parser

from geocloud.access import ANONYMOUS, Principal, sessions
from geocloud.db.pool import write_pool
from geocloud.serve.http import HTTPError, base_url, read_body

COOKIE = "geocloud_session"
CSRF_HEADER = "x-csrf-token"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
FOUND = "geocloud.session"           # scope key: the Session the cookie named
REFUSED = "geocloud.session_refused"  # scope key: set when the cookie named none
FORM_MAX_BYTES, FORM_MAX_FIELDS = 16 * 1024, 10  # a portal form: a token, a few choices, a reason


def presented(scope) -> str | None:
    """The session cookie's value, if the request sent one."""
    for name, value in scope["headers"]:
        if name == b"cookie" and COOKIE.encode() in value:
            return cookie_parser(value.decode("latin-1")).get(COOKIE)
    return None


def cookie_header(scope, value: str, max_age: int) -> bytes:
    """Set-Cookie for the session: HttpOnly, SameSite=Lax, Path=/, Secure when the request came over
    HTTPS (directly, or as a trusted proxy says: serve/headers.py has set the scheme)."""
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return f"{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}".encode("latin-1")


def resolve(scope) -> Principal:
    """The principal of the request's session cookie (blocking: run it in a thread)."""
    secret = presented(scope)
    with write_pool().connection() as conn:  # the primary: a sign-out is seen at once, replicas lag
        found = sessions.find(conn, secret or "")
    if found is None:
        scope[REFUSED] = True
        return ANONYMOUS
    scope[FOUND] = found
    if scope["method"] in SAFE:
        return found.principal
    headers = dict(scope["headers"])
    token = headers.get(CSRF_HEADER.encode(), b"").decode("latin-1")
    if sessions.csrf_matches(found, token) and _same_origin(scope, headers.get(b"origin")):
        return found.principal
    return ANONYMOUS


def clearing(scope, send):
    """``send``, adding a Set-Cookie that clears a refused session cookie."""
    if not scope.get(REFUSED):
        return send

    async def send_clearing(message):
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie_header(scope, "", 0))]
        await send(message)
    return send_clearing


def _same_origin(scope, origin: bytes | None) -> bool:
    """No Origin header (an old browser, a same-origin GET), or the portal's own origin."""
    if origin is None:
        return True
    own = urlsplit(base_url(Request(scope)))
    return origin.decode("latin-1").rstrip("/") == f"{own.scheme}://{own.netloc}"


def same_origin(request: Request) -> bool:
    """Did a form come from the portal's own origin (or does the browser not say)?"""
    origin = request.headers.get("origin")
    return _same_origin(request.scope, origin.encode("latin-1") if origin is not None else None)


def of(request: Request) -> sessions.Session | None:
    """The request's live session, whether or not it authenticates this request."""
    return request.scope.get(FOUND)


def csrf_token(request: Request) -> str | None:
    """The token a page writes into its forms (``<input type="hidden" name="csrf">``) and its
    scripts send as ``X-CSRF-Token``; None when the browser has no session."""
    found = of(request)
    return found.csrf if found else None


def refused(request: Request) -> bool:
    """Did the request send a session cookie that names no live session (tampered, expired, ended)?"""
    return bool(request.scope.get(REFUSED))


async def read_form(request: Request) -> dict:
    """A posted form's fields (the last of each name), read up to FORM_MAX_BYTES: 413 beyond, 400
    for more than FORM_MAX_FIELDS fields."""
    body = await read_body(request, FORM_MAX_BYTES, "a form")
    try:
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), max_num_fields=FORM_MAX_FIELDS))
    except ValueError:
        raise HTTPError(400, "InvalidParameterValue", f"the form has more than {FORM_MAX_FIELDS} fields") from None


def form_principal(request: Request, form) -> Principal:
    """The signed-in caller of a form POST, once its ``csrf`` field is the session's token and it
    came from the portal's own origin; 401 without a session, 403 without the proof."""
    found = of(request)
    if found is None:
        raise HTTPError(401, "Unauthorized", "sign in first (/signin)")
    if not sessions.csrf_matches(found, str(form.get("csrf") or "")) or not same_origin(request):
        raise HTTPError(403, "Forbidden", "the form's CSRF token is missing or wrong, or it came from another "
                                          "site; reload the page and submit it again")
    return found.principal
