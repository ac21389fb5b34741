"""Optional OpenID Connect: bearer JWTs from the city's single sign-on.

Configured by GEOCLOUD_OIDC_ISSUER, GEOCLOUD_OIDC_AUDIENCE and GEOCLOUD_OIDC_JWKS (a JWKS file or
URL the administrator names; never one a caller names). The agency comes from the
GEOCLOUD_OIDC_AGENCY_CLAIM claim (default ``agency``) and the roles from GEOCLOUD_OIDC_ROLES_CLAIM
(default ``roles``). Tokens are checked for signature, issuer, audience and expiry, with
LEEWAY seconds for clock skew; anything else is refused.
"""

import json
import time
from functools import lru_cache
from pathlib import Path

import jwt
import psycopg

from geocloud.access.keys import MISS
from geocloud.access.principal import Principal
from geocloud.config import get_settings

LEEWAY = 30
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


def enabled() -> bool:
    s = get_settings()
    return bool(s.oidc_issuer and s.oidc_jwks)


@lru_cache
def jwks():
    source = get_settings().oidc_jwks
    if source.startswith(("http://", "https://")):
        return jwt.PyJWKClient(source, cache_keys=True)
    return jwt.PyJWKSet.from_dict(json.loads(Path(source).read_text(encoding="utf-8")))


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")


_seen: dict[str, tuple[float, Principal | None]] = {}
CACHE_SECONDS = 30.0


def cached(token: str):
    """A result remembered for this very token in the last CACHE_SECONDS (never past its expiry), or MISS."""
    hit = _seen.get(token)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS and (hit[1] is None or hit[1].expires > time.time()):
        return hit[1]
    return MISS


def verify(conn: psycopg.Connection, token: str) -> Principal | None:
    if (hit := cached(token)) is not MISS:
        return hit
    result = _verify(conn, token)
    if len(_seen) > 10_000:
        _seen.clear()
    _seen[token] = (time.monotonic(), result)
    return result


def signing_key(keys, token: str):
    """The key of ``keys`` (a PyJWKClient or a PyJWKSet) that signed ``token``, or None."""
    if isinstance(keys, jwt.PyJWKClient):
        return keys.get_signing_key_from_jwt(token).key
    kid = jwt.get_unverified_header(token).get("kid")
    return next((k.key for k in keys.keys if kid is None or k.key_id == kid), None)


def _verify(conn: psycopg.Connection, token: str) -> Principal | None:
    if not enabled():
        return None
    s = get_settings()
    try:
        key = signing_key(jwks(), token)
        if key is None:
            return None
        claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=s.oidc_audience, issuer=s.oidc_issuer,
                            leeway=LEEWAY, options={"require": ["exp", "iss", "sub"]})
    except (jwt.PyJWTError, ValueError, KeyError):
        return None
    return principal_from_claims(conn, claims, "jwt")


def principal_from_claims(conn: psycopg.Connection, claims: dict, kind: str) -> Principal | None:
    """The principal verified SSO claims name: the agency from GEOCLOUD_OIDC_AGENCY_CLAIM, the roles
    from GEOCLOUD_OIDC_ROLES_CLAIM. One mapping for bearer JWTs and the portal's sign-in alike. None
    for an agency geocloud does not know (it reads nothing beyond public layers: refuse it clearly)."""
    s = get_settings()
    agency = claims.get(s.oidc_agency_claim)
    roles = claims.get(s.oidc_roles_claim) or []
    roles = frozenset(r for r in ([roles] if isinstance(roles, str) else roles) if isinstance(r, str))
    row = conn.execute("SELECT city_agency FROM geocloud.agencies WHERE code = %s AND deleted_at IS NULL",
                       (agency,)).fetchone() if isinstance(agency, str) else None
    if row is None:
        return None
    return Principal(kind, claims["sub"], claims.get("name") or claims["sub"], agency,
                     next(iter(sorted(roles)), None), bool(row[0]), None, roles, float(claims["exp"]))
