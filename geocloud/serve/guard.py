"""The one choke point between a request and a layer: who is asking, and may they read it.

``AuthMiddleware`` resolves the caller from the request (``Authorization: Bearer`` key, token or
OpenID Connect JWT,
``X-API-Key``, HTTP Basic with the key as password, or ``token=`` / ``api_key=`` in the query, or
else the portal's session cookie: serve/session.py) and refuses bad credentials with 401 before any
route runs. Routes then call ``layer_for`` (one
layer) or ``visible_layers`` (lists); both use ``geocloud.access.policy``. A caller who may not
read a layer gets the same answer as for a layer that does not exist: 404 when authenticated,
401 with ``WWW-Authenticate`` when anonymous (so QGIS asks for credentials). Reads of non-public
layers are audited after the response, with the bytes sent.
"""

import base64
import contextvars
import json
import logging
import time
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool

from geocloud.access import (
    ANONYMOUS,
    Principal,
    audit,
    keys,
    oidc,
    ratelimit,
    tokens,
    visible,
)
from geocloud.access.policy import can_read
from geocloud.catalog import Layer, get_catalog
from geocloud.config import get_settings
from geocloud.db.pool import UNAVAILABLE, get_pool
from geocloud.errors import DatabaseError, DatabaseUnavailable
from geocloud.serve import session
from geocloud.serve.http import HTTPError
from geocloud.serve.state import pin, snapshot, unpin

CHALLENGE = 'Basic realm="geocloud", charset="UTF-8", Bearer realm="geocloud"'
MAX_CREDENTIAL = 4096
current: contextvars.ContextVar[Principal] = contextvars.ContextVar("geocloud_principal", default=ANONYMOUS)
_reads: contextvars.ContextVar[list | None] = contextvars.ContextVar("geocloud_audited_reads", default=None)


def unauthorized(reason: str) -> HTTPError:
    return HTTPError(401, "Unauthorized", reason, {"WWW-Authenticate": CHALLENGE})


def service_unavailable(exc: DatabaseError) -> HTTPError:
    """503 with Retry-After for a database that is down, slow or misconfigured. The reason is given
    when it was written for clients (DatabaseUnavailable, which the pool logs once an outage); others
    may name hosts, and are logged."""
    if isinstance(exc, DatabaseUnavailable):
        reason = exc.what
    else:
        logging.getLogger("geocloud.serve").error("database unavailable: %s", exc)
        reason = UNAVAILABLE
    return HTTPError(503, "ServiceUnavailable", reason, {"Retry-After": str(get_settings().db_retry_after)})


def _credential_headers(scope) -> tuple[bytes | None, bytes | None, int]:
    """The raw ``Authorization`` and ``X-API-Key`` values, and how many such headers came, in one pass."""
    auth = api_key = None
    count = 0
    for name, value in scope["headers"]:  # ASGI servers give header names in lower case
        if name == b"authorization":
            auth, count = value, count + 1
        elif name == b"x-api-key":
            api_key, count = value, count + 1
    return auth, api_key, count


def _presented(scope, headers: tuple[bytes | None, bytes | None, int]) -> list[str]:
    raw_auth, raw_key, _ = headers
    found = []
    if raw_auth is not None:
        scheme, _, value = raw_auth.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and value:
            found.append(value.strip())
        elif scheme.lower() == "basic" and value:
            try:
                _, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                password = ""
            found.append(password)
        else:
            found.append("")  # an Authorization header we cannot read is a bad credential, not none
    if raw_key is not None:
        found.append(raw_key.decode("latin-1").strip())
    raw = scope.get("query_string", b"")
    if b"token=" in raw or b"api_key=" in raw:
        query = parse_qs(raw.decode("latin-1"))
        for name in ("token", "api_key"):
            found.extend(query.get(name, []))
    return found


NEED_DATABASE = object()


def _check(credential: str, conn):
    """The principal of one credential, None if it is bad, or keys.MISS when ``conn`` is None and
    the credential is not remembered (it must be looked up in the database)."""
    if not credential or len(credential) > MAX_CREDENTIAL:
        return None
    if credential.startswith(keys.PREFIX):  # the common case first: an API key
        return keys.cached(credential) if conn is None else keys.verify(conn, credential)
    if credential.startswith(tokens.PREFIX):
        if conn is None and not tokens.secret_known():
            return keys.MISS
        return tokens.verify(conn, credential)
    if oidc.looks_like_jwt(credential):
        return oidc.cached(credential) if conn is None else oidc.verify(conn, credential)
    return keys.cached(credential) if conn is None else keys.verify(conn, credential)


_remembered: dict[bytes, Principal] = {}  # credential digest -> the principal the database last gave it


def _remember(credential: str, principal: Principal | None) -> None:
    if principal is None:
        _remembered.pop(keys.fingerprint(credential), None)
        return
    if len(_remembered) > 10_000:
        _remembered.clear()
    _remembered[keys.fingerprint(credential)] = principal


def _remembered_principal(credential: str):
    """What the database last said of a credential, for use only while it cannot be asked: a key
    cannot be revoked during an outage either. keys.MISS if this worker never saw it."""
    found = _remembered.get(keys.fingerprint(credential), keys.MISS)
    if found is not keys.MISS and found.expires <= time.time():
        return None
    return found


CONNECTION_SECONDS = 5.0  # with keys.CACHE_SECONDS, the longest a revoked key still works here: 30 s
_by_connection: dict[tuple, tuple[bytes, float, Principal]] = {}


def _connection_key(scope, headers: tuple[bytes | None, bytes | None, int]) -> tuple[tuple, bytes] | None:
    """(client address, the raw credential header) when a request carries exactly one credential, in
    a header; None otherwise. A keep-alive connection sends the same header with every request."""
    raw = scope.get("query_string", b"")
    client = scope.get("client")
    if headers[2] != 1 or not client or b"token=" in raw or b"api_key=" in raw:
        return None
    return tuple(client), headers[0] if headers[0] is not None else headers[1]


def resolve(scope, conn=None, *, outage: bool = False):
    """The caller. Without ``conn`` nothing touches the database (no credentials, or all of them
    remembered) and NEED_DATABASE says a lookup is needed. A bad credential raises 401. With
    ``outage`` (the database is unreachable), credentials this worker verified before stand for
    what they were then, whatever their age.

    An API key verified on a connection is remembered for that connection (its exact header bytes)
    for CONNECTION_SECONDS: the next requests on it skip parsing and hashing the key."""
    headers = _credential_headers(scope)
    known = _connection_key(scope, headers)
    if known is not None:
        hit = _by_connection.get(known[0])
        if hit is not None and hit[0] == known[1] and time.monotonic() - hit[1] < CONNECTION_SECONDS:
            return hit[2]
    principal = None
    for credential in _presented(scope, headers):
        found = _check(credential, conn)
        if found is keys.MISS and outage:
            found = _remembered_principal(credential)
        if found is keys.MISS:
            return NEED_DATABASE
        if conn is not None:
            _remember(credential, found)
        if found is None:
            raise unauthorized("the API key or token is malformed, invalid, expired or revoked")
        principal = principal or found
    if known is not None and principal is not None and principal.kind == "key":
        if len(_by_connection) > 10_000:
            _by_connection.clear()
        _by_connection[known[0]] = (known[1], time.monotonic(), principal)
    return principal or ANONYMOUS


def resolve_with_database(scope) -> Principal:
    try:
        with get_pool().connection() as conn:
            return resolve(scope, conn)
    except DatabaseUnavailable:
        principal = resolve(scope, outage=True)
        if principal is NEED_DATABASE:
            raise
        return principal


def visible_layers() -> frozenset[str]:
    return visible(current.get(), get_catalog())


def layer_for(layer_id: str, surface: str, *, kind: str | None = None, detail: dict | None = None) -> Layer:
    """The catalog layer ``layer_id`` if it is live and the caller may read it; else 401/404."""
    layer = get_catalog().layers.get(layer_id)
    principal = current.get()
    if layer is None or layer_id not in snapshot().layers or not can_read(principal, layer):
        if principal.anonymous:
            raise unauthorized(f"{layer_id!r} is not public or does not exist; authenticate to see more")
        raise HTTPError(404, "NotFound", f"collection {layer_id!r} not found")
    if kind is not None and layer.kind != kind:
        where = f"/rasters/{layer_id}" if layer.kind == "raster" else f"/collections/{layer_id}"
        raise HTTPError(400, "InvalidParameterValue", f"layer: {layer_id!r} is a {layer.kind} layer; see {where}")
    if not layer.is_public:
        reads = _reads.get()
        if reads is not None:
            reads.append((layer_id, surface, dict(detail) if detail else {}))
    return layer


def note(layer_id: str, detail: dict) -> None:
    """Add details (e.g. the terms a download accepted) to this request's audit record of a layer."""
    for layer, _, recorded in _reads.get() or []:
        if layer == layer_id:
            recorded.update(detail)


def cache_control(layers) -> str:
    """Public layers may sit in shared caches; anything else only in the caller's own."""
    catalog = get_catalog()
    public = all(catalog.layers[i].is_public for i in layers if i in catalog.layers)
    return "public, no-cache" if public else "private, no-cache"


def admit(principal: Principal, scope) -> None:
    """Count the request against its caller's rate limit (a key's, or an anonymous client address's):
    429 with Retry-After when over it. Also the warm tile path's (tiles/warm.py) for anonymous callers."""
    if principal.kind == "anonymous":  # (each warm tile passes here: written for speed)
        address = scope.get("client")
        client = "ip:" + (address[0] if address else "unknown")
    else:
        client = f"{principal.kind}:{principal.id}"
    wait = ratelimit.hit(client)
    if wait is not None:
        raise HTTPError(429, "TooManyRequests", f"more than {ratelimit.limit_for(client)} requests a minute; "
                                                f"retry in {wait} s", {"Retry-After": str(wait)})


def refusal(exc: HTTPError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, headers and body refusing a request before any route ran (bad credentials, over
    the rate limit, no database); also the warm tile path's 429 (tiles/warm.py)."""
    body = json.dumps({"code": exc.code, "description": exc.description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")] + \
        [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    return exc.status, headers, body


async def refuse(send, exc: HTTPError) -> None:
    """Answer a request refused before any route ran, with ``refusal``'s answer."""
    status, headers, body = refusal(exc)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            principal = resolve(scope)
            if principal is NEED_DATABASE:
                principal = await run_in_threadpool(resolve_with_database, scope)
            if principal.anonymous and session.presented(scope) is not None:  # a portal session (serve/session.py)
                principal = await run_in_threadpool(session.resolve, scope)
                send = session.clearing(scope, send)
            admit(principal, scope)
        except (HTTPError, DatabaseError) as exc:
            return await refuse(send, service_unavailable(exc) if isinstance(exc, DatabaseError) else exc)
        token = current.set(principal)
        pinned = pin()  # one snapshot, so one set of layer versions, for the whole response
        reads: list = []
        reads_token = _reads.set(reads)
        sent = 0
        status = 0
        started = time.monotonic()

        async def counting_send(message):
            nonlocal sent, status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)
        try:
            await self.app(scope, receive, counting_send)
        finally:
            current.reset(token)
            unpin(pinned)
            _reads.reset(reads_token)
            for layer_id, surface, detail in reads:
                if surface in audit.TILE_SURFACES:  # summed per principal and layer: only the path and size count
                    audit.tile_read(principal.name, principal.agency, layer_id, surface, scope["path"], sent,
                                    principal.id)
                    continue
                audit.enqueue(principal.name, principal.agency, layer_id, surface,
                              {**detail, "path": scope["path"], "query": scope.get("query_string", b"").decode("latin-1"),
                               "status": status, "bytes": sent, "key": principal.id,
                               "ms": round((time.monotonic() - started) * 1000, 1)})
