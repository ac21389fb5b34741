"""Signing in to the portal with the city's single sign-on: the OpenID Connect authorization-code
flow with PKCE (S256), as a confidential client (or a public one without a secret).

authlib's OAuth2 client builds the authorization URL (state, nonce, the PKCE challenge) and
exchanges the code (with the PKCE verifier and the client's credentials); pyjwt checks the ID
token exactly as ``oidc`` checks bearer JWTs (signature by the SSO's keys, issuer, audience = our
client id, expiry) plus its nonce, and ``oidc.principal_from_claims`` maps its claims to agency and
roles, the one mapping bearer tokens use too. Only GEOCLOUD_OIDC_ISSUER's discovery document is
ever fetched: no URL a caller names.
"""

import hmac
import time
from functools import lru_cache

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from geocloud.access import oidc
from geocloud.config import get_settings

TIMEOUT = 10.0
DISCOVERY_SECONDS = 3600


class SignInRefused(Exception):
    """The SSO's answer cannot sign anyone in; the message says why, for the page."""


def enabled() -> bool:
    s = get_settings()
    return bool(s.oidc_issuer and s.oidc_client_id)


def redirect_uri(reached: str) -> str:
    """Where the SSO sends the browser back: GEOCLOUD_OIDC_REDIRECT_BASE, else the portal's URL as
    this browser ``reached`` it (serve/http.base_url: a Host the settings allow, else the public URL)."""
    return (get_settings().oidc_redirect_base or reached).rstrip("/") + "/signin/callback"


@lru_cache
def _discovery(hour: int) -> dict:
    issuer = get_settings().oidc_issuer.rstrip("/")
    try:
        meta = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SignInRefused(f"the sign-on service at {issuer} did not answer its discovery document ({exc})") from None
    if meta.get("issuer", "").rstrip("/") != issuer:
        raise SignInRefused(f"the sign-on service names itself {meta.get('issuer')!r}, not {issuer!r}")
    return meta


def discovery() -> dict:
    """The SSO's OpenID configuration, re-read every DISCOVERY_SECONDS."""
    return _discovery(int(time.time() // DISCOVERY_SECONDS))


def _client(reached: str) -> OAuth2Client:
    s = get_settings()
    return OAuth2Client(s.oidc_client_id, s.oidc_client_secret, scope=s.oidc_scopes, redirect_uri=redirect_uri(reached),
                        code_challenge_method="S256", timeout=TIMEOUT,
                        token_endpoint_auth_method="client_secret_basic" if s.oidc_client_secret else "none")


def authorization(reached: str) -> tuple[str, str, str, str]:
    """(URL to send the browser to, state, nonce, PKCE verifier) of a new sign-in."""
    state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
    with _client(reached) as client:
        url, _ = client.create_authorization_url(discovery()["authorization_endpoint"], state=state, nonce=nonce,
                                                 code_verifier=verifier)
    return url, state, nonce, verifier


def claims(reached: str, code: str, nonce: str, verifier: str) -> dict:
    """The verified ID token claims the authorization ``code`` is exchanged for."""
    meta = discovery()
    try:
        with _client(reached) as client:
            answer = client.fetch_token(meta["token_endpoint"], grant_type="authorization_code", code=code,
                                        code_verifier=verifier)
    except (OAuthError, httpx.HTTPError, ValueError) as exc:
        raise SignInRefused(f"the sign-on service refused the sign-in code ({exc})") from None
    id_token = answer.get("id_token")
    if not id_token:
        raise SignInRefused("the sign-on service sent no ID token (is 'openid' among GEOCLOUD_OIDC_SCOPES?)")
    s = get_settings()
    try:
        key = oidc.signing_key(oidc.jwks() if s.oidc_jwks else _jwks(meta["jwks_uri"]), id_token)
        found = jwt.decode(id_token, key, algorithms=oidc.ALGORITHMS, audience=s.oidc_client_id,
                           issuer=meta["issuer"], leeway=oidc.LEEWAY,
                           options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise SignInRefused(f"the ID token is not valid ({exc})") from None
    if not hmac.compare_digest(str(found["nonce"]).encode(), nonce.encode()):
        raise SignInRefused("the ID token's nonce is not this sign-in's: start again")
    return found


@lru_cache
def _jwks(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, timeout=int(TIMEOUT))
