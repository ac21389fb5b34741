"""Short-lived signed tokens for tile URLs in web pages, where no header can be sent.

An authenticated caller asks ``POST /auth/token`` for one; it carries the caller's agency, role
and (optionally narrower) layer scope, expires, and is signed with HMAC-SHA256 under a secret kept
in PostGIS, so every worker on every machine checks it the same way without a lookup.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time

import psycopg

from geocloud.access.principal import Principal

PREFIX = "gct_"
MAX_SECONDS = 24 * 3600
_secret: bytes | None = None


def secret_known() -> bool:
    return _secret is not None


def secret(conn: psycopg.Connection) -> bytes:
    global _secret
    if _secret is None:
        conn.execute("INSERT INTO geocloud.secrets (name, value) VALUES ('token-signing', %s) ON CONFLICT DO NOTHING",
                     (secrets.token_hex(32),))
        _secret = bytes.fromhex(conn.execute("SELECT value FROM geocloud.secrets WHERE name = 'token-signing'")
                                .fetchone()[0])
    return _secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue(conn: psycopg.Connection, principal: Principal, layers: frozenset | None, seconds: int) -> tuple[str, int]:
    expires = int(time.time()) + seconds
    body = {"kid": principal.id, "n": principal.name, "a": principal.agency, "r": principal.role,
            "c": principal.city_agency, "l": sorted(layers) if layers is not None else None, "exp": expires}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    signature = _b64(hmac.new(secret(conn), payload.encode(), hashlib.sha256).digest())
    return f"{PREFIX}{payload}.{signature}", expires


def verify(conn: psycopg.Connection | None, token: str) -> Principal | None:
    """The token's principal, or None. ``conn`` may be None once the signing secret is known."""
    if not token.startswith(PREFIX) or "." not in token or len(token) > 4096:
        return None
    payload, _, signature = token[len(PREFIX):].partition(".")
    expected = _b64(hmac.new(_secret or secret(conn), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if body.get("exp", 0) < time.time():
        return None
    return Principal("token", body.get("kid"), body.get("n"), body.get("a"), body.get("r"), bool(body.get("c")),
                     frozenset(body["l"]) if body.get("l") is not None else None)
