"""Short-lived signed tokens for tile URLs in web pages, where no header can be sent.

An authenticated caller asks ``POST /auth/token`` for one; it carries the caller's agency, role
and (optionally narrower) layer scope, expires, and is signed with HMAC-SHA256 under a secret kept
in PostGIS, so every worker on every machine checks it the same way without a lookup.

A token never outlives what issued it: its expiry is capped at the key's (or the JWT's), and a
token a key issued is refused as soon as the key is: its key id is checked against the key-state
cache API keys use (``keys.active``), so revoking or expiring the key stops its tokens within the
same window as the key itself (keys.CACHE_SECONDS), at the cost of one dict read a request.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time

import psycopg

from geocloud.access import keys
from geocloud.access.principal import Principal

PREFIX = "gct_"
MAX_SECONDS = 24 * 3600
_secret: bytes | None = None


def secret_known() -> bool:
    return _secret is not None


def secret(conn: psycopg.Connection) -> bytes:
    global _secret
    if _secret is None:
        query = "SELECT value FROM geocloud.secrets WHERE name = 'token-signing'"
        row = conn.execute(query).fetchone()
        if row is None:  # the first token ever: made on the primary (a read replica takes no INSERT)
            conn.execute("INSERT INTO geocloud.secrets (name, value) VALUES ('token-signing', %s) "
                         "ON CONFLICT DO NOTHING", (secrets.token_hex(32),))
            row = conn.execute(query).fetchone()
        _secret = bytes.fromhex(row[0])
    return _secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue(conn: psycopg.Connection, principal: Principal, layers: frozenset | None, seconds: int) -> tuple[str, int]:
    """A token for ``principal`` (a key or a JWT) valid ``seconds``, or less: never past the
    principal's own expiry."""
    if principal.kind not in ("key", "jwt"):
        raise ValueError(f"tokens are issued to API keys and JWTs, not to a {principal.kind}")
    expires = int(min(time.time() + seconds, principal.expires))
    body = {"kid": principal.id, "s": principal.kind, "n": principal.name, "a": principal.agency,
            "r": principal.role, "c": principal.city_agency, "l": sorted(layers) if layers is not None else None,
            "exp": expires}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    signature = _b64(hmac.new(secret(conn), payload.encode(), hashlib.sha256).digest())
    return f"{PREFIX}{payload}.{signature}", expires


def verify(conn: psycopg.Connection | None, token: str):
    """The token's principal, or None. ``conn`` may be None once the signing secret is known; then
    keys.MISS says the issuing key's state must be read from the database."""
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
    if body.get("s", "key") == "key":  # a token older than "s" counts as a key's (a JWT's then fails: no such key)
        usable = keys.active(conn, str(body.get("kid")))
        if usable is keys.MISS:
            return keys.MISS
        if not usable:  # revoked, expired, past its grace, agency deleted
            return None
    return Principal("token", body.get("kid"), body.get("n"), body.get("a"), body.get("r"), bool(body.get("c")),
                     frozenset(body["l"]) if body.get("l") is not None else None, expires=float(body["exp"]))
