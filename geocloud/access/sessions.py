"""Portal sessions: a browser signed in with the city's SSO (or with an API key), kept in PostGIS.

The cookie carries a random secret; the table keeps only its SHA-256 (a 256-bit random secret
needs no slow hash), so a copy of the table signs nobody in, and any worker serves any session.
A session ends at the first of: sign-out (its row is deleted), GEOCLOUD_SESSION_IDLE seconds
unused, GEOCLOUD_SESSION_MAX seconds after sign-in, its agency deleted, or, for a session opened
with an API key, that key revoked or expired. Using a session moves ``seen_at`` at most once every
SEEN_EVERY seconds, so most requests only read.

Each session has its own CSRF token: forms repeat it in a field, and scripts in the
``X-CSRF-Token`` header (serve/session.py checks both).
"""

import hmac
import re
import secrets
from dataclasses import dataclass

import psycopg

from geocloud.access import keys
from geocloud.access.principal import Principal
from geocloud.config import get_settings

SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
SEEN_EVERY = 60
FLOW_SECONDS = 600  # an SSO sign-in must come back within ten minutes


@dataclass(frozen=True)
class Session:
    principal: Principal   # kind "session"; id is the session's public id
    csrf: str
    subject: str           # the SSO's `sub`, or key:<id>
    key_id: str | None     # the API key a session was opened with


def start(conn: psycopg.Connection, subject: str, name: str, agency: str, roles, key_id: str | None = None) -> str:
    """A new session; returns the secret for the cookie (shown to nobody else, stored hashed)."""
    s = get_settings()
    conn.execute("DELETE FROM geocloud.sessions WHERE expires_at < now() OR seen_at < now() - make_interval(secs => %s)",
                 (s.session_idle,))  # housekeeping: sessions nobody can use any more
    secret = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO geocloud.sessions (secret_hash, id, subject, name, agency, roles, key_id, csrf, expires_at) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))",
                 (keys.fingerprint(secret), secrets.token_hex(8), subject, name, agency, sorted(roles), key_id,
                  secrets.token_urlsafe(32), s.session_max))
    return secret


def find(conn: psycopg.Connection, secret: str) -> Session | None:
    """The live session the cookie's ``secret`` names, or None (malformed, unknown, ended, expired)."""
    if not SECRET.match(secret or ""):
        return None
    row = conn.execute(
        "SELECT s.id, s.subject, s.name, s.agency, s.roles, s.key_id, s.csrf, a.city_agency, k.layers, "
        "extract(epoch FROM least(s.expires_at, k.expires_at, k.grace_until))::float8, "
        "s.seen_at < now() - make_interval(secs => %s) "
        "FROM geocloud.sessions s JOIN geocloud.agencies a ON a.code = s.agency AND a.deleted_at IS NULL "
        "LEFT JOIN geocloud.api_keys k ON k.id = s.key_id "
        f"WHERE s.secret_hash = %s AND s.expires_at > now() AND (s.key_id IS NULL OR {keys.USABLE}) "
        "AND s.seen_at > now() - make_interval(secs => %s)",
        (SEEN_EVERY, keys.fingerprint(secret), get_settings().session_idle)).fetchone()
    if row is None:
        return None
    if row[10]:
        conn.execute("UPDATE geocloud.sessions SET seen_at = now() WHERE id = %s", (row[0],))
    roles = frozenset(row[4])
    principal = Principal("session", row[0], row[2], row[3], next(iter(sorted(roles)), None), bool(row[7]),
                          frozenset(row[8]) if row[8] is not None else None, roles, row[9])
    return Session(principal, row[6], row[1], row[5])


def end(conn: psycopg.Connection, secret: str) -> bool:
    """Sign-out: the session is gone for every worker at once. False if there was none."""
    return conn.execute("DELETE FROM geocloud.sessions WHERE secret_hash = %s RETURNING id",
                        (keys.fingerprint(secret or ""),)).fetchone() is not None


def csrf_matches(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), presented.encode())


def begin_flow(conn: psycopg.Connection, state: str, nonce: str, verifier: str) -> None:
    """Remember an SSO sign-in under way until its callback (or FLOW_SECONDS)."""
    conn.execute("DELETE FROM geocloud.signin_flows WHERE created_at < now() - make_interval(secs => %s)",
                 (FLOW_SECONDS,))
    conn.execute("INSERT INTO geocloud.signin_flows (state_hash, nonce, verifier) VALUES (%s, %s, %s)",
                 (keys.fingerprint(state), nonce, verifier))


def take_flow(conn: psycopg.Connection, state: str) -> tuple[str, str] | None:
    """(nonce, PKCE verifier) of the sign-in ``state`` names, once; None if unknown, used or stale."""
    row = conn.execute("DELETE FROM geocloud.signin_flows WHERE state_hash = %s "
                       "RETURNING nonce, verifier, created_at > now() - make_interval(secs => %s)",
                       (keys.fingerprint(state or ""), FLOW_SECONDS)).fetchone()
    return (row[0], row[1]) if row and row[2] else None
