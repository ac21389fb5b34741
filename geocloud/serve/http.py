"""HTTP plumbing shared by every route: the URL the client reached, errors, and cache validators."""

import hashlib
import re
from datetime import timezone
from email.utils import format_datetime
from urllib.parse import urlsplit

from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geocloud.config import get_settings


class PathInteger(IntegerConvertor):
    """``{name:int}`` in geocloud's routes (registered here, before any route module builds its
    routes): at most 4,000 digits. ``int()`` refuses more than 4,300, which was a 500; a longer
    number now matches no route (404)."""

    regex = "[0-9]{1,4000}"


register_url_convertor("int", PathInteger())


class HTTPError(Exception):
    """A client's mistake: answered with ``status`` and a JSON body naming what is wrong."""

    def __init__(self, status: int, code: str, description: str, headers: dict | None = None):
        super().__init__(description)
        self.status, self.code, self.description, self.headers = status, code, description, headers or {}


def bad_parameter(name: str, problem: str) -> HTTPError:
    return HTTPError(400, "InvalidParameterValue", f"{name}: {problem}")


def not_found(what: str) -> HTTPError:
    return HTTPError(404, "NotFound", what)


def error_response(exc: HTTPError) -> Response:
    return JSONResponse({"code": exc.code, "description": exc.description}, status_code=exc.status,
                        headers={"Cache-Control": "no-store", **exc.headers})


HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
CREDENTIAL_HEADERS = b"Authorization, X-API-Key, Cookie"  # what an answer may vary on
ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"strict-origin-when-cross-origin")]
FORWARDED = "geocloud.forwarded"  # scope key: the host and prefix a trusted proxy named (serve/headers.py)


def server_error() -> Response:
    """The last resort: a JSON 500 that says ``Connection: close``. Starlette sends it from outside
    every middleware and re-raises, and uvicorn then closes the connection: the header tells a
    keep-alive client so, and the shared headers (serve/headers.py) are set here since no
    middleware will add them."""
    shared = {name.decode(): value.decode() for name, value in ALWAYS}
    return JSONResponse({"code": "ServerError", "description": "internal error (logged)"}, status_code=500,
                        headers={"Connection": "close", "Cache-Control": "no-store",
                                 "Vary": CREDENTIAL_HEADERS.decode(), **shared})


def base_url(request: Request) -> str:
    """The server's root URL as this client reached it, for the links the server writes.

    Links that end up in shared caches must not be the client's to choose: the host and prefix a
    reverse proxy names count only when the proxy is trusted (GEOCLOUD_TRUSTED_PROXIES; the
    middleware in serve/headers.py has then put them, and the scheme, in the scope); the Host header
    counts only when it names GEOCLOUD_PUBLIC_URL's host or one of GEOCLOUD_ALLOWED_HOSTS, and so
    does the host a trusted proxy names (a proxy that passes the client's Host header on as
    X-Forwarded-Host, as many do, must not let the client choose it). Anything else gets links to
    GEOCLOUD_PUBLIC_URL."""
    scope = request.scope
    settings = get_settings()
    forwarded = scope.get(FORWARDED) or {}
    host = forwarded.get("host") or request.headers.get("host", "")
    if not HOST.match(host) or urlsplit(f"//{host}").hostname not in settings.link_hosts:
        return settings.public_url.rstrip("/")
    return f"{scope['scheme']}://{host}{forwarded.get('prefix', '')}{scope.get('root_path', '')}".rstrip("/")


def validators(request: Request, version_token: str, last_modified, cache_control: str = "no-cache") -> dict:
    """ETag and Last-Modified for a response that depends on ``version_token`` and the request."""
    h = request.headers
    basis = "|".join([version_token, request.url.path, request.url.query, h.get("accept", ""),
                      h.get("accept-language", ""), base_url(request)])
    headers = {"ETag": f'W/"{hashlib.sha256(basis.encode()).hexdigest()[:32]}"', "Cache-Control": cache_control}
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified.astimezone(timezone.utc), usegmt=True)
    return headers


def not_modified(request: Request, headers: dict) -> Response | None:
    match = request.headers.get("if-none-match")
    if match and (match.strip() == "*" or headers["ETag"] in [m.strip() for m in match.split(",")]):
        return Response(status_code=304, headers=headers)
    return None


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, read up to ``limit`` bytes (a Content-Length is not trusted): 413 beyond,
    naming ``what`` the body is."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, "PayloadTooLarge", f"{what} of at most {limit} bytes")
    return bytes(body)
