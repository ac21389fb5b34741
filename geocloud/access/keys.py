"""API keys: created once (the secret is shown once), stored as a slow hash, revoked or rotated.

A key reads ``gck_<id>_<secret>``. The id finds the row; the secret is checked with scrypt and a
constant-time comparison. An unknown id costs the same scrypt work as a known one, so timing does
not reveal which ids exist. Verified keys are remembered per process for CACHE_SECONDS, which is
therefore the longest a revoked key can still be used on a worker that had just verified it. After
that, a key whose secret this worker has verified is checked again for its state only (revoked,
expired, past its grace, agency deleted), without repeating scrypt.

The state of each key id is remembered the same way (``active``), so that a token a key issued
stops within the same window when the key is revoked or expires.
"""

import hashlib
import hmac
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg

from geocloud.access.principal import Principal
from geocloud.errors import ConfigError, NotFound

PREFIX = "gck_"
KEY = re.compile(r"^gck_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
KEY_ID = re.compile(r"^[A-Za-z0-9]{12}$")  # a key's public id, the part after gck_
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
CACHE_SECONDS = 25.0  # plus the serving guard's 5 s per connection: a revoked key works 30 s at most
DUMMY_SALT = b"geocloud-no-such-key-salt"
_cache: dict[bytes, tuple[float, Principal | None]] = {}
_state: dict[str, tuple[float, bool]] = {}   # key id -> (when read, usable)
_lock = threading.Lock()


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **SCRYPT)


def create(conn: psycopg.Connection, agency: str, principal: str, role: str, layers: list[str] | None,
           expires_at: datetime | None) -> str:
    row = conn.execute("SELECT 1 FROM geocloud.agencies WHERE code = %s AND deleted_at IS NULL", (agency,)).fetchone()
    if row is None:
        raise NotFound(f"unknown agency {agency!r}", fix="add it with `geocloud agencies add` (see `geocloud agencies list`)")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    conn.execute(
        "INSERT INTO geocloud.api_keys (id, agency, principal, role, layers, salt, hash, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (key_id, agency, principal, role, layers, salt, _hash(secret, salt), expires_at))
    return f"gck_{key_id}_{secret}"


def revoke(conn: psycopg.Connection, key_id: str) -> None:
    done = conn.execute("UPDATE geocloud.api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL "
                        "RETURNING id", (key_id,)).fetchone()
    if done is None:
        raise NotFound(f"no active key {key_id!r}", fix="see `geocloud keys list`")


def forget(key_id: str) -> None:
    """Drop what this worker remembers of key ``key_id``, just revoked here (the account page):
    refused here at once, by other workers within CACHE_SECONDS."""
    with _lock:
        for digest in [d for d, (_, p) in _cache.items() if p is not None and p.id == key_id]:
            del _cache[digest]
    _state.pop(key_id, None)


def rotate(conn: psycopg.Connection, key_id: str, grace: timedelta) -> str:
    row = conn.execute("SELECT agency, principal, role, layers, expires_at FROM geocloud.api_keys "
                       "WHERE id = %s AND revoked_at IS NULL", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no active key {key_id!r}", fix="see `geocloud keys list`")
    new = create(conn, row[0], row[1], row[2], row[3], row[4])
    conn.execute("UPDATE geocloud.api_keys SET rotated_to = %s, grace_until = now() + %s WHERE id = %s",
                 (KEY.match(new).group(1), grace, key_id))
    return new


MISS = object()
USABLE = ("(k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) "
          "AND (k.grace_until IS NULL OR k.grace_until > now()) AND a.deleted_at IS NULL)")


def _remember_state(key_id: str, usable: bool, now: float) -> None:
    if len(_state) > 10_000:
        _state.clear()
    _state[key_id] = (now, usable)


def active(conn: psycopg.Connection | None, key_id: str):
    """Whether key ``key_id`` may still be used (not revoked, expired, past its grace or of a deleted
    agency), as read in the last CACHE_SECONDS; MISS when that needs the database and ``conn`` is None."""
    hit = _state.get(key_id)  # one dict read: atomic, no lock needed
    now = time.monotonic()
    if hit and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    if conn is None:
        return MISS
    row = conn.execute(f"SELECT {USABLE} FROM geocloud.api_keys k JOIN geocloud.agencies a ON a.code = k.agency "
                       "WHERE k.id = %s", (key_id,)).fetchone()
    usable = bool(row and row[0])
    _remember_state(key_id, usable, now)
    return usable


def fingerprint(presented: str) -> bytes:
    """What a credential is remembered by: its digest, never the secret itself."""
    return hashlib.sha256(presented.encode()).digest()


def cached(presented: str):
    """The principal (or None) remembered for a key verified in the last CACHE_SECONDS, else MISS."""
    hit = _cache.get(fingerprint(presented))  # one dict read: atomic, no lock needed
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    return MISS


def verify(conn: psycopg.Connection, presented: str) -> Principal | None:
    """The principal of a valid key, or None (malformed, unknown, wrong, expired or revoked)."""
    if (hit := cached(presented)) is not MISS:
        return hit
    digest = fingerprint(presented)
    now = time.monotonic()
    m = KEY.match(presented)
    row = conn.execute(
        f"SELECT k.salt, k.hash, k.agency, k.principal, k.role, k.layers, a.city_agency, {USABLE}, "
        "extract(epoch FROM least(k.expires_at, k.grace_until))::float8 "
        "FROM geocloud.api_keys k JOIN geocloud.agencies a ON a.code = k.agency WHERE k.id = %s",
        (m.group(1) if m else "",)).fetchone()
    with _lock:
        known = _cache.get(digest)
    if known is not None and known[1] is not None and row is not None:
        good = row[7]  # this very secret passed scrypt here before: only the key's state can have changed
    else:
        secret = m.group(2) if m else presented
        hashed = _hash(secret, row[0] if row else DUMMY_SALT)
        good = row is not None and hmac.compare_digest(hashed, bytes(row[1])) and row[7]
    principal = Principal("key", m.group(1), row[3], row[2], row[4], row[6],
                          frozenset(row[5]) if row[5] is not None else None,
                          expires=row[8] if row[8] is not None else float("inf")) if good else None
    if row is not None:
        _remember_state(m.group(1), bool(row[7]), now)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now, principal)
    return principal


def listing(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT id, agency, principal, role, layers, created_at, expires_at, revoked_at, rotated_to, grace_until "
        "FROM geocloud.api_keys ORDER BY created_at").fetchall()


def parse_expiry(text: str | None) -> datetime | None:
    """``30d``, ``12h`` or an ISO date."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+)([dh])", text)
    if m:
        unit = timedelta(days=1) if m.group(2) == "d" else timedelta(hours=1)
        return datetime.now(timezone.utc) + int(m.group(1)) * unit
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--expires {text!r} is not a duration or a date", fix="write e.g. 90d, 12h or 2027-06-30") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_new_expiry(text: str | None) -> datetime | None:
    """A new key's ``--expires``: as ``parse_expiry``, and refused when already past (such a key
    would be born dead, which is always a typo)."""
    value = parse_expiry(text)
    if value is not None and value <= datetime.now(timezone.utc):
        raise ConfigError(f"{text!r} ({value:%Y-%m-%d %H:%M} UTC) is in the past: the key would never work",
                          where="--expires", fix="give a future date (e.g. 2027-06-30) or a duration (e.g. 90d), "
                                                 "or leave --expires out for a key that does not expire")
    return value
