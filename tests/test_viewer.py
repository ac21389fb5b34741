"""The map viewer in headless Chromium (Debian's), driven by Playwright: tiles load, a layer toggles,
a click shows attributes with zh-TW and English field titles (the portal's language switch keeps the
map's position), no console errors."""

import shutil
import time

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def wait_until(page, expression: str, timeout: float = 60) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function evaluates its
    predicate with eval inside the page, which the viewer's Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def test_viewer_loads_toggles_and_shows_attributes(served, tmp_path):
    if not shutil.which("chromium"):
        pytest.fail("chromium missing: scripts/dev test installs Debian's chromium")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800}, locale="zh-TW")  # Accept-Language
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served.url + "/map/#15/24.1620/120.6473")
        page.wait_for_selector("#layers li[data-layer=buildings]", timeout=60_000)
        wait_until(page, "window.geocloudMap && window.geocloudMap.loaded() && window.geocloudMap.areTilesLoaded()")
        assert page.evaluate("geocloudMap.queryRenderedFeatures().filter(f => f.sourceLayer === 'buildings').length") > 0

        page.click("#toggle-buildings")
        assert page.evaluate("geocloudMap.getLayoutProperty('buildings-fill', 'visibility')") == "none"
        wait_until(page, "geocloudMap.loaded()")

        box = page.locator("#map").bounding_box()
        spot = page.evaluate("""() => {
            const m = window.geocloudMap, c = m.getCanvas();
            for (let y = 40; y < c.clientHeight; y += 40) for (let x = 40; x < c.clientWidth; x += 40) {
                const f = m.queryRenderedFeatures([x, y]).filter(f => f.sourceLayer === 'zoning');
                if (f.length) return [x, y];
            }
            return null; }""")
        assert spot, "no zoning polygon rendered"
        page.mouse.click(box["x"] + spot[0], box["y"] + spot[1])
        page.wait_for_selector(".maplibregl-popup", timeout=10_000)
        popup = page.inner_text(".maplibregl-popup")
        assert "都市計畫使用分區" in popup and "分區代碼" in popup and "使用分區" in popup

        position = page.evaluate("window.location.hash")
        page.click(".lang-switch")  # the portal's language switch: the same map, where it was, in English
        page.wait_for_url(lambda url: "lang=en" in url and url.endswith(position))
        assert page.inner_text("#panel h1") == "Map viewer"
        page.wait_for_selector("#layers li[data-layer=zoning]", timeout=60_000)
        wait_until(page, "window.geocloudMap && window.geocloudMap.loaded() && window.geocloudMap.areTilesLoaded()")
        page.click("#toggle-buildings")
        page.mouse.click(box["x"] + spot[0], box["y"] + spot[1])
        wait_until(page, "!!document.querySelector('.maplibregl-popup') && "
                         "document.querySelector('.maplibregl-popup').innerText.includes('Zone code')", 10)
        links = page.eval_on_selector_all("#layers li[data-layer=zoning] a", "els => els.map(a => a.href)")
        assert any(href.endswith("/collections/zoning/download?f=gpkg") for href in links)
        assert page.input_value("#qgis-url") == served.url
        page.screenshot(path=str(tmp_path / "viewer.png"))
        browser.close()
    assert not errors, errors


def test_the_viewer_fetches_a_layers_queryables_when_a_feature_of_it_is_clicked(served):
    """The viewer asks for no layer's queryables (its field titles) when it opens, only for the one
    whose feature is clicked, and once however often it is clicked."""
    asked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800}, locale="en")
        page.on("request", lambda r: asked.append(r.url.split("?")[0]) if "/queryables" in r.url else None)
        page.goto(served.url + "/map/#15/24.1620/120.6473")
        page.wait_for_selector("#layers li[data-layer=zoning]", timeout=60_000)
        page.click("#toggle-buildings")  # the zoning polygons beneath them
        wait_until(page, "window.geocloudMap.loaded() && window.geocloudMap.areTilesLoaded()")
        assert asked == []
        box = page.locator("#map").bounding_box()
        spot = page.evaluate("""() => {
            const m = window.geocloudMap, c = m.getCanvas();
            for (let y = 40; y < c.clientHeight; y += 40) for (let x = 40; x < c.clientWidth; x += 40) {
                if (m.queryRenderedFeatures([x, y]).some(f => f.sourceLayer === 'zoning')) return [x, y];
            }
            return null; }""")
        assert spot, "no zoning polygon rendered"
        for _ in range(2):
            page.mouse.click(box["x"] + spot[0], box["y"] + spot[1])
            wait_until(page, "!!document.querySelector('.maplibregl-popup') && "
                             "document.querySelector('.maplibregl-popup').innerText.includes('Zone code')", 10)
        time.sleep(0.5)  # time for a second fetch, if the second click made one
        browser.close()
    assert asked == [f"{served.url}/collections/zoning/queryables"]
