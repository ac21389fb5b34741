"""Security findings of the penetration test (issue #13), each against a real server: tokens that
outlived their key, credentials in the audit trail and the logs, answers without Cache-Control or
Vary, forwarded headers believed from anyone, missing security headers and CORS."""

import base64
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from conftest import geocloud_cli, start_server, stop_server

from geocloud.access import keys as api_keys
from geocloud.db.migrate import available
from geocloud.serve import guard
from geocloud.serve.tiles.tms import SERVED

HALL = (120.647296502, 24.1619892378)
RESTRICTED = "/collections/inspection_sites/items"


@pytest.fixture(scope="module")
def proxied(served, tmp_path_factory):
    """A second server on the same database behind a "reverse proxy" at 127.0.0.1 (trusted), with the
    access log on; everything it logs goes to its server.log."""
    folder = tmp_path_factory.mktemp("proxied")
    proc, url = start_server(served.db_url, folder, {"GEOCLOUD_DATA_DIR": str(served.data_dir),
                                                     "GEOCLOUD_TRUSTED_PROXIES": "127.0.0.1",
                                                     "GEOCLOUD_ALLOWED_HOSTS": "maps.example",
                                                     "GEOCLOUD_ACCESS_LOG": "true"})
    yield url, folder / "server.log"
    stop_server(proc)


def _key(served, expires=None) -> str:
    with psycopg.connect(served.db_url, autocommit=True) as conn:
        return api_keys.create(conn, "TCG-FIRE", "token-tester", "inspector", None, expires)


def _token(served, key: str, **params) -> dict:
    r = httpx.post(served.url + "/auth/token", params=params, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_token_stops_within_the_key_window_once_its_key_is_revoked(served):
    key = _key(served)
    token = _token(served, key, expires_in=3600)["token"]
    assert served.get(RESTRICTED, params={"token": token, "limit": 1}).status_code == 200
    with psycopg.connect(served.db_url, autocommit=True) as conn:
        api_keys.revoke(conn, api_keys.KEY.match(key).group(1))
    revoked_at = time.monotonic()
    window = api_keys.CACHE_SECONDS + guard.CONNECTION_SECONDS
    while served.get(RESTRICTED, params={"token": token, "limit": 1}).status_code == 200:
        assert time.monotonic() - revoked_at < window + 3, f"the token still reads {window + 3:.0f} s after revocation"
        time.sleep(0.5)
    assert served.get(RESTRICTED, params={"token": token, "limit": 1}).status_code == 401
    assert served.get(RESTRICTED, headers={"X-API-Key": key}).status_code == 401


def test_a_token_never_outlives_its_key_and_cannot_renew_itself(served):
    key_expires = datetime.now(timezone.utc) + timedelta(hours=1)
    key = _key(served, key_expires)
    issued = _token(served, key, expires_in=24 * 3600)
    assert issued["expires"] <= key_expires.timestamp()
    payload = issued["token"][4:].split(".")[0]
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert body["exp"] <= key_expires.timestamp()
    renewed = httpx.post(served.url + "/auth/token", params={"token": issued["token"], "expires_in": 86400})
    assert renewed.status_code == 403 and "token cannot issue another token" in renewed.json()["description"]
    jwt = served.sso.token()  # valid for 10 minutes
    from_jwt = httpx.post(served.url + "/auth/token", params={"expires_in": 3600},
                          headers={"Authorization": f"Bearer {jwt}"})
    assert from_jwt.status_code == 200 and from_jwt.json()["expires"] <= time.time() + 601


def _requests_with_credentials_in_the_query(served, url: str) -> tuple[str, list[str]]:
    """Two reads of the restricted layer, with ?api_key= and ?token=; their marker and secrets."""
    key = served.keys["fire"]
    limit = 1000 + int(time.time() * 1000) % 9000
    token = _token(served, key, expires_in=600)["token"]
    assert httpx.get(url + RESTRICTED, params={"limit": limit, "api_key": key}).status_code == 200
    assert httpx.get(url + RESTRICTED, params={"limit": limit, "token": token}).status_code == 200
    return f"limit={limit}", [key.split("_", 2)[2], token]


def test_credentials_in_queries_are_never_stored_in_the_audit_trail(served):
    marker, secrets = _requests_with_credentials_in_the_query(served, served.url)
    with psycopg.connect(served.db_url) as conn:
        for _ in range(50):
            rows = [r[0] for r in conn.execute("SELECT detail FROM geocloud.audit WHERE detail->>'query' LIKE %s",
                                               (f"%{marker}%",))]
            if len(rows) >= 2:
                break
            time.sleep(0.2)
    assert len(rows) == 2 and all("REDACTED" in r["query"] for r in rows), rows
    assert not [s for s in secrets if s in json.dumps(rows)]
    printed = geocloud_cli("audit", "--layer", "inspection_sites", "--json", "--limit", "1000",
                           env={"GEOCLOUD_DATABASE_URL": served.db_url})
    assert printed.returncode == 0 and marker in printed.stdout
    assert not [s for s in secrets if s in printed.stdout]


def test_credentials_in_queries_are_never_written_to_the_server_log(served, proxied):
    url, log_path = proxied
    marker, secrets = _requests_with_credentials_in_the_query(served, url)
    for _ in range(20):  # the access log line is written as the answer completes
        log = log_path.read_text(encoding="utf-8", errors="replace")
        if log.count(marker) >= 2:
            break
        time.sleep(0.1)
    assert log.count(marker) >= 2 and "api_key=REDACTED" in log and "token=REDACTED" in log
    assert not [s for s in secrets if s in log]


def test_the_migration_redacts_credentials_already_in_the_audit_trail(database):
    key = "gck_abcdefabcdef_" + "s" * 43
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO geocloud.audit (action, principal, layer, detail) VALUES "
                     "('read', 'a', 'inspection_sites', %s), ('read', 'b', 'roads', %s), ('key-created', 'c', NULL, %s)",
                     (json.dumps({"query": f"bbox=1,2,3,4&api_key={key}&f=json", "bytes": 10}),
                      json.dumps({"query": "token=gct_eyJraWQiOiJ4In0.c2lnbmF0dXJl", "path": f"/x/{key}"}),
                      json.dumps({"key": "abcdefabcdef"})))
        migration = next(m for m in available() if m.name == "redact_audit")
        conn.execute(migration.sql)
        rows = {r[0]: r[1] for r in conn.execute("SELECT principal, detail FROM geocloud.audit")}
    assert rows["a"] == {"query": "bbox=1,2,3,4&api_key=REDACTED&f=json", "bytes": 10}
    assert rows["b"] == {"query": "token=REDACTED", "path": "/x/gck_abcdefabcdef_REDACTED"}
    assert rows["c"] == {"key": "abcdefabcdef"}


CALLER_DEPENDENT = ["/", "/collections", "/openapi", "/styles", "/styles/roads.json", "/styles/roads.qml",
                    "/collections/roads/queryables", "/collections/roads/tiles", "/tileMatrixSets",
                    "/collections/roads/tiles/WebMercatorQuad", "/collections/roads/tiles/WebMercatorQuad/tilejson.json",
                    "/tiles/WebMercatorQuad/tilejson.json", "/rasters/satellite/WebMercatorQuad/tilejson.json",
                    "/wmts/1.0.0/WMTSCapabilities.xml", "/collections/nope", "/map/"]


@pytest.mark.parametrize("who", ["anonymous", "fire"])
def test_answers_that_depend_on_the_caller_are_private_and_vary_on_credentials(served, who):
    headers = {} if who == "anonymous" else {"Authorization": f"Bearer {served.keys['fire']}"}
    paths = CALLER_DEPENDENT + ([] if who == "anonymous" else
                                ["/collections/inspection_sites/queryables", "/styles/inspection_sites.json",
                                 "/collections/inspection_sites/tiles/WebMercatorQuad/tilejson.json"])
    problems = []
    for path in paths:
        r = served.get(path, headers=headers)
        vary = {v.strip().lower() for v in r.headers.get("vary", "").split(",")}
        if not {"authorization", "x-api-key", "cookie"} <= vary:
            problems.append(f"{path} -> {r.status_code}: Vary {r.headers.get('vary')!r}")
        cache = r.headers.get("cache-control", "")  # anonymous lists of public layers may say public
        if not cache or who != "anonymous" and "private" not in cache and "no-store" not in cache:
            problems.append(f"{path} -> {r.status_code}: Cache-Control {cache!r}")
    assert not problems, "\n".join(problems)
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 14)
    public_tile = served.get(f"/collections/roads/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}", headers=headers)
    assert public_tile.headers["cache-control"] == "public, no-cache"  # a route's own decision stays
    assert "authorization" in public_tile.headers["vary"].lower()


def _links(value) -> list[str]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _links(v)]
    if isinstance(value, list):
        return [x for v in value for x in _links(v)]
    return [value] if isinstance(value, str) and "://" in value else []


EVIL = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/x",
        "Forwarded": "for=6.6.6.6;proto=https;host=evil.example"}
LINKED = ["/collections/roads/tiles/WebMercatorQuad/tilejson.json", "/?f=json", "/collections/roads/items?limit=2",
          "/styles/basemap.json"]


def test_forwarded_headers_from_an_untrusted_client_are_ignored(served):
    for path in LINKED:
        body = served.get(path, headers=EVIL).json()
        assert any(x.startswith(served.url + "/") for x in _links(body)), path
        assert "evil.example" not in json.dumps(body) and "https://127.0.0.1" not in json.dumps(body), path
    spoofed_host = served.get(LINKED[0], headers={"Host": "evil.example"}).json()
    assert spoofed_host["tiles"][0].startswith("http://127.0.0.1:8000/")  # GEOCLOUD_PUBLIC_URL's default


def test_a_host_a_trusted_proxy_passes_on_must_still_be_allowed(proxied):
    """A proxy that copies the client's Host header into X-Forwarded-Host (HAProxy's and nginx's
    usual set-up) must not let the client choose the host of links a shared cache keeps."""
    url, _ = proxied
    for headers in ({"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
                    {"Forwarded": "proto=https;host=evil.example"}):
        r = httpx.get(url + LINKED[0], headers=headers)
        assert r.json()["tiles"][0].startswith("http://127.0.0.1:8000/")  # GEOCLOUD_PUBLIC_URL's default


def test_forwarded_headers_from_a_trusted_proxy_are_honoured(proxied):
    url, log_path = proxied
    for headers in ({"X-Forwarded-Host": "maps.example", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/gis"},
                    {"Forwarded": 'for="203.0.113.7";proto=https;host=maps.example', "X-Forwarded-Prefix": "/gis"}):
        r = httpx.get(url + LINKED[0], headers=headers)
        assert r.json()["tiles"][0].startswith("https://maps.example/gis/collections/roads/tiles/")
        assert r.headers["strict-transport-security"].startswith("max-age=")
        items = httpx.get(url + LINKED[2], headers=headers).json()
        assert all(x.startswith("https://maps.example/gis/") for x in _links(items["links"]))
    assert "strict-transport-security" not in httpx.get(url + LINKED[0]).headers  # plain HTTP: no HSTS
    httpx.get(url + "/conformance?forwarded-client", headers={"X-Forwarded-For": "198.51.100.23, 127.0.0.1"})
    for _ in range(20):
        line = next((x for x in log_path.read_text().splitlines() if "forwarded-client" in x), "")
        if line:
            break
        time.sleep(0.1)
    assert "198.51.100.23" in line  # the client the proxy names (rate limits count it, not the proxy)


def test_security_headers_on_every_answer_and_csp_on_html(served):
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 14)
    for path, headers in [("/collections", {}), (f"/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}", {}),
                          (RESTRICTED, {}), ("/collections/nope", {"X-API-Key": served.keys["udb"]}),
                          ("/collections", {"X-API-Key": "gck_wrong"}), ("/map/static/viewer.js", {})]:
        r = served.get(path, headers=headers)
        assert r.headers.get("x-content-type-options") == "nosniff", (path, r.status_code)
        assert r.headers.get("referrer-policy") == "strict-origin-when-cross-origin", path
        assert "strict-transport-security" not in r.headers  # plain HTTP
    for path in ["/map/", "/?f=html", "/collections/roads/items?f=html&limit=2"]:
        r = served.get(path)
        assert r.headers["content-type"].startswith("text/html"), path
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'self'" in csp and "object-src 'none'" in csp and r.headers["x-frame-options"] == "SAMEORIGIN"
    viewer = served.get("/map/").headers["content-security-policy"]
    assert "script-src 'self';" in viewer and "worker-src 'self' blob:" in viewer and "unsafe" not in viewer


def test_cors_for_browsers_on_other_origins_without_credentials(served):
    origin = {"Origin": "https://maps.example.org"}
    r = served.get("/collections/roads/items?limit=1", headers=origin)
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert "etag" in r.headers["access-control-expose-headers"].lower()
    preflight = httpx.options(served.url + "/collections/road_works/items", headers={
        **origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status_code == 200
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in preflight.headers


def test_every_page_renders_under_the_one_strict_policy_from_geocloud_alone(served):
    """No page loads anything from another host (the portal replaced pygeoapi's pages, which loaded
    Bootstrap, Leaflet and Swagger UI from CDNs), the policy names no outside host and allows no
    inline script, and in Chromium every page loads with no refused or failed request."""
    import shutil

    from playwright.sync_api import sync_playwright
    from test_viewer import CHROMIUM, FLAGS

    if not shutil.which("chromium"):
        pytest.fail("chromium missing: scripts/dev test installs Debian's chromium")
    problems: list[str] = []
    road = served.get("/collections/roads/items?limit=1").json()["features"][0]["id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("requestfailed", lambda r: problems.append(f"failed ({r.failure}): {r.url}"))
        page.on("request", lambda r: None if r.url.startswith((served.url, "blob:", "data:"))
                else problems.append(f"outside: {r.url}"))
        for path in ["/?f=html", "/collections?f=html", "/collections/roads?f=html", "/conformance?f=html",
                     "/collections/roads/items?f=html&limit=5", f"/collections/roads/items/{road}?f=html",
                     "/collections/roads/queryables?f=html", "/collections/roads/schema?f=html",
                     "/openapi?f=html", "/openapi?ui=redoc", "/map/"]:
            response = page.goto(served.url + path, wait_until="load")
            assert response.status == 200, path
            csp = response.headers["content-security-policy"]
            assert "http" not in csp and "unsafe" not in csp and "script-src 'self';" in csp, (path, csp)
            assert page.locator("body").inner_text(), path
            # the pages' scripts fetch what they draw: let every request end before the next page, or
            # the navigation aborts a tile still in flight (net::ERR_ABORTED) on a busy machine
            page.wait_for_load_state("networkidle")
        browser.close()
    assert not problems, problems


def test_the_software_bill_of_materials_lists_the_python_and_npm_components(tmp_path):
    """scripts/sbom.py (what `scripts/dev sbom` and the Dockerfile run) writes valid CycloneDX."""
    import importlib.util

    from conftest import ROOT

    out = tmp_path / "sbom.cdx.json"
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "sbom.py"), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    bom = json.loads(out.read_text(encoding="utf-8"))
    spec = importlib.util.spec_from_file_location("sbom", ROOT / "scripts" / "sbom.py")
    sbom = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sbom)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6" and sbom.problems(bom) == []
    assert bom["metadata"]["component"]["name"] == "geocloud"
    purls = {c.get("purl", "").split("@")[0] for c in bom["components"]}
    assert {"pkg:pypi/pygeoapi", "pkg:pypi/uvicorn", "pkg:pypi/starlette", "pkg:pypi/psycopg", "pkg:pypi/rasterio",
            "pkg:pypi/titiler-core", "pkg:npm/maplibre-gl"} <= purls
    root = next(d for d in bom["dependencies"] if d["ref"] == bom["metadata"]["component"]["bom-ref"])
    assert any(r.startswith("maplibre-gl@") for r in root["dependsOn"])
    assert any(r.startswith("pygeoapi==") for r in root["dependsOn"])
    broken = dict(bom, components=[{"name": "no type"}])
    assert sbom.problems(broken)  # the check does catch an invalid document


def test_log_records_are_redacted_with_their_exceptions():
    """The filter on every handler of `geocloud serve` (its access log is checked above): messages
    and tracebacks, with a credential in an argument or in the exception's text."""
    import io
    import logging
    import logging.config

    from geocloud.cli.serve import log_config

    config = log_config(access_log=False)
    assert all(h["filters"] == ["redact"] for h in config["handlers"].values()) and config["root"]["handlers"]
    out = io.StringIO()
    config["handlers"]["default"]["stream"] = out
    root, saved = logging.getLogger(), (logging.getLogger().handlers[:], logging.getLogger().level)
    logging.config.dictConfig(config)
    try:
        key = "gck_abcdefabcdef_" + "k" * 43
        try:
            raise ValueError(f"could not fetch https://x.example/a?api_key={key}")
        except ValueError:
            logging.getLogger("geocloud.serve").exception("unexpected error on /a?token=%s", "gct_abc.def")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    text = out.getvalue()
    assert "api_key=REDACTED" in text and "token=gct_REDACTED" not in text and "token=REDACTED" in text
    assert "ValueError" in text and "k" * 43 not in text and "gct_abc.def" not in text


CITY = "https://gis.city.example/geo/"


@pytest.mark.parametrize("host, public, allowed, expected", [
    ("127.0.0.1:8443", "http://127.0.0.1:8000", "", "http://127.0.0.1:8443"),  # the public URL's host, any port
    ("maps.city.example", CITY, "maps.city.example", "http://maps.city.example"),
    ("MAPS.city.example:81", CITY, "intra.example, maps.city.example", "http://MAPS.city.example:81"),
    ("maps.city.example", CITY, "", "https://gis.city.example/geo"),  # not listed: the public URL
    ("127.0.0.1:80/evil", "http://127.0.0.1:8000", "", "http://127.0.0.1:8000"),  # not a host
    ("evil@127.0.0.1", "http://127.0.0.1:8000", "", "http://127.0.0.1:8000"),
])
def test_links_use_the_host_header_only_for_known_hosts(monkeypatch, host, public, allowed, expected):
    from starlette.requests import Request

    from geocloud.config import get_settings
    from geocloud.serve.http import base_url

    monkeypatch.setenv("GEOCLOUD_PUBLIC_URL", public)
    monkeypatch.setenv("GEOCLOUD_ALLOWED_HOSTS", allowed)
    get_settings.cache_clear()
    try:
        request = Request({"type": "http", "scheme": "http", "path": "/", "root_path": "", "query_string": b"",
                           "headers": [(b"host", host.encode())], "client": ("192.0.2.1", 5)})
        assert base_url(request) == expected
    finally:
        get_settings.cache_clear()
