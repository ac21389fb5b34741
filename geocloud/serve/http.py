"""HTTP plumbing shared by every route: the URL the client reached, errors, and cache validators."""

import hashlib
from datetime import timezone
from email.utils import format_datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


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


def base_url(request: Request) -> str:
    """The server's root URL as this client reached it, honouring a reverse proxy's headers."""
    h = request.headers
    proto = h.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = h.get("x-forwarded-host", h.get("host", request.url.netloc)).split(",")[0].strip()
    prefix = h.get("x-forwarded-prefix", "").rstrip("/")
    return f"{proto}://{host}{prefix}{request.scope.get('root_path', '')}".rstrip("/")


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
