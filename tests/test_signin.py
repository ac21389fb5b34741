"""Signing in to the portal: sessions kept in PostGIS behind the one guard, CSRF, the city's SSO
(a real OpenID Provider: tests/standins/oidc.mjs, driven by Debian's chromium through Playwright)
and the account page's API keys."""

import shutil

import httpx
import psycopg
import pytest
from conftest import agency_server, free_port, load_city, serious_violations
from playwright.sync_api import sync_playwright
from standins.oidc import OpenIDProvider, settings
from test_viewer import CHROMIUM, FLAGS

from geocloud.access import sessions

COOKIE = "geocloud_session"
ITEMS = "/collections/inspection_sites/items?f=json"  # restricted to the fire department
ACCOUNTS = {"wang": {"name": "稽查員王小明", "agency": "TCG-FIRE", "roles": ["inspector", "analyst"]}}


@pytest.fixture(scope="module")
def portal(template_db, tmp_path_factory):
    """A server with the SSO stand-in as the city's single sign-on, and the inspection sites
    (restricted to the fire department) loaded while it serves."""
    data = tmp_path_factory.mktemp("signin-data")
    sso_port = free_port()
    env = {**settings(sso_port), "GEOCLOUD_TRUSTED_PROXIES": "127.0.0.1"}
    with agency_server(template_db, data, {}, env) as (url, db_url, _):
        keys = load_city(db_url, data, tmp_path_factory.mktemp("signin-city"), ["inspection-sites"])
        provider = OpenIDProvider(sso_port, url + "/signin/callback", ACCOUNTS, data / "sso.log")
        try:
            yield type("Portal", (), {"url": url, "db": db_url, "keys": keys})
        finally:
            provider.stop()


def session_for(db_url: str, agency="TCG-FIRE", roles=("inspector",)) -> tuple[str, str]:
    """A session made as the sign-in makes one: (cookie secret, CSRF token)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        secret = sessions.start(conn, "u-7", "稽查員林小華", agency, roles)
        return secret, sessions.find(conn, secret).csrf


def count(db_url: str, query: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query).fetchone()[0]


def test_a_session_cookie_is_a_principal_and_a_bad_one_is_anonymous_and_cleared(portal):
    secret, _ = session_for(portal.db)
    signed_in = httpx.get(portal.url + ITEMS, cookies={COOKIE: secret})
    assert signed_in.status_code == 200 and signed_in.json()["features"]
    assert "set-cookie" not in signed_in.headers
    assert httpx.get(portal.url + ITEMS).status_code == 401

    tampered = secret[:-2] + ("AA" if not secret.endswith("AA") else "BB")
    refused = httpx.get(portal.url + ITEMS, cookies={COOKIE: tampered})
    assert refused.status_code == 401
    cleared = refused.headers["set-cookie"]
    assert cleared.startswith(f"{COOKIE}=;") and "Max-Age=0" in cleared and "HttpOnly" in cleared
    page = httpx.get(portal.url + "/signin", cookies={COOKIE: tampered})
    assert 'id="session-refused"' in page.text and "Max-Age=0" in page.headers["set-cookie"]
    account = httpx.get(portal.url + "/account", cookies={COOKIE: tampered})
    assert account.status_code == 303 and account.headers["location"].endswith("/signin?expired=1")

    with psycopg.connect(portal.db, autocommit=True) as conn:  # unused for longer than GEOCLOUD_SESSION_IDLE
        conn.execute("UPDATE geocloud.sessions SET seen_at = now() - interval '1 day' WHERE name = '稽查員林小華'")
    expired = httpx.get(portal.url + ITEMS, cookies={COOKIE: secret})
    assert expired.status_code == 401 and "Max-Age=0" in expired.headers["set-cookie"]
    secret, _ = session_for(portal.db)
    with psycopg.connect(portal.db, autocommit=True) as conn:  # past GEOCLOUD_SESSION_MAX, however busy
        conn.execute("UPDATE geocloud.sessions SET expires_at = now() - interval '1 second' WHERE seen_at > now() - "
                     "interval '1 minute'")
    assert httpx.get(portal.url + ITEMS, cookies={COOKIE: secret}).status_code == 401


def test_a_cookie_alone_does_not_authenticate_a_state_changing_json_request(portal):
    secret, csrf = session_for(portal.db, "TCG-INFO", ("admin",))
    entry = {"title": {"zh-TW": "測試", "en": "Test"}, "access": {"level": "internal"}}
    put = f"{portal.url}/manage/layers/csrf_probe"
    assert httpx.put(put, json=entry, cookies={COOKIE: secret}).status_code == 401  # the cookie counted for nothing
    assert httpx.put(put, json=entry, cookies={COOKIE: secret},
                     headers={"X-CSRF-Token": csrf[:-1] + "x"}).status_code == 401
    assert httpx.put(put, json=entry, cookies={COOKIE: secret},
                     headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}).status_code == 401
    assert count(portal.db, "SELECT count(*) FROM geocloud.registered_layers") == 0
    listed = httpx.get(f"{portal.url}/manage/layers", cookies={COOKIE: secret})
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    token = httpx.post(f"{portal.url}/auth/token", cookies={COOKIE: secret}, headers={"X-CSRF-Token": csrf})
    assert token.status_code == 403 and "session cannot issue" in token.json()["description"]


def test_an_api_key_signs_in_as_the_fallback(portal):
    with httpx.Client(base_url=portal.url) as client:
        form = client.get("/signin")
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        assert client.post("/signin", data={"csrf": "forged", "api_key": portal.keys["fire"]}).status_code == 403
        wrong = client.post("/signin", data={"csrf": token, "api_key": portal.keys["revoked"]})
        assert wrong.status_code == 400 and 'id="signin-error"' in wrong.text and COOKIE not in client.cookies
        done = client.post("/signin", data={"csrf": token, "api_key": portal.keys["fire"]})
        assert done.status_code == 303 and done.headers["location"].endswith("/account")
        assert "Secure" not in done.headers["set-cookie"]
        behind_https = httpx.post(portal.url + "/signin", data={"csrf": token, "api_key": portal.keys["fire"]},
                                  cookies={"geocloud_signin": token},
                                  headers={"X-Forwarded-Proto": "https"})  # as the trusted proxy says
        secure = behind_https.headers["set-cookie"]
        assert all(f in secure for f in ("; Secure", "HttpOnly", "SameSite=Lax", "Path=/")), secure
        account = client.get("/account")
        assert "TCG-FIRE" in account.text and "gck_" in account.text and 'id="create-key"' not in account.text
        assert client.get(ITEMS).status_code == 200


def test_sign_in_with_the_sso_keys_and_sign_out_in_chromium(portal):
    if not shutil.which("chromium"):
        pytest.fail("chromium missing: scripts/dev test installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(bypass_csp=True).new_page()
        page.goto(portal.url + "/signin?lang=en")
        assert serious_violations(page) == []
        page.click("#sso")  # off to the provider's login form
        page.fill("input[name=login]", "wang")
        page.fill("input[name=password]", "any")
        with page.expect_response(lambda r: r.url.endswith("/account")) as landed:
            page.click("button[type=submit]")
        assert landed.value.headers["cache-control"] == "private, no-store"
        assert "TCG-FIRE" in page.inner_text("#agency") and page.inner_text("#roles") == "analyst, inspector"
        assert serious_violations(page) == []
        cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
        old = cookie["value"]

        # a form without the session's CSRF token (another site's) is refused and changes nothing
        made = "SELECT count(*) FROM geocloud.api_keys WHERE subject = 'wang'"
        forged = httpx.post(portal.url + "/account/keys", data={"role": "inspector", "days": "90"},
                            cookies={COOKIE: old})
        assert forged.status_code == 403 and count(portal.db, made) == 0

        page.select_option("select[name=role]", "inspector")
        page.click("#create-key")
        key = page.input_value("#new-key")
        assert key.startswith("gck_") and count(portal.db, made) == 1
        items = httpx.get(portal.url + ITEMS, headers={"X-API-Key": key})
        assert items.status_code == 200 and items.json()["features"]
        page.goto(portal.url + "/account")
        assert key not in page.content() and key[:16] in page.content()  # shown once; then its prefix only

        page.click(f"tr[data-key='{key[4:16]}'] button")
        page.wait_for_url(portal.url + "/account")
        assert httpx.get(portal.url + ITEMS, headers={"X-API-Key": key}).status_code == 401
        assert "revoked" in page.inner_text(f"tr[data-key='{key[4:16]}']")

        page.click("#signout")
        page.wait_for_selector("#signed-out")
        assert not any(c["name"] == COOKIE for c in page.context.cookies())
        replayed = httpx.get(portal.url + "/account", cookies={COOKIE: old})
        assert replayed.status_code == 303 and httpx.get(portal.url + ITEMS, cookies={COOKIE: old}).status_code == 401
        audited = "SELECT array_agg(action ORDER BY id) FROM geocloud.audit WHERE principal = '稽查員王小明@TCG-FIRE'"
        with psycopg.connect(portal.db) as conn:
            assert conn.execute(audited).fetchone()[0] == ["signed-in", "key-created", "key-revoked", "signed-out"]

        # the provider remembers wang: a sign-in started now comes straight back; spoil it meanwhile
        for spoil, why in (("nonce = 'another'", "nonce"), ("verifier = repeat('x', 64)", "refused the sign-in code")):
            started = httpx.get(portal.url + "/signin/sso")
            assert started.status_code == 303
            page.context.add_cookies([{"name": "geocloud_state", "value": started.cookies["geocloud_state"],
                                       "url": portal.url + "/signin/callback"}])
            with psycopg.connect(portal.db, autocommit=True) as conn:
                conn.execute(f"UPDATE geocloud.signin_flows SET {spoil}")
            with page.expect_response(lambda r: "/signin/callback" in r.url) as back:
                page.goto(started.headers["location"])
            assert back.value.status == 400 and why in page.inner_text("#signin-error")
            assert not any(c["name"] == COOKIE for c in page.context.cookies())
        browser.close()

    state = httpx.get(portal.url + "/signin/callback?code=abc&state=mine", cookies={"geocloud_state": "theirs"})
    assert state.status_code == 400 and "state does not match" in state.text and COOKIE not in state.headers.get(
        "set-cookie", "")
