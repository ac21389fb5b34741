"""Access requests on a real server over a database of its own: a city principal asks for a
restricted layer, the owning agency's editor approves it with an expiry, the requester reads the
layer over OGC API and tiles with their key until the grant expires, then not; a rejection with its
reason; who may not decide changes nothing; every decision audited. And the update procedure at a
glance (``geocloud layers due``), its dates held by recorded runs."""

import json
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from conftest import agency_server, serious_violations
from test_manage import SECRET, call, csv_body
from test_registry import STATIONS, ids, tile_of
from typer.testing import CliRunner

from geocloud.catalog import get_catalog
from geocloud.cli import app as cli_app
from geocloud.config import get_settings

WHO = {"admin": ("TCG-INFO", "admin"), "owner editor": ("TCG-TRANS", "editor"),
       "other editor": ("TCG-FIRE", "editor"), "requester": ("TCG-FIRE", "analyst"),
       "external": ("MOI-LAND", "analyst")}
ITEMS = "/collections/trans_secret/items?f=json"
TILE = f"/collections/trans_secret/tiles/WebMercatorQuad/{tile_of(*STATIONS[0][2:4])}"


@pytest.fixture(scope="module")
def server(template_db, tmp_path_factory):
    """The Transportation Bureau's restricted layer, loaded and live, and a key per role."""
    data = tmp_path_factory.mktemp("requests-data")
    keys = {who: (agency, f"{role}-{agency}", role) for who, (agency, role) in WHO.items()}
    with agency_server(template_db, data, keys) as (base, url, made):
        keys = {"anonymous": {}, **{who: {"X-API-Key": key} for who, key in made.items()}}
        admin = keys["admin"]
        assert call(base, "PUT", "/manage/layers/trans_secret?owner=TCG-TRANS", admin, json=SECRET).status_code == 201
        loaded = call(base, "POST", "/manage/layers/trans_secret/data?format=csv", admin, content=csv_body())
        assert loaded.status_code == 200, loaded.text
        assert call(base, "POST", "/manage/layers/trans_secret/publish", admin).json()["state"] == "live"
        yield base, url, keys


def requests_state(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return tuple(conn.execute(q).fetchall() for q in (
            "SELECT id, state, decided_by, decision_reason, expires_at FROM geocloud.access_requests ORDER BY id",
            "SELECT id, layer, agency, roles, expires_at FROM geocloud.layer_grants ORDER BY id",
            "SELECT count(*) FROM geocloud.registry_events"))


def audited(url: str, action: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        return [{"principal": p, "agency": a, "layer": layer, **d} for p, a, layer, d in conn.execute(
            "SELECT principal, agency, layer, detail FROM geocloud.audit WHERE action = %s ORDER BY id",
            (action,)).fetchall()]


def until(check, within: float, what: str):
    deadline = time.monotonic() + within
    while not (answer := check()):
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.2)
    return answer


def test_request_approved_with_an_expiry_reads_until_it_expires(server):
    base, url, keys = server
    requester = keys["requester"]
    assert httpx.get(base + ITEMS, headers=requester, timeout=30).status_code == 404
    assert call(base, "GET", "/manage/requests", keys["anonymous"]).status_code == 401
    ask = {"layer": "trans_secret", "reason": "消防安檢需要自行車站位置"}
    assert call(base, "POST", "/manage/requests", keys["anonymous"], json=ask).status_code == 401
    # a request tells nothing of the catalog: an id no layer has is taken exactly like a hidden layer's
    answers = [call(base, "POST", "/manage/requests", keys["external"], json={**ask, "layer": layer})
               for layer in ("trans_secret", "nothing_here")]
    assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
    assert sorted(answers[0].json()) == sorted(answers[1].json()) and {r.json()["state"] for r in answers} == {"pending"}
    r = call(base, "POST", "/manage/requests", requester, json={**ask, "layer": "No Such/Id"})
    assert r.status_code == 422 and r.json()["keys"] == ["layer"], r.text
    r = call(base, "POST", "/manage/requests", requester, json={"layer": "trans_secret", "reason": " "})
    assert r.status_code == 422 and r.json()["keys"] == ["reason"], r.text
    r = call(base, "POST", "/manage/requests", keys["owner editor"], json=ask)
    assert r.status_code == 409 and "already" in r.json()["description"], r.text  # the owner reads it

    made = call(base, "POST", "/manage/requests", requester, json=ask)
    assert made.status_code == 201 and made.json()["state"] == "pending", made.text
    request_id = made.json()["id"]
    assert call(base, "POST", "/manage/requests", requester, json=ask).status_code == 409  # awaits a decision
    assert audited(url, "access-requested")[-1]["reason"] == ask["reason"]

    # who may not decide: another agency's editor does not see it; the requester may not decide it
    before = requests_state(url)
    decision = f"/manage/requests/{request_id}/decision"
    assert call(base, "GET", "/manage/requests", keys["other editor"]).json()["to_decide"] == []
    assert call(base, "POST", decision, keys["other editor"], json={"decision": "approve"}).status_code == 404
    r = call(base, "POST", decision, requester, json={"decision": "approve"})
    assert r.status_code == 403 and "editors" in r.json()["description"], r.text
    assert call(base, "POST", decision, keys["anonymous"], json={"decision": "approve"}).status_code == 401
    r = call(base, "POST", decision, keys["owner editor"], json={"decision": "approve", "expires": "yesterday"})
    assert r.status_code == 422 and r.json()["keys"] == ["expires"], r.text
    assert requests_state(url) == before
    assert httpx.get(base + ITEMS, headers=requester, timeout=30).status_code == 404

    # the owner agency's editor approves, with an expiry seconds ahead
    pending = call(base, "GET", "/manage/requests", keys["owner editor"]).json()["to_decide"]
    assert [(x["layer"], x["principal"], x["agency"]) for x in pending] == [
        ("trans_secret", "analyst-MOI-LAND", "MOI-LAND"), ("trans_secret", "analyst-TCG-FIRE", "TCG-FIRE")]
    assert pending[1]["id"] == request_id
    expires = datetime.now(timezone.utc) + timedelta(seconds=8)  # room for a busy machine; waited out below
    r = call(base, "POST", decision, keys["owner editor"], json={"decision": "approve", "expires": expires.isoformat()})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    assert call(base, "POST", decision, keys["admin"], json={"decision": "reject", "reason": "x"}).status_code == 409

    items = until(lambda: (r := httpx.get(base + ITEMS, headers=requester, timeout=30)).status_code == 200 and r,
                  within=5, what="the requester reads the layer once approved")
    assert sorted(f["properties"]["name"] for f in items.json()["features"]) == sorted(s[1] for s in STATIONS)
    assert "private" in items.headers["cache-control"]
    assert httpx.get(base + TILE, headers=requester, timeout=30).status_code == 200
    assert "trans_secret" in ids(httpx.get(base + "/collections", headers=requester, timeout=30))
    assert datetime.now(timezone.utc) < expires, "the machine was too slow to see the grant work before it expired"
    mine = call(base, "GET", "/manage/requests", requester).json()["mine"]
    assert mine[0]["state"] == "approved" and mine[0]["decided_by"] == "editor-TCG-TRANS@TCG-TRANS"
    assert datetime.fromisoformat(mine[0]["expires_at"]) == expires
    [approved] = audited(url, "access-approved")
    assert (approved["principal"], approved["agency"], approved["layer"]) == ("editor-TCG-TRANS", "TCG-TRANS", "trans_secret")
    assert (approved["request"], approved["requester"], approved["role"]) == (request_id, "analyst-TCG-FIRE", "analyst")

    # the grant expires: every surface refuses at once, with no restart and nothing else changed
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    assert httpx.get(base + ITEMS, headers=requester, timeout=30).status_code == 404
    assert httpx.get(base + TILE, headers=requester, timeout=30).status_code == 404
    assert httpx.get(base + "/collections/trans_secret", headers=requester, timeout=30).status_code == 404
    assert "trans_secret" not in ids(httpx.get(base + "/collections", headers=requester, timeout=30))
    assert httpx.get(base + ITEMS, headers=keys["owner editor"], timeout=30).status_code == 200  # the owner still reads


def test_request_rejected_with_a_reason_the_requester_sees(server):
    base, url, keys = server
    requester = keys["requester"]
    made = call(base, "POST", "/manage/requests", requester, json={"layer": "trans_secret", "reason": "再次申請"})
    assert made.status_code == 201, made.text
    decision = f"/manage/requests/{made.json()['id']}/decision"
    before = requests_state(url)
    r = call(base, "POST", decision, keys["admin"], json={"decision": "reject"})
    assert r.status_code == 422 and r.json()["keys"] == ["reason"], r.text
    r = call(base, "POST", decision, keys["admin"], json={"decision": "maybe", "reason": "?"})
    assert r.status_code == 422 and r.json()["keys"] == ["decision"], r.text
    assert requests_state(url) == before
    r = call(base, "POST", decision, keys["admin"], json={"decision": "reject", "reason": "請改用公開的站點圖層"})
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    mine = call(base, "GET", "/manage/requests", requester).json()["mine"]
    assert (mine[0]["state"], mine[0]["decision_reason"]) == ("rejected", "請改用公開的站點圖層")
    assert requests_state(url)[1] == before[1]  # no grant
    assert httpx.get(base + ITEMS, headers=requester, timeout=30).status_code == 404
    [rejected] = audited(url, "access-rejected")
    assert (rejected["principal"], rejected["agency"], rejected["reason"]) == ("admin-TCG-INFO", "TCG-INFO",
                                                                              "請改用公開的站點圖層")


@contextmanager
def commands_on(url: str, monkeypatch):
    """Run geocloud commands in this process against the database ``url``."""
    monkeypatch.setenv("GEOCLOUD_DATABASE_URL", url)
    get_settings.cache_clear()
    get_catalog.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        get_catalog.cache_clear()


def test_layers_due_lists_overdue_first_from_recorded_runs(server, monkeypatch):
    _, url, _ = server
    now = datetime.now(timezone.utc)
    runs = [  # (layer, status, finished days ago, warnings)
        ("roads", "published", 400, []),                # yearly: overdue since 35 days or so
        ("addresses", "published", 50, []),             # monthly: overdue since 20 days or so
        ("addresses", "failed", 2, [{"severity": "warning", "message": "3 addresses repaired", "count": 3}]),
        ("trans_secret", "unchanged", 1, []),           # daily, and loaded just now by the fixture: not due
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for layer, status, days, warnings in runs:
            at = now - timedelta(days=days)
            conn.execute("INSERT INTO geocloud.etl_runs (pipeline, layers, source_path, operator, host, pid, status, "
                         "started_at, finished_at, warnings) VALUES (%s, %s, 'x', 'tester', 'h', 1, %s, %s, %s, %s)",
                         (layer, [layer], status, at - timedelta(minutes=5), at, json.dumps(warnings)))
    with commands_on(url, monkeypatch):  # in-process: a subprocess costs seconds
        out = CliRunner().invoke(cli_app, ["layers", "due", "--json"])
        table = CliRunner().invoke(cli_app, ["layers", "due"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    order = [r["layer"] for r in json.loads(out.stdout)["layers"]]
    rows = {r["layer"]: r for r in json.loads(out.stdout)["layers"]}
    roads, addresses, secret = rows["roads"], rows["addresses"], rows["trans_secret"]
    assert (roads["frequency"], addresses["frequency"], secret["frequency"]) == ("yearly", "monthly", "daily")
    published = now - timedelta(days=400)
    assert roads["overdue"] and datetime.fromisoformat(roads["next_due"]) == published.replace(year=published.year + 1)
    published = now - timedelta(days=50)
    assert addresses["overdue"] and datetime.fromisoformat(addresses["last_success"]) == published
    month = published.replace(month=published.month % 12 + 1, year=published.year + published.month // 12)
    assert datetime.fromisoformat(addresses["next_due"]) == month
    assert addresses["last_run"]["status"] == "failed"
    assert addresses["last_run"]["warnings"][0]["message"] == "3 addresses repaired"
    assert not secret["overdue"] and datetime.fromisoformat(secret["next_due"]) > now
    assert rows["districts"]["next_due"] is None and not rows["districts"]["overdue"]  # irregular: never due
    never = [r["layer"] for r in rows.values() if r["last_success"] is None and r["frequency"] != "irregular"]
    assert never and all(rows[i]["overdue"] for i in never)
    dated = [i for i in order if rows[i]["next_due"]]
    assert order[:len(never)] == sorted(never)  # never updated first, then by due date: overdue first
    assert dated == order[len(never):len(never) + len(dated)] and dated == ["roads", "addresses", "trans_secret"]
    assert [rows[i]["next_due"] for i in dated] == sorted(rows[i]["next_due"] for i in dated)
    # the table shows the same rows (its columns shrink to the terminal: the process's console may be
    # narrower than COLUMNS says when another test made it first)
    assert table.exit_code == 0 and "geocloud layers due" in table.output, table.output
    assert [line.split("│")[1].strip()[:4] for line in table.output.splitlines() if line.startswith("│ ")
            and line.split("│")[1].strip()] == [i[:4] for i in order], table.output


def signed_in(browser, base: str, url: str, agency: str, name: str, role: str):
    """A browser context signed in to a portal session of ``name`` (``agency``, ``role``)."""
    from geocloud.access import sessions

    with psycopg.connect(url, autocommit=True) as conn:
        secret = sessions.start(conn, f"sso:{name}", name, agency, [role])
    context = browser.new_context(bypass_csp=True, locale="zh-TW")  # bypass_csp: to add axe-core's script
    context.add_cookies([{"name": "geocloud_session", "value": secret, "url": base}])
    return context, secret


def test_the_request_pages_in_a_browser(server):
    from playwright.sync_api import sync_playwright
    from test_viewer import CHROMIUM, FLAGS

    base, url, keys = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        clerk, secret = signed_in(browser, base, url, "TCG-FIRE", "clerk-fire", "inspector")
        page = clerk.new_page()
        page.goto(f"{base}/requests/new?layer=trans_secret")
        assert page.eval_on_selector("#layer", "s => s.value") == "trans_secret"
        assert serious_violations(page) == []
        page.fill("#reason", "火災搶救演練需要站點位置")
        page.click("button[type=submit]")
        page.wait_for_url("**/requests?done=requested")
        row = page.locator("tr[data-request]").first
        assert row.locator("td.state").inner_text() == "審核中"
        assert serious_violations(page) == []
        request_id = row.get_attribute("data-request")

        # a form without the session's CSRF token is refused, and changes nothing
        forged = httpx.post(f"{base}/requests/{request_id}/decision", data={"decision": "approve"},
                            cookies={"geocloud_session": secret}, timeout=30)
        assert forged.status_code == 403, forged.text

        steward, _ = signed_in(browser, base, url, "TCG-TRANS", "steward-trans", "editor")
        queue = steward.new_page()
        queue.goto(f"{base}/requests?lang=en")
        section = queue.locator(f"section.decide:has(h3#req-{request_id})")
        assert "火災搶救演練需要站點位置" in section.inner_text()
        assert serious_violations(queue) == []
        section.locator("input[value=approve]").check()
        section.locator("input[name=expires]").fill("90d")
        section.locator("button[type=submit]").click()
        queue.wait_for_url("**/requests?done=approve")
        answer = httpx.get(f"{base}/requests", cookies={"geocloud_session": secret}, timeout=30)
        assert answer.headers["cache-control"] == "private, no-store"  # a personal page: kept nowhere
        page.reload()
        assert page.locator(f"tr[data-request='{request_id}'] td.state").inner_text() == "已核准"
        inspector = {"Cookie": f"geocloud_session={secret}"}
        until(lambda: httpx.get(base + ITEMS, headers=inspector, timeout=30).status_code == 200, within=5,
              what="the signed-in clerk reads the layer once approved")

        # the update procedure: the GIS office's admins only
        admin, _ = signed_in(browser, base, url, "TCG-INFO", "gis-admin", "admin")
        updates = admin.new_page()
        updates.goto(f"{base}/admin/updates")
        first = updates.locator("tbody tr").first
        assert "overdue" in (first.get_attribute("class") or "")
        assert updates.locator("tr[data-layer=trans_secret]").count() == 1
        assert serious_violations(updates) == []
        browser.close()
    assert httpx.get(f"{base}/admin/updates", timeout=30).status_code == 404
    assert httpx.get(f"{base}/admin/updates", headers=keys["owner editor"], timeout=30).status_code == 403


def test_a_catalog_grant_reads_until_its_expiry_and_approved_grants_join_their_layers():
    from geocloud.access.policy import can_read
    from geocloud.access.principal import Principal
    from geocloud.catalog import core_catalog, grants
    from geocloud.catalog.models import Grant

    catalog = core_catalog()
    layer = catalog.layers["inspection_sites"]
    construction = Principal("key", "k", "engineer-1", "TCG-CONST", "engineer", True)
    assert can_read(construction, layer)  # layers/inspection_sites.yml grants the Construction Bureau
    now = datetime.now(timezone.utc)
    for expires, readable in ((now + timedelta(minutes=1), True), (now - timedelta(seconds=1), False)):
        dated = [g.model_copy(update={"expires": expires}) for g in layer.access.grants]
        changed = layer.model_copy(update={"access": layer.access.model_copy(update={"grants": dated})})
        assert can_read(construction, changed) is readable
    trans = Principal("key", "k", "planner-1", "TCG-TRANS", "planner", True)
    outside = Principal("key", "k", "nlsc-1", "MOI-LAND", "analyst", False)  # not a city agency
    folded = grants.fold(catalog, [("inspection_sites", Grant(agency="TCG-TRANS", roles=["planner"])),
                                   ("road_works", Grant(agency="MOI-LAND")), ("roads", Grant(agency="MOI-LAND"))])
    assert can_read(trans, folded.layers["inspection_sites"]) and not can_read(trans, layer)
    assert can_read(outside, folded.layers["road_works"]) and not can_read(outside, catalog.layers["road_works"])
    assert folded.layers["roads"] == catalog.layers["roads"]  # public: a grant adds nothing


def test_the_requests_page_titles_only_the_layers_it_lists():
    """The page names the layers of the requests it lists, not every layer the caller reads: of its
    own requests those it may read now, and every one it decides on."""
    from geocloud.access import Principal
    from geocloud.serve.portal.requests import titles

    catalog = get_catalog()
    outsider = Principal("key", id="k1", name="nlsc-1", agency="MOI-LAND", role="analyst")  # reads public layers
    listed = {"mine": [{"layer": "roads"}, {"layer": "inspection_sites"}, {"layer": "no_such_layer"}],
              "to_decide": []}
    assert titles(outsider, catalog, listed) == {"roads": catalog.layers["roads"].title}
    listed["to_decide"] = [{"layer": "road_works"}, {"layer": "no_such_layer"}]
    assert set(titles(outsider, catalog, listed)) == {"roads", "road_works"}
