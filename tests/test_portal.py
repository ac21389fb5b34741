"""The portal (#18): the pages a browser gets from the same URLs API clients read JSON from."""

import re

import httpx

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_home_is_a_portal_page_for_browsers_and_json_for_api_clients(served):
    page = served.get("/", headers={**BROWSER, "Accept-Language": "zh-TW,zh;q=0.9"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-Hant-TW">' in html and "臺中市圖資雲" in html
    assert 'href="#main"' in html and '<main id="main"' in html and "<footer" in html   # skip link, landmarks
    for label in ("圖層", "地圖", "申請", "登入"):
        assert re.search(rf'<nav[^>]*>.*>{label}</a>', html, re.S), label
    assert "/portal/static/portal.css" in html and "unpkg" not in html          # geocloud's own assets only
    assert httpx.get(served.url + "/portal/static/portal.css").status_code == 200
    assert page.headers["content-security-policy"].count("script-src") == 1      # the portal's policy alone
    assert 'href="/?lang=en"' in html and "都市計畫使用分區" in html

    english = served.get("/?lang=en", headers=BROWSER)
    assert '<html lang="en">' in english.text and "Urban planning zoning" in english.text
    assert "geocloud_lang=en" in english.headers["set-cookie"]
    assert 'href="/?lang=zh-TW"' in english.text

    api = served.get("/")
    assert api.headers["content-type"].startswith("application/json") and "links" in api.json()
