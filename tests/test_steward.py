"""The stewards' pages (#18, for editors and admins) in headless Chromium (Debian's, driven by
Playwright), each user signed in with the API-key fallback: an editor registers a layer through the
form (its 422 shown next to the field it names), uploads a CSV with a bad row and sees the dry
run's report (counts and the rejected row), loads the corrected file and publishes it; the GIS
office's review queue rejects the editor's public layer with a comment the editor then reads, and
approves it once published again, after which it answers over OGC API Features to anyone; another agency's editor neither sees nor acts on it; axe-core finds nothing serious on
any of the pages."""

import shutil
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import agency_server, serious_violations, tab_to
from playwright.sync_api import sync_playwright
from test_registry import STATIONS, on_every_worker
from test_viewer import CHROMIUM, FLAGS, wait_until

WHO = {"admin": ("TCG-INFO", "admin"), "editor": ("TCG-TRANS", "editor"), "other": ("TCG-FIRE", "editor")}
HEADER = "station_id,name,docks,X,Y"


def csv_file(folder: Path, name: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


GOOD = [f"{i},{n},{d},{x},{y}" for i, n, x, y, d in STATIONS]
BAD = [GOOD[0], "S009,壞資料站,12,not-a-number,2673000", *GOOD[1:]]  # line 3 has no X


@pytest.fixture(scope="module")
def server(template_db, tmp_path_factory):
    data = tmp_path_factory.mktemp("steward-data")
    keys = {who: (agency, f"{role}-{agency}", role) for who, (agency, role) in WHO.items()}
    with agency_server(template_db, data, keys) as (base, url, made):
        yield base, url, made, tmp_path_factory.mktemp("steward-files")


def signed_in(browser, base: str, key: str, locale: str = "zh-TW"):
    """A page of a new browser context signed in with ``key`` (the sign-in form's fallback)."""
    page = browser.new_context(locale=locale).new_page()
    page.goto(base + "/signin")
    page.fill("#api_key", key)
    with page.expect_navigation():
        page.click("form.signin-key button[type=submit]")
    assert page.url.endswith("/account"), page.url
    return page


def confirm(page, button: str) -> None:
    page.click(button)
    page.wait_for_selector("dialog#confirm[open]")
    page.click("#confirm-yes")


def count(url: str, query: str, *args) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchone()[0]


def test_an_editor_registers_checks_loads_and_publishes_and_the_admin_approves(server):
    if not shutil.which("chromium"):
        pytest.fail("chromium missing: scripts/dev test installs Debian's chromium")
    base, url, keys, files = server
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        editor = signed_in(browser, base, keys["editor"])
        editor.on("pageerror", lambda e: errors.append(str(e)))

        # register: the form's fields from the CSV's header; a bad email is the API's 422, shown by its field
        editor.goto(base + "/steward/register")
        editor.set_input_files("#f-infer", str(csv_file(files, "header.csv", GOOD)))
        assert editor.eval_on_selector_all("#fields tbody [data-part=name]", "els => els.map(e => e.value)") == \
            ["station_id", "name", "docks"]
        assert editor.eval_on_selector_all("#fields tbody [data-part=type]", "els => els.map(e => e.value)") == \
            ["text", "text", "integer"]
        for key, value in {"id": "bike_docks", "title.zh-TW": "公共自行車站", "title.en": "Bicycle docks",
                           "description.zh-TW": "租賃站位置。", "description.en": "Rental stations.",
                           "contact.organization.zh-TW": "臺中市政府交通局",
                           "contact.organization.en": "Transportation Bureau", "contact.name": "公共運輸處",
                           "contact.email": "trans-at-taichung", "contact.phone": "04-22289111",
                           "key": "station_id"}.items():
            editor.fill(f"[id='f-{key}']", value)
        editor.select_option("[id='f-access.level']", "public")
        editor.click("#register-submit")
        error = editor.wait_for_selector(".field[data-key='contact.email'] .field-error")
        assert "contact.email" in error.inner_text()
        assert editor.get_attribute("[id='f-contact.email']", "aria-invalid") == "true"
        assert editor.evaluate("document.activeElement.id") == "error-summary"
        assert count(url, "SELECT count(*) FROM geocloud.registered_layers") == 0
        assert not (found := serious_violations(editor)), found

        editor.fill("[id='f-contact.email']", "trans@taichung.gov.tw")
        with editor.expect_navigation():
            editor.click("#register-submit")
        assert editor.url.endswith("/steward/layers/bike_docks")
        editor.wait_for_selector("#layer-state[data-state=draft]")

        # a dry run of a file with a bad row: the report names the row and why; nothing is loaded
        editor.set_input_files("#file", str(csv_file(files, "bad.csv", BAD)))
        assert editor.input_value("#format") == "csv"
        editor.click("#dry-run")
        editor.wait_for_selector("#report-outcome[data-outcome=failed]")
        figures = {k: editor.inner_text(f"[data-count={k}]") for k in ("read", "valid", "rejected")}
        assert figures == {"read": "4", "valid": "3", "rejected": "1"}
        rejected = editor.inner_text("#rejected tbody tr[data-row='3']")  # a CSV's line number: the header is line 1
        assert rejected.startswith("第 3 列") and "coordinate columns X/Y are empty or not numbers" in rejected
        assert editor.is_hidden("#load")
        assert count(url, "SELECT count(*) FROM geocloud.layer_versions WHERE layer = 'bike_docks'") == 0

        # the corrected file: planned (three added), then loaded and published after confirming
        editor.set_input_files("#file", str(csv_file(files, "good.csv", GOOD)))
        editor.click("#dry-run")
        editor.wait_for_selector("#report-outcome[data-outcome=planned]")
        assert [editor.inner_text(f"[data-count={k}]") for k in ("added", "changed", "removed", "rejected")] == \
            ["3", "0", "0", "0"]
        wait_until(editor, "window.geocloudReportMap && geocloudReportMap.loaded()", 30)
        assert not (found := serious_violations(editor)), found
        confirm(editor, "#load")
        editor.wait_for_selector("#report-outcome[data-outcome=published]")
        editor.wait_for_selector("#layer-version:text('1')")
        confirm(editor, "#publish")
        editor.wait_for_selector("#layer-state[data-state=pending_review]")  # public: the GIS office reviews it
        assert httpx.get(f"{base}/collections/bike_docks/items?f=json").status_code == 401

        editor.goto(base + "/steward")
        row = editor.wait_for_selector("#my-layers tr[data-layer=bike_docks]")
        assert "待審核" in row.inner_text() and "TCG-TRANS" in row.inner_text()
        assert not (found := serious_violations(editor)), found

        # another agency's editor: neither sees it nor may act on it
        other = signed_in(browser, base, keys["other"])
        assert other.goto(base + "/steward/layers/bike_docks").status == 404
        other.goto(base + "/steward")
        other.wait_for_selector("#status:text('（沒有）')")
        assert other.query_selector("#my-layers tr[data-layer=bike_docks]") is None
        refused = other.goto(base + "/steward/review")  # a portal page saying why, not the API's JSON
        assert refused.status == 403 and refused.headers["content-type"].startswith("text/html")
        assert "only the GIS office's admins review layers" in other.inner_text("main")
        assert other.query_selector("nav a[href$='/steward']") is not None  # an editor's menu leads here

        # the admin's queue: a rejection says why, the editor sees it and publishes again, then approval
        admin = signed_in(browser, base, keys["admin"], "en-GB")
        admin.goto(base + "/steward/review")
        admin.wait_for_selector("#queue tr[data-layer=bike_docks]")
        assert not (found := serious_violations(admin)), found
        admin.fill("#comment-bike_docks", "請補上聯絡電話分機")
        confirm(admin, "#queue tr[data-layer=bike_docks] button[data-decision=reject]")
        admin.wait_for_selector("#status:text('Rejected')")
        editor.goto(base + "/steward/layers/bike_docks")
        editor.wait_for_selector("#layer-state[data-state=rejected]")
        assert "請補上聯絡電話分機" in editor.inner_text("#layer-review[data-decision=reject]")
        confirm(editor, "#publish")
        editor.wait_for_selector("#layer-state[data-state=pending_review]")
        admin.reload()
        admin.wait_for_selector("#queue tr[data-layer=bike_docks]")
        tab_to(admin, "#queue tr[data-layer=bike_docks] button[data-decision=approve]")  # the keyboard alone
        admin.keyboard.press("Enter")
        admin.wait_for_selector("dialog#confirm[open]")
        assert admin.evaluate("document.activeElement.id") == "confirm-yes"
        admin.keyboard.press("Enter")
        admin.wait_for_selector("#status:text('Approved')")
        assert admin.query_selector("#queue tr[data-layer=bike_docks]") is None
        with psycopg.connect(url) as conn:
            decisions = conn.execute("SELECT detail->'after'->'review'->>'decision' FROM geocloud.audit "
                                     "WHERE layer = 'bike_docks' AND action = 'layer-reviewed' ORDER BY id").fetchall()
        assert decisions == [("reject",), ("approve",)]

        on_every_worker(base, "/collections/bike_docks/items?f=json", {}, lambda r: r.status_code == 200)
        items = httpx.get(f"{base}/collections/bike_docks/items?f=json", timeout=30).json()
        assert sorted(f["properties"]["station_id"] for f in items["features"]) == ["S001", "S002", "S003"]
        fire = {"X-API-Key": keys["other"]}  # readable now, still not theirs to manage
        assert httpx.post(f"{base}/manage/layers/bike_docks/publish", headers=fire).status_code == 403
        assert other.goto(base + "/steward/layers/bike_docks").status == 403

        # the editor retires it: gone from OGC API Features
        editor.goto(base + "/steward/layers/bike_docks")
        editor.wait_for_selector("#layer-state[data-state=live]")
        confirm(editor, "#retire")
        editor.wait_for_selector("#layer-state[data-state=retired]")
        browser.close()
    assert not errors, errors
    on_every_worker(base, "/collections/bike_docks/items?f=json", fire, lambda r: r.status_code == 404)
