"""Signing in to the portal: sessions kept in PostGIS behind the one guard, CSRF, the city's SSO
(a real OpenID Provider: tests/standins/oidc.js) and the account page's API keys."""

import uuid

import httpx
import psycopg
import pytest
from conftest import _admin, _drop, _url_for, load_city, start_server, stop_server
from psycopg import sql

from geocloud.access import sessions

COOKIE = "geocloud_session"


@pytest.fixture(scope="module")
def portal(template_db, tmp_path_factory):
    """The inspection sites (restricted to the fire department) loaded and served."""
    name = f"geocloud_sig_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    db_url = _url_for(name)
    data = tmp_path_factory.mktemp("signin-data")
    keys = load_city(db_url, data, tmp_path_factory.mktemp("signin-city"), ["inspection-sites"])
    proc, url = start_server(db_url, data)
    try:
        yield type("Portal", (), {"url": url, "db": db_url, "keys": keys})
    finally:
        stop_server(proc)
        _drop(name)


def session_for(db_url: str, agency="TCG-FIRE", roles=("inspector",)) -> tuple[str, str]:
    """A session made as the sign-in makes one: (cookie secret, CSRF token)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        secret = sessions.start(conn, "u-7", "稽查員林小華", agency, roles)
        return secret, sessions.find(conn, secret).csrf


def test_a_session_cookie_is_a_principal_and_a_bad_one_is_anonymous_and_cleared(portal):
    secret, _ = session_for(portal.db)
    items = "/collections/inspection_sites/items?f=json"
    signed_in = httpx.get(portal.url + items, cookies={COOKIE: secret})
    assert signed_in.status_code == 200 and signed_in.json()["features"]
    assert "set-cookie" not in signed_in.headers
    assert httpx.get(portal.url + items).status_code == 401  # the layer is the fire department's

    tampered = secret[:-2] + ("AA" if not secret.endswith("AA") else "BB")
    refused = httpx.get(portal.url + items, cookies={COOKIE: tampered})
    assert refused.status_code == 401
    cleared = refused.headers["set-cookie"]
    assert cleared.startswith(f"{COOKIE}=;") and "Max-Age=0" in cleared and "HttpOnly" in cleared

    with psycopg.connect(portal.db, autocommit=True) as conn:  # unused for longer than GEOCLOUD_SESSION_IDLE
        conn.execute("UPDATE geocloud.sessions SET seen_at = now() - interval '1 day' WHERE name = '稽查員林小華'")
    expired = httpx.get(portal.url + items, cookies={COOKIE: secret})
    assert expired.status_code == 401 and "Max-Age=0" in expired.headers["set-cookie"]


def test_a_cookie_alone_does_not_authenticate_a_state_changing_json_request(portal):
    secret, csrf = session_for(portal.db, "TCG-INFO", ("admin",))
    entry = {"title": {"zh-TW": "測試", "en": "Test"}, "access": {"level": "internal"}}
    put = f"{portal.url}/manage/layers/csrf_probe"
    forged = httpx.put(put, json=entry, cookies={COOKIE: secret})
    assert forged.status_code == 401  # the cookie counted for nothing: nothing registered
    with psycopg.connect(portal.db) as conn:
        assert conn.execute("SELECT count(*) FROM geocloud.registered_layers").fetchone()[0] == 0
    wrong = httpx.put(put, json=entry, cookies={COOKIE: secret}, headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 401
    foreign = httpx.put(put, json=entry, cookies={COOKIE: secret},
                        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert foreign.status_code == 401
    listed = httpx.get(f"{portal.url}/manage/layers", cookies={COOKIE: secret})
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    token = httpx.post(f"{portal.url}/auth/token", cookies={COOKIE: secret}, headers={"X-CSRF-Token": csrf})
    assert token.status_code == 403 and "session cannot issue" in token.json()["description"]
