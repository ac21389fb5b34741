"""The portal (#18): the pages a browser gets from the same URLs API clients read JSON from, in
real headless Chromium (Debian's, driven by Playwright, one browser for the module): search, a
layer's page with its preview, downloads and connection details, zh-TW and English, axe-core on
every page, the keyboard alone, and only the layers the visitor may read."""

import json
import re
import shlex
import subprocess
import time

import httpx
import numpy
import pyogrio
import pytest
import rasterio
from conftest import geocloud_cli, serious_violations, source_of, tab_to
from playwright.sync_api import sync_playwright
from rasterio.io import MemoryFile
from test_viewer import CHROMIUM, FLAGS, wait_until

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PREVIEW_READY = "window.geocloudPreview && geocloudPreview.loaded() && geocloudPreview.areTilesLoaded()"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def result_ids(page) -> list[str]:
    return page.eval_on_selector_all("ol.results li", "els => els.map(e => e.dataset.layer)")


def distinct_colours(png: bytes) -> int:
    with MemoryFile(png) as f, f.open() as image:
        pixels = image.read()
    return len(numpy.unique(pixels.reshape(pixels.shape[0], -1).T, axis=0))


def feature_spot(page, layer: str):
    """A point of the preview (CSS pixels) where a feature of ``layer`` is drawn, or None."""
    return page.evaluate("""layer => {
        const m = window.geocloudPreview, c = m.getCanvas();
        const point = m.queryRenderedFeatures().find(f => f.sourceLayer === layer && f.geometry.type === 'Point');
        if (point) { const p = m.project(point.geometry.coordinates); return [p.x, p.y]; }
        for (let y = 20; y < c.clientHeight; y += 20) for (let x = 20; x < c.clientWidth; x += 20)
            if (m.queryRenderedFeatures([x, y]).some(f => f.sourceLayer === layer)) return [x, y];
        return null; }""", layer)


def use_it(html: str, client: str) -> str:
    """The text the "use it" panel offers for ``client`` (the value of its read-only field)."""
    found = re.search(rf'value="([^"]*)" data-client="{client}"', html)
    assert found, f"no {client} line on the page"
    return found.group(1).replace("&#34;", '"').replace("&amp;", "&")


def test_home_is_a_portal_page_for_browsers_and_json_for_api_clients(served):
    page = served.get("/", headers={**BROWSER, "Accept-Language": "zh-TW,zh;q=0.9"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-Hant-TW">' in html and "臺中市圖資雲" in html
    assert 'href="#main"' in html and '<main id="main"' in html and "<footer" in html   # skip link, landmarks
    for label in ("圖層", "地圖"):  # 申請 and 登入 join once their pages are served
        assert re.search(rf'<nav[^>]*>.*>{label}</a>', html, re.DOTALL), label
    assert "/portal/static/portal.css" in html and "unpkg" not in html          # geocloud's own assets only
    assert httpx.get(served.url + "/portal/static/portal.css").status_code == 200
    assert page.headers["content-security-policy"].count("script-src") == 1      # the portal's policy alone
    assert f'href="{served.url}/?lang=en"' in html and "都市計畫使用分區" in html

    english = served.get("/?lang=en", headers=BROWSER)
    assert '<html lang="en">' in english.text and "Urban planning zoning" in english.text
    assert "geocloud_lang=en" in english.headers["set-cookie"]
    assert f'href="{served.url}/?lang=zh-TW"' in english.text
    remembered = served.get("/collections/zoning", headers=BROWSER, cookies={"geocloud_lang": "en"})
    assert '<html lang="en">' in remembered.text and "Owner agency" in remembered.text

    for path in ("/", "/collections", "/collections/zoning"):  # API clients keep their JSON
        for accept in ({}, {"Accept": "application/json"}, {"Accept": "application/json, text/html;q=0.5"}):
            api = served.get(path, headers=accept)
            assert api.headers["content-type"].startswith("application/json"), (path, accept)
            assert "links" in api.json()
    assert served.get("/collections/zoning?f=html").text.count("<h1>") == 1
    assert served.get("/?page=x", headers=BROWSER).status_code == 400


def test_search_preview_attributes_and_download_with_the_keyboard(served, browser, tmp_path):
    context = browser.new_context(locale="zh-TW", accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served.url + "/")
    assert page.evaluate("document.documentElement.lang") == "zh-Hant-TW"
    assert serious_violations(page) == []

    tab_to(page, "input[name=q]")
    page.keyboard.type("分區")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q="))
    assert result_ids(page) == ["zoning"]
    tab_to(page, "ol.results a")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{served.url}/collections/zoning")
    assert page.inner_text("h1").startswith("都市計畫使用分區")
    wait_until(page, PREVIEW_READY)
    assert distinct_colours(page.locator("#preview canvas").screenshot()) > 8, "the preview is blank"
    spot = feature_spot(page, "zoning")
    assert spot, "no zoning polygon drawn"
    box = page.locator("#preview canvas").bounding_box()
    page.mouse.click(box["x"] + spot[0], box["y"] + spot[1])
    page.wait_for_selector("#attributes table")
    attributes = page.inner_text("#attributes")
    assert "分區代碼" in attributes and "使用分區" in attributes
    assert serious_violations(page) == []

    tab_to(page, 'a[href$="/collections/zoning/download?f=gpkg"]')
    with page.expect_download() as arrived:
        page.keyboard.press("Enter")
    saved = tmp_path / "zoning.gpkg"
    arrived.value.save_as(saved)
    count = page.inner_text("[data-field=feature-count]").replace(",", "")
    assert pyogrio.read_info(saved)["features"] == int(count) > 0
    context.close()
    assert not errors, errors


def test_english_and_a_restricted_layer_only_for_who_may_read_it(served, browser):
    anonymous = browser.new_context(locale="en-US")
    page = anonymous.new_page()
    page.goto(served.url + "/?q=zoning")
    assert page.evaluate("document.documentElement.lang") == "en" and result_ids(page) == ["zoning"]
    assert page.inner_text("ol.results a") == "Urban planning zoning"
    assert serious_violations(page) == []
    page.goto(served.url + "/")
    assert "inspection_sites" not in result_ids(page) and "zoning" in result_ids(page)
    html = page.content()
    assert "inspection" not in html and 'value="restricted"' not in html     # not even a filter's count
    assert page.goto(served.url + "/collections/inspection_sites").status == 401
    page.goto(served.url + "/map/")
    page.wait_for_selector("#layers li[data-layer=zoning]")
    assert page.inner_text("#panel h1") == "Map viewer" and page.locator("header.site nav").count() == 1
    assert serious_violations(page) == []
    anonymous.close()

    keyed = browser.new_context(locale="en-US", extra_http_headers={"X-API-Key": served.keys["fire"]})
    page = keyed.new_page()
    page.goto(served.url + "/?access=restricted")
    assert result_ids(page) == ["inspection_sites"]
    page.click("ol.results a")
    wait_until(page, PREVIEW_READY)
    assert feature_spot(page, "inspection_sites"), "the restricted layer's tiles did not draw with the key"
    links = page.eval_on_selector_all("ul.downloads a", "els => els.map(a => a.href)")
    assert links and all("accept_terms=" in href for href in links)
    assert serious_violations(page) == []
    keyed.close()


def test_the_use_it_lines_work_as_written(served, tmp_path):
    html = served.get("/collections/districts", headers=BROWSER).text
    line = use_it(html, "gdal")
    assert line.startswith("ogr2ogr ") and "YOUR_API_KEY" not in line
    subprocess.run(shlex.split(line), cwd=tmp_path, check=True, capture_output=True, timeout=60)
    live = json.loads(served.get("/collections/districts/items?limit=1").text)["numberMatched"]
    assert pyogrio.read_info(tmp_path / "districts.gpkg", layer="districts")["features"] == live

    html = served.get("/collections/inspection_sites", headers={**BROWSER, "X-API-Key": served.keys["fire"]}).text
    curl = use_it(html, "curl")
    assert served.keys["fire"] not in html and "YOUR_API_KEY" in curl       # a placeholder, never the key
    out = subprocess.run(shlex.split(curl.replace("YOUR_API_KEY", served.keys["fire"])), check=True,
                         capture_output=True, timeout=60).stdout
    assert json.loads(out)["features"]
    tilejson = httpx.get(use_it(html, "tilejson"), headers={"X-API-Key": served.keys["fire"]}).json()
    assert tilejson["tiles"]

    raster = use_it(served.get("/collections/satellite", headers=BROWSER).text, "gdal")
    assert raster.startswith("gdal_translate ")
    subprocess.run(shlex.split(raster), cwd=tmp_path, check=True, capture_output=True, timeout=120)
    with rasterio.open(tmp_path / "satellite.tif") as image:
        assert image.crs and image.count >= 3 and image.read(1).any()


def test_version_history_shows_what_each_version_changed_and_where(served, browser, tmp_path):
    """A second landmarks version (one renamed, one removed, one added) through the real ETL: the
    page lists both versions with the stored diff's counts, and outlines the changed area."""
    lines = source_of(served.city, "landmarks").read_text(encoding="utf-8-sig").splitlines()
    header, rows = lines[0], lines[1:]
    renamed = rows[0].split(",")
    renamed[1] += "（新址）"
    added = rows[2].split(",")
    added[0], added[1] = "LM09999", "新地標"
    changed = tmp_path / "landmarks.csv"
    changed.write_text("\n".join([header, ",".join(renamed), *rows[2:], ",".join(added)]) + "\n", encoding="utf-8")
    run = geocloud_cli("etl", "run", "landmarks", changed, env={
        "GEOCLOUD_DATABASE_URL": served.db_url, "GEOCLOUD_DATA_DIR": str(served.data_dir), "GEOCLOUD_OPERATOR": "tester"})
    assert run.returncode == 0, run.stderr[-2000:]

    context = browser.new_context(locale="zh-TW")
    page = context.new_page()
    deadline = time.monotonic() + 30  # the server follows the publish within its snapshot refresh
    while page.goto(served.url + "/collections/landmarks") and not page.locator("tr[data-version='2']").count():
        assert time.monotonic() < deadline, "version 2 never showed"
        time.sleep(0.5)
    cells = lambda v: page.eval_on_selector_all(f"tr[data-version='{v}'] td", "tds => tds.map(t => t.innerText)")
    assert cells(2)[2:5] == ["1", "1", "1"]                 # added, changed, removed
    assert cells(1)[2:5] == [str(len(rows)), "0", "0"]      # the first load added every row
    assert "使用中" in page.inner_text("tr[data-version='2'] th")
    wait_until(page, PREVIEW_READY)
    page.click("tr[data-version='2'] button.show-change")
    outline = page.evaluate("geocloudPreview.getSource('changed').serialize().data.geometry.coordinates[0]")
    assert len(outline) == 5 and outline[0] != outline[2]   # a box around the changed landmarks
    assert serious_violations(page) == []
    context.close()


def test_features_pages_list_a_page_with_titles_a_map_and_links_and_api_clients_keep_geojson(served, browser):
    """The items and item pages are the portal's (pygeoapi's loaded Leaflet and Bootstrap from CDNs):
    the API's own query answers them, the catalog's titles head the table, the keyboard pages on."""
    api = served.get("/collections/zoning/items?limit=3&properties=zone_code")  # what an API client gets
    assert api.headers["content-type"].startswith("application/geo+json")
    expected = [str(f["id"]) for f in api.json()["features"]]
    assert served.get("/collections/zoning/items/" + expected[0]).json()["type"] == "Feature"
    bad = served.get("/collections/zoning/items?limit=x", headers=BROWSER)          # the API's checks, as a page
    assert bad.status_code == 400 and "limit" in bad.text and "<h1>" in bad.text

    context = browser.new_context(locale="zh-TW", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((served.url, "blob:" + served.url))
            else None)
    page.goto(served.url + "/collections/zoning")
    tab_to(page, 'a[href$="/collections/zoning/items?f=html"]')
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/items\?f=html$"))
    page.goto(served.url + "/collections/zoning/items?limit=3&properties=zone_code")
    assert page.eval_on_selector_all("table.items tbody tr", "rs => rs.map(r => r.dataset.id)") == expected
    assert page.eval_on_selector_all("table.items thead th", "hs => hs.map(h => h.textContent)") == ["識別碼", "分區代碼"]
    wait_until(page, "window.geocloudPreview && geocloudPreview.loaded()")
    assert distinct_colours(page.locator("#items-map canvas").screenshot()) > 2, "the map of the page is blank"
    assert serious_violations(page) == []
    tab_to(page, "a[rel=next]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"offset=3"))
    second = page.eval_on_selector_all("table.items tbody tr", "rs => rs.map(r => r.dataset.id)")
    assert len(second) == 3 and not set(second) & set(expected)
    assert page.locator("a[rel=prev]").count() == 1

    tab_to(page, "table.items tbody a")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/items/[^?]+\?f=html$"))
    assert page.inner_text("h1").endswith(second[0])
    assert "使用分區" in page.inner_text("table.attributes")
    wait_until(page, "window.geocloudPreview && geocloudPreview.loaded()")
    assert serious_violations(page) == []
    assert httpx.get(page.url.replace("f=html", "f=json")).json()["id"] is not None
    context.close()
    assert outside == [], outside


def test_queryables_schema_and_the_api_reference_are_portal_pages_with_geocloud_s_own_assets(served, browser):
    """pygeoapi's queryables and schema pages, and its Swagger UI from a CDN, give way to the
    portal's: the properties with both titles and their types, Swagger UI from npm's swagger-ui-dist."""
    for path in ("/collections/roads/queryables", "/collections/roads/schema"):
        html = served.get(path, headers={**BROWSER, "Accept-Language": "en"}).text
        row = re.search(r'<tr data-property="name">(.*?)</tr>', html, re.DOTALL).group(1)
        assert "道路名稱" in row and "Road name" in row and "string" in row, path
        assert served.get(path).headers["content-type"].startswith("application/schema+json")  # API clients
    assert served.get("/collections/inspection_sites/queryables?f=html").status_code == 401

    context = browser.new_context(locale="en-US")
    page = context.new_page()
    outside, refused = [], []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((served.url, "blob:", "data:")) else None)
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    for ui in ("swagger", "redoc"):
        page.goto(f"{served.url}/openapi?ui={ui}")
        wait_until(page, "document.querySelectorAll('#swagger-ui .opblock-get').length > 0")  # drawn from the document
        assert page.inner_text("#swagger-ui .info .title").startswith(served.get("/openapi?f=json").json()["info"]["title"])
    assert served.get("/openapi", params={"ui": "swagger", "f": "json"}).json()["openapi"]  # a client's document
    page.goto(served.url + "/collections/roads/queryables")
    assert serious_violations(page) == []
    context.close()
    assert outside == [] and refused == [], (outside, refused)
