"""What a hostile review of the sign-in, access-request and management additions found, each on a
real server: a portal form is read in bounded memory (anyone may post to /signin and /signout), a
key id PostgreSQL cannot hold is a 404 and a review comment its jsonb cannot hold a 422 (not server
errors), and nothing changes on either refusal."""

import httpx
import psycopg
import pytest
from conftest import agency_server
from test_manage import call, csv_body
from test_registry import BIKES

from geocloud.access import sessions

WHO = {"admin": ("TCG-INFO", "admin"), "owner editor": ("TCG-TRANS", "editor")}


@pytest.fixture(scope="module")
def server(template_db, tmp_path_factory):
    data = tmp_path_factory.mktemp("review-data")
    keys = {who: (agency, f"{role}-{agency}", role) for who, (agency, role) in WHO.items()}
    with agency_server(template_db, data, keys) as (base, url, made):
        yield base, url, {who: {"X-API-Key": key} for who, key in made.items()}


def session_of(url: str, agency: str, role: str) -> tuple[str, str]:
    """(cookie secret, CSRF token) of a new portal session, as the SSO sign-in opens one."""
    with psycopg.connect(url, autocommit=True) as conn:
        secret = sessions.start(conn, "sso:reviewer", "reviewer", agency, [role])
        return secret, sessions.find(conn, secret).csrf


def test_portal_forms_are_read_in_bounded_memory(server):
    """Starlette's request.form() holds a field of any size: a 1 GB api_key posted to /signin by
    anyone was read whole before its token was checked. Now every portal form stops at 16 KiB."""
    base, _, _ = server
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.get("/signin").cookies["geocloud_signin"]
        huge = {"csrf": token, "api_key": "A" * 64 * 1024}
        for path in ("/signin", "/signout", "/account/keys", "/requests"):
            r = client.post(path, data=huge)
            assert r.status_code == 413 and "16384 bytes" in r.text, (path, r.status_code, r.text[:200])
        r = client.post("/signin", data={"csrf": token, **{f"f{i}": "x" for i in range(11)}})
        assert r.status_code == 400 and "more than 10 fields" in r.text, r.text[:200]
        r = client.post("/signin", data={"csrf": token, "api_key": "gck_nope"})  # a form in bounds still works
        assert r.status_code == 400 and "text/html" in r.headers["content-type"], r.text[:200]


def test_revoking_a_key_id_postgresql_cannot_hold_is_a_404(server):
    base, url, _ = server
    secret, csrf = session_of(url, "TCG-TRANS", "editor")
    r = httpx.post(f"{base}/account/keys/ab%00cd/revoke", data={"csrf": csrf},
                   cookies={"geocloud_session": secret}, timeout=30, follow_redirects=False)
    assert r.status_code == 404 and "no active key" in r.text, (r.status_code, r.text[:300])


def test_a_review_comment_with_nul_is_a_422_and_changes_nothing(server):
    base, _, keys = server
    editor, admin = keys["owner editor"], keys["admin"]
    entry = {**BIKES, "id": "bike_nul", "access": {"level": "public"}}
    assert call(base, "PUT", "/manage/layers/bike_nul", editor, json=entry).status_code == 201
    assert call(base, "POST", "/manage/layers/bike_nul/data", editor, content=csv_body(),
                media="text/csv").status_code == 200
    assert call(base, "POST", "/manage/layers/bike_nul/publish", editor).json()["state"] == "pending_review"
    r = call(base, "POST", "/manage/layers/bike_nul/review", admin, json={"decision": "reject", "comment": "no\x00"})
    assert r.status_code == 422 and r.json()["where"] == "comment" and "NUL" in r.text, r.text
    assert call(base, "GET", "/manage/layers/bike_nul", admin).json()["state"] == "pending_review"


def test_nobody_approves_their_own_access_request(server):
    """The GIS office's admins decide every layer's requests but read a restricted agency layer only
    when granted: an admin asked for the Transportation Bureau's layer and approved the request
    themselves. Now another decider must; the request waits, no grant is made."""
    base, url, keys = server
    editor, admin = keys["owner editor"], keys["admin"]
    entry = {**BIKES, "id": "bike_closed", "access": {"level": "restricted", "grants": [{"agency": "TCG-TRANS"}]}}
    assert call(base, "PUT", "/manage/layers/bike_closed", editor, json=entry).status_code == 201
    assert call(base, "POST", "/manage/layers/bike_closed/data", editor, content=csv_body(),
                media="text/csv").status_code == 200
    assert call(base, "POST", "/manage/layers/bike_closed/publish", editor).json()["state"] == "live"
    asked = call(base, "POST", "/manage/requests", admin, json={"layer": "bike_closed", "reason": "audit"})
    assert asked.status_code == 201, asked.text
    assert call(base, "GET", "/manage/requests", admin).json()["to_decide"] == []
    r = call(base, "POST", f"/manage/requests/{asked.json()['id']}/decision", admin, json={"decision": "approve"})
    assert r.status_code == 403 and "yourself" in r.text, r.text
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT state FROM geocloud.access_requests WHERE id = %s",
                            (asked.json()["id"],)).fetchone() == ("pending",)
        assert conn.execute("SELECT count(*) FROM geocloud.layer_grants").fetchone() == (0,)
    assert [r["id"] for r in call(base, "GET", "/manage/requests", editor).json()["to_decide"]] == [asked.json()["id"]]


def test_a_key_scoped_to_some_layers_does_not_read_the_update_schedule(server):
    """/admin/updates lists every layer with its last run's warnings: an admin's key scoped to one
    layer reached it all (the audit already refuses such a key the whole trail)."""
    from geocloud.access import keys as api_keys

    base, url, keys = server
    with psycopg.connect(url, autocommit=True) as conn:
        scoped = api_keys.create(conn, "TCG-INFO", "scoped-admin", "admin", ["bike_nul"], None)
    assert httpx.get(f"{base}/admin/updates", headers=keys["admin"], timeout=30).status_code == 200
    r = httpx.get(f"{base}/admin/updates", headers={"X-API-Key": scoped}, timeout=30)
    assert r.status_code == 403 and "scoped to some layers" in r.text, r.text[:300]


def test_json_nested_deeper_than_python_reads_is_a_400(server):
    """A 50 KB body of '[' (well under the 1 MiB a JSON body may be) made json.loads raise
    RecursionError, which nothing caught: a server error on every JSON route of /manage."""
    base, _, keys = server
    deep = b"[" * 50_000
    entry = {**BIKES, "id": "bike_deep", "access": {"level": "public"}}
    assert call(base, "PUT", "/manage/layers/bike_deep", keys["owner editor"], json=entry).status_code == 201
    for path in ("/manage/requests", "/manage/layers/bike_deep/review"):
        r = call(base, "POST", path, keys["admin"], content=deep, media="application/json")
        assert r.status_code == 400 and "not JSON" in r.json()["description"], (path, r.status_code, r.text[:200])
    r = call(base, "PUT", "/manage/layers/bike_deeper", keys["owner editor"], content=deep, media="application/json")
    assert r.status_code == 400 and "not JSON" in r.json()["description"], r.text[:200]
