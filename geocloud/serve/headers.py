"""Headers every answer shares, added at one choke point: a plain ASGI middleware (a closure and a
pass over a handful of headers per response; BaseHTTPMiddleware would cost far more, see rasters.py).

- **Caches**: every answer carries ``Vary: Authorization, X-API-Key, Cookie`` (it may depend on the
  credential), and one that says nothing about caching gets ``Cache-Control: private, no-cache``.
  Routes that serve public layers only say ``public`` themselves (``guard.cache_control``), so no
  answer that depends on the caller can land in a shared cache by omission.
- **Security headers**: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy`` on every answer,
  ``Strict-Transport-Security`` when the request came over HTTPS (directly or through a trusted
  proxy), and on HTML a Content-Security-Policy with ``frame-ancestors`` (and ``X-Frame-Options``
  for old browsers). One strict policy for every page: scripts, styles, fonts and images from
  geocloud alone (MapLibre's and Swagger UI's copies from npm), no inline script, MapLibre's workers
  from ``blob:``; no outside host anywhere (the portal replaced pygeoapi's CDN-loaded pages).
- **Forwarded headers** (``Forwarded``, ``X-Forwarded-For/Proto/Host/Prefix``) are believed only
  from GEOCLOUD_TRUSTED_PROXIES: then the client address and scheme in the scope become the ones
  the proxy names (rate limits count the real client), and the host and prefix go to
  ``http.base_url``. From anyone else they are ignored.
- **CORS** (GEOCLOUD_CORS_ORIGINS) is Starlette's CORSMiddleware, never with credentials, consulted
  only for requests with an ``Origin`` header (it costs ~10 µs a request; a tile costs ~100).
"""

import re
from ipaddress import ip_address

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from geocloud.config import get_settings
from geocloud.serve.http import ALWAYS, CREDENTIAL_HEADERS, FORWARDED, HOST

DEFAULT_CACHE = b"private, no-cache"
HSTS = b"max-age=31536000"
_SELF = "default-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
CSP = (f"{_SELF}; script-src 'self'; worker-src 'self' blob:; child-src 'self' blob:; style-src 'self'; "
       "img-src 'self' data: blob:; connect-src 'self'").encode()
CORS_HEADERS = ["Authorization", "X-API-Key", "Accept", "Accept-Language", "Content-Type", "If-None-Match",
                "If-Modified-Since"]
CORS_EXPOSED = ["ETag", "Last-Modified", "Link", "Content-Crs", "Content-Disposition", "Retry-After",
                "WWW-Authenticate"]


def middleware() -> list[Middleware]:
    """The middleware of this module, outermost first (app.py puts them before the guard)."""
    return [Middleware(SharedHeaders)]


class SharedHeaders:
    def __init__(self, app):
        settings = get_settings()
        self.app = app
        self.cors = cors(app) or app
        self.proxies = TrustedProxies(settings.proxy_networks)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        app = self.cors if any(name == b"origin" for name, _ in scope["headers"]) else self.app
        https = believe_forwarded(scope, self.proxies)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = complete(list(message.get("headers", ())), https)
            await send(message)
        await app(scope, receive, send_with_headers)


def cors(app) -> CORSMiddleware | None:
    """``app`` behind GEOCLOUD_CORS_ORIGINS' CORS answers; None when it names no origin."""
    origins = get_settings().cors_origin_list
    return CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                          allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, allow_credentials=False,
                          max_age=600) if origins else None


def believe_forwarded(scope, proxies: "TrustedProxies") -> bool:
    """Take the client, scheme, host and prefix from a trusted proxy's headers into the scope (when
    the client is one of ``proxies``); whether the request came over HTTPS. Idempotent: the warm
    tile path (tiles/warm.py) asks it before SharedHeaders does, for the requests it leaves to them."""
    if proxies.trusts(scope.get("client")):
        _forwarded(scope, proxies)
    return scope.get("scheme") == "https"


def _forwarded(scope, proxies: "TrustedProxies") -> None:
    """The client, scheme, host and prefix the trusted proxy's headers name, into the scope."""
    headers = {}
    for name, value in scope["headers"]:
        if name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                    b"x-forwarded-prefix"):  # a repeated header counts as one comma-separated list
            key = name.decode()
            headers[key] = f"{headers[key]}, {value.decode('latin-1')}" if key in headers else value.decode("latin-1")
    fwd = _parse_forwarded(headers.get("forwarded", ""))
    chain = fwd["for"] or [_address(a) for a in _items(headers.get("x-forwarded-for", ""))]
    client = next((a for a in reversed(chain) if not proxies.named(a)), chain[0] if chain else None)
    if client:  # the port stays the proxy connection's: the guard remembers keys per connection
        scope["client"] = (client, scope["client"][1])
    proto = (fwd["proto"] or _items(headers.get("x-forwarded-proto", "")) or [None])[-1]
    if proto in ("http", "https"):
        scope["scheme"] = proto
    found = {}
    host = (fwd["host"] or _items(headers.get("x-forwarded-host", "")) or [None])[-1]
    if host and HOST.match(host):
        found["host"] = host
    prefix = (_items(headers.get("x-forwarded-prefix", "")) or [""])[-1].rstrip("/")
    if re.fullmatch(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*", prefix):
        found["prefix"] = prefix
    scope[FORWARDED] = found


class TrustedProxies:
    """GEOCLOUD_TRUSTED_PROXIES, with the verdict on each address remembered."""

    def __init__(self, networks):
        self.networks = networks
        self._known: dict[str, bool] = {}

    def trusts(self, client: tuple | None) -> bool:
        """Whether the connection's peer (an ASGI scope's ``client``, absent over a Unix socket) is
        a trusted proxy."""
        return bool(self.networks) and client is not None and self.named(client[0])

    def named(self, address: str) -> bool:
        known = self._known.get(address)
        if known is None:
            try:
                known = any(ip_address(address) in net for net in self.networks)
            except ValueError:
                known = False
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[address] = known
        return known


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_forwarded(value: str) -> dict[str, list[str]]:
    """RFC 7239 ``Forwarded``: each hop's ``for``, ``proto`` and ``host``, in order."""
    out: dict[str, list[str]] = {"for": [], "proto": [], "host": []}
    for hop in _items(value):
        for pair in hop.split(";"):
            name, _, val = pair.partition("=")
            name, val = name.strip().lower(), val.strip().strip('"')
            if name in out and val:
                out[name].append(_address(val) if name == "for" else val)
    return out


def _address(value: str) -> str:
    """The address of a ``for`` node: ``192.0.2.60``, ``192.0.2.60:4711``, ``[2001:db8::1]:4711``."""
    if value.startswith("["):
        return value[1:value.find("]")]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def complete(headers: list, https: bool) -> list:
    """``headers`` with the shared ones added (see above); the warm tile path stores its answers so."""
    cache = html = False
    vary = None
    for i, (name, value) in enumerate(headers):
        name = name.lower()
        if name == b"cache-control":
            cache = True
        elif name == b"vary":
            vary = i
        elif name == b"content-type":
            html = value.startswith(b"text/html")
    if vary is None:
        headers.append((b"vary", CREDENTIAL_HEADERS))
    elif headers[vary][1].strip() != b"*":
        headers[vary] = (b"vary", headers[vary][1] + b", " + CREDENTIAL_HEADERS)
    if not cache:
        headers.append((b"cache-control", DEFAULT_CACHE))
    headers += ALWAYS
    if https:
        headers.append((b"strict-transport-security", HSTS))
    if html:
        headers.append((b"content-security-policy", CSP))
        headers.append((b"x-frame-options", b"SAMEORIGIN"))
    return headers
